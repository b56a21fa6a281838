"""sample_balanced (detection/modeling/sampler.py): counts, quotas, ignored labels, reproducibility, uniformity."""
import torch

from detection.modeling.sampler import sample_balanced


def make_labels(num_pos, num_neg, num_ignored, seed=0, pos_value=1, bg=0):
    labels = torch.tensor([pos_value] * num_pos + [bg] * num_neg + [-1] * num_ignored)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def check_sample(labels, pos, neg, bg=0):
    assert len(set(pos.tolist())) == len(pos) and len(set(neg.tolist())) == len(neg)
    assert not set(pos.tolist()) & set(neg.tolist())
    assert ((labels[pos] != -1) & (labels[pos] != bg)).all()
    assert (labels[neg] == bg).all()


def test_sampler_exact_counts_with_plenty_of_both():
    labels = make_labels(300, 600, 100)
    pos, neg = sample_balanced(labels, 256, 0.5, bg_label=0)
    assert len(pos) == int(256 * 0.5) == 128 and len(neg) == 128
    check_sample(labels, pos, neg)


def test_sampler_negatives_fill_when_positives_are_few():
    labels = make_labels(20, 600, 100)
    pos, neg = sample_balanced(labels, 256, 0.5, bg_label=0)
    assert len(pos) == 20 and len(neg) == 236
    check_sample(labels, pos, neg)
    assert set(pos.tolist()) == set(torch.nonzero(labels == 1).squeeze(1).tolist())


def test_sampler_takes_all_negatives_when_negatives_are_few():
    labels = make_labels(300, 50, 10)
    pos, neg = sample_balanced(labels, 256, 0.5, bg_label=0)
    assert len(pos) == 128 and len(neg) == 50
    check_sample(labels, pos, neg)


def test_sampler_positive_quota_is_floored():
    labels = make_labels(10, 10, 0)
    pos, neg = sample_balanced(labels, 10, 0.25, bg_label=0)
    assert len(pos) == 2 and len(neg) == 8  # int(2.5) == 2


def test_sampler_never_samples_ignored_even_if_it_falls_short():
    labels = make_labels(3, 4, 500)
    pos, neg = sample_balanced(labels, 256, 0.5, bg_label=0)
    assert len(pos) == 3 and len(neg) == 4
    check_sample(labels, pos, neg)


def test_sampler_with_roi_head_labels_background_last():
    k = 3  # classes 0..2 foreground, 3 background
    labels = torch.tensor([0, 1, 2, 3, 3, 3, -1, 2, 0, 3])
    pos, neg = sample_balanced(labels, 8, 0.5, bg_label=k)
    assert sorted(pos.tolist()) in ([0, 1, 2, 7], [0, 1, 2, 8], [0, 1, 7, 8], [0, 2, 7, 8], [1, 2, 7, 8])
    assert sorted(neg.tolist()) == [3, 4, 5, 9]
    check_sample(labels, pos, neg, bg=k)


def test_sampler_seeded_generator_is_reproducible():
    labels = make_labels(300, 600, 100)
    a = sample_balanced(labels, 64, 0.25, 0, generator=torch.Generator().manual_seed(7))
    b = sample_balanced(labels, 64, 0.25, 0, generator=torch.Generator().manual_seed(7))
    c = sample_balanced(labels, 64, 0.25, 0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


def test_sampler_is_uniform_over_positives():
    labels = torch.tensor([1, 1, 1, 1, 0])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(2000):
        pos, _ = sample_balanced(labels, 2, 0.5, 0, generator=g)
        counts[pos] += 1
    assert counts[4] == 0
    assert ((counts[:4] - 500).abs() < 100).all()  # 2000 draws of 1 out of 4
