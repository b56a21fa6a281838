"""RepeatFactorTrainingSampler: the LVIS repeat factors, stochastic rounding, resume and sharding."""
import itertools
import math

import numpy as np
import pytest

from detection.config import load_config
from detection.data import build_train_loader
from detection.data.samplers import (InfiniteBatchSampler, RepeatFactorTrainingSampler, TrainingSampler,
                                     repeat_factors)

from tiny import tiny_opts

# 4 images: {0}, {0, 1}, {2}, {} of 3 classes. f = (2/4, 1/4, 1/4); threshold 0.75:
# r_0 = sqrt(0.75 / 0.5) = 1.2247, r_1 = r_2 = sqrt(0.75 / 0.25) = sqrt(3) = 1.7321.
LABELS = [np.array([0]), np.array([0, 1, 1]), np.array([2]), np.array([], dtype=np.int64)]
FACTORS = [math.sqrt(1.5), math.sqrt(3), math.sqrt(3), 1.0]


def test_repeat_factors_follow_the_lvis_rule_on_a_hand_made_case():
    np.testing.assert_allclose(repeat_factors(LABELS, 3, 0.75), FACTORS)
    np.testing.assert_allclose(repeat_factors(LABELS, 3, 0.1), [1, 1, 1, 1])  # every class above the threshold
    np.testing.assert_allclose(repeat_factors(LABELS, 4, 0.75), FACTORS)  # a class without images changes nothing


def test_each_epoch_rounds_the_factors_stochastically_to_their_mean():
    sampler = RepeatFactorTrainingSampler(FACTORS, seed=5)
    counts = np.stack([np.bincount(sampler.epoch(e), minlength=4) for e in range(4000)])
    assert set(np.unique(counts[:, 0])) == {1, 2} and set(np.unique(counts[:, 3])) == {1}
    np.testing.assert_allclose(counts.mean(axis=0), FACTORS, atol=0.03)
    np.testing.assert_array_equal(sampler.epoch(7), RepeatFactorTrainingSampler(FACTORS, seed=5).epoch(7))
    assert not np.array_equal(sampler.epoch(7), RepeatFactorTrainingSampler(FACTORS, seed=6).epoch(7))


def test_ones_give_the_plain_sampler_stream():
    plain = list(itertools.islice(TrainingSampler(5, seed=2), 23))
    assert list(itertools.islice(RepeatFactorTrainingSampler([1.0] * 5, seed=2), 23)) == plain


def test_resume_gives_the_same_batches():
    def batches(start):
        sampler = RepeatFactorTrainingSampler(FACTORS, seed=1)
        return list(itertools.islice(InfiniteBatchSampler(sampler, 3, [0, 1, 0, 1], start_iter=start), 12 - start))

    fresh = batches(0)
    assert batches(7) == fresh[7:]


def test_two_ranks_see_disjoint_shards_of_the_one_stream():
    single = list(itertools.islice(RepeatFactorTrainingSampler(FACTORS, seed=4), 60))
    shards = [list(itertools.islice(RepeatFactorTrainingSampler(FACTORS, seed=4, rank=r, world_size=2), 30))
              for r in (0, 1)]
    positions = [{g for g, _ in s} for s in shards]
    assert not positions[0] & positions[1]
    assert positions[0] | positions[1] == set(range(60))
    assert sorted(shards[0] + shards[1]) == single


def test_train_loader_uses_the_configured_sampler(tmp_path):
    cfg = load_config(None, tiny_opts(tmp_path / "data", tmp_path / "out", 2) + [
        "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", "0.9"])
    sampler = build_train_loader(cfg).batch_sampler.sampler
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    records = build_train_loader(cfg).dataset.records
    labels = [records[i]["labels"] for i in range(len(records))]
    np.testing.assert_allclose(sampler.factors, repeat_factors(labels, 6, 0.9))
    assert sampler.factors.max() > 1
    cfg.DATALOADER.SAMPLER_TRAIN = "Balanced"
    with pytest.raises(ValueError, match="DATALOADER.SAMPLER_TRAIN must be TrainingSampler or Repeat"):
        build_train_loader(cfg)
