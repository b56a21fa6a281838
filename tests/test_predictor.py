"""Predictor (detection/engine/predictor.py): made from a checkpoint alone, overrides, batches equal to one
image at a time, and it maps an image as the test mapper does."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tiny_localizer import DENSE, loc_record
from tiny_localizer import tiny_cfg as tiny_loc_cfg

from detection.checkpoint import load_weights
from detection.data.mapper import DatasetMapper
from detection.engine.predictor import Predictor, override_list
from detection.modeling import build_model
from tiny import tiny_checkpoint, tiny_test_config

CLASSES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint as the trainer writes it: weights, config, class names (a random tiny detector)."""
    cfg = tiny_test_config()
    path = tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), cfg, CLASSES)
    model = build_model(cfg)
    load_weights(model, path)
    return path, cfg, model


def images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(90, 120), (90, 120), (120, 80), (64, 64), (90, 120)][:n]
    return [rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_from_checkpoint_needs_nothing_but_the_file(checkpoint):
    path, cfg, model = checkpoint
    predictor = Predictor.from_checkpoint(path)
    assert predictor.class_names == CLASSES
    assert predictor.cfg.MODEL.ROI_HEADS.NUM_CLASSES == 6 and predictor.cfg.INPUT.MIN_SIZE_TEST == 96
    for k, v in model.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[k], v), k
    out = predictor(images(1)[0])
    assert len(out["boxes"]) > 0 and out["classes"] == [CLASSES[i] for i in out["labels"]]


def test_from_checkpoint_gives_the_same_outputs_as_config_and_weights(checkpoint, single_thread):
    path, cfg, _ = checkpoint
    im = images(1)[0]
    a, b = Predictor.from_checkpoint(path)(im), Predictor(cfg, path)(im)
    for k in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(a[k], b[k])


def test_from_checkpoint_applies_overrides_as_a_dict_or_a_list(checkpoint):
    path, _, _ = checkpoint
    p = Predictor.from_checkpoint(path, {"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.5, "TEST.IMS_PER_BATCH": 3})
    assert p.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.5 and p.batch_size == 3
    p = Predictor.from_checkpoint(path, ["INPUT.MIN_SIZE_TEST", "64"])
    assert p.cfg.INPUT.MIN_SIZE_TEST == 64
    assert override_list({"A.B": [1, 2], "C": "x", "D": True}) == ["A.B", "[1, 2]", "C", "x", "D", "True"]
    with pytest.raises(Exception, match="MODEL.NO_SUCH_KEY"):
        Predictor.from_checkpoint(path, {"MODEL.NO_SUCH_KEY": 1})


def test_foreign_checkpoint_without_config_says_to_pass_one(checkpoint, tmp_path):
    path, cfg, model = checkpoint
    bare = tmp_path / "weights_only.pth"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ValueError, match="carries no config.*cfg="):
        Predictor.from_checkpoint(bare)
    p = Predictor.from_checkpoint(bare, {"MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.3}, cfg=cfg)
    assert p.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.3 and cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.0
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        Predictor.from_checkpoint(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_a_list_gives_the_results_of_one_image_at_a_time(checkpoint, batch, single_thread):
    path, _, _ = checkpoint
    predictor = Predictor.from_checkpoint(path, {"TEST.IMS_PER_BATCH": batch})
    ims = images()
    batched = predictor(ims)
    assert len(batched) == len(ims)
    for im, got in zip(ims, batched):
        one = predictor(im)
        assert len(one["boxes"]) > 0
        # Equal up to float rounding: a batched convolution or matrix product may sum in another order.
        np.testing.assert_allclose(got["boxes"], one["boxes"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(got["scores"], one["scores"], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got["labels"], one["labels"])
        assert got["classes"] == one["classes"]


def test_rgb_input_is_the_bgr_image_reversed(checkpoint, single_thread):
    predictor = Predictor.from_checkpoint(checkpoint[0])
    im = images(1)[0]
    a, b = predictor(im, "BGR"), predictor(np.ascontiguousarray(im[:, :, ::-1]), "RGB")
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    with pytest.raises(ValueError, match="uint8"):
        predictor(im.astype(np.float32))


def test_predictor_tests_every_size_as_the_mapper(tmp_path, single_thread):
    record = loc_record(tmp_path)
    torch.manual_seed(0)
    cfg = tiny_loc_cfg(*DENSE, "INPUT.LOC_TEST_SIZES", "[64, 96]", "DATASETS.ROOT", str(tmp_path))
    predictor = Predictor(cfg)
    got = predictor(cv2.imread(record["file_name"]))
    sample = DatasetMapper(cfg, is_train=False, loc=True)(record)
    assert len(sample["extra_scales"]) == 1
    expected = predictor.model([sample])[0]
    np.testing.assert_array_equal(got["boxes"], expected["boxes"].numpy())
    np.testing.assert_array_equal(got["scores"], expected["scores"].numpy())


def test_a_checkpoint_whose_config_has_a_retired_key_still_loads(tmp_path):
    cfg = tiny_test_config()
    path = tiny_checkpoint(tmp_path, cfg)
    data = torch.load(path, weights_only=True)
    data["config"] = "VERSION: 1\n" + data["config"]  # what config.yaml carried until VERSION went
    torch.save(data, path)
    assert Predictor.from_checkpoint(path).cfg.INPUT.MIN_SIZE_TEST == 96
