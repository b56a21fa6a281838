"""Box coder, anchors, matcher and sampler: hand-computed cases and torchvision's reference ops."""
import math

import pytest
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList as TVImageList
from torchvision.ops import box_iou

from detection.modeling.anchors import AnchorGenerator, cell_anchors
from detection.modeling.box_coder import DEFAULT_SCALE_CLAMP, BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.sampler import sample_balanced

WEIGHT_SETS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (2.0, 3.0, 0.5, 7.0)]


def random_boxes(n, seed, max_xy=200.0, min_wh=1.0, max_wh=80.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * max_xy
    wh = min_wh + torch.rand(n, 2, generator=g) * (max_wh - min_wh)
    return torch.cat((xy, xy + wh), dim=1)


# ----------------------------------------------------------------------------- box coder


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_encode_then_decode_round_trips(weights):
    src, dst = random_boxes(500, 0), random_boxes(500, 1)
    coder = BoxCoder(weights)
    deltas = coder.encode(src, dst)
    assert deltas.shape == (500, 4)
    torch.testing.assert_close(coder.decode(deltas, src), dst, rtol=0, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_decode_equals_torchvision_decode_single_including_clamp(weights):
    g = torch.Generator().manual_seed(2)
    boxes = random_boxes(300, 3)
    deltas = torch.randn(300, 4 * 3, generator=g) * 2.0
    deltas[:10, 2::4] = 50.0  # far beyond the clamp
    deltas[10:20, 3::4] = 50.0
    ref = det_utils.BoxCoder(weights).decode_single(deltas, boxes)
    got = BoxCoder(weights).decode(deltas, boxes)
    assert got.shape == (300, 12)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHT_SETS)
def test_encode_equals_torchvision_encode_single(weights):
    src, dst = random_boxes(300, 4), random_boxes(300, 5)
    ref = det_utils.BoxCoder(weights).encode_single(dst, src)  # (reference/gt, proposals)
    torch.testing.assert_close(BoxCoder(weights).encode(src, dst), ref, rtol=1e-5, atol=1e-5)


def test_hand_computed_single_box():
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # w 10, h 20, centre (5, 10)
    dst = torch.tensor([[2.0, 4.0, 22.0, 44.0]])  # w 20, h 40, centre (12, 24)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    expected = torch.tensor([[10 * 7 / 10, 10 * 14 / 20, 5 * math.log(2), 5 * math.log(2)]])
    torch.testing.assert_close(coder.encode(src, dst), expected)
    torch.testing.assert_close(coder.decode(expected, src), dst)
    # zero deltas leave the box unchanged; unit weights: dx=1 shifts by one width
    torch.testing.assert_close(coder.decode(torch.zeros(1, 4), src), src)
    shifted = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[1.0, -0.5, 0.0, 0.0]]), src)
    torch.testing.assert_close(shifted, torch.tensor([[10.0, -10.0, 20.0, 10.0]]))


def test_decode_clamps_large_dw_dh_but_not_large_negative_ones():
    box = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    out = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), box)
    scale = math.exp(DEFAULT_SCALE_CLAMP)
    assert scale == pytest.approx(1000.0 / 16)
    torch.testing.assert_close(out, torch.tensor([[8 - 8 * scale, 4 - 4 * scale, 8 + 8 * scale, 4 + 4 * scale]]))
    assert torch.isfinite(out).all()
    # with weights 5 the clamp applies to dw / 5
    out5 = BoxCoder((1.0, 1.0, 5.0, 5.0)).decode(torch.tensor([[0.0, 0.0, 5 * 1.0, 100.0]]), box)
    assert out5[0, 2] - out5[0, 0] == pytest.approx(16 * math.e, rel=1e-5)
    assert out5[0, 3] - out5[0, 1] == pytest.approx(8 * scale, rel=1e-5)
    tiny = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(torch.tensor([[0.0, 0.0, -100.0, -100.0]]), box)
    assert torch.isfinite(tiny).all() and (tiny[0, 2] - tiny[0, 0]) < 1e-6
    custom = BoxCoder((1.0, 1.0, 1.0, 1.0), scale_clamp=1.0).decode(torch.tensor([[0.0, 0.0, 3.0, 0.0]]), box)
    assert custom[0, 2] - custom[0, 0] == pytest.approx(16 * math.e, rel=1e-5)


# ----------------------------------------------------------------------------- anchors


def test_cell_anchors_hand_computed():
    a = cell_anchors([32], [0.5, 1.0, 2.0])
    r = 16 * math.sqrt(2)  # half of sqrt(32^2 / 0.5)
    expected = torch.tensor([
        [-r, -r / 2, r, r / 2],      # h/w = 0.5: wide
        [-16.0, -16.0, 16.0, 16.0],  # square
        [-r / 2, -r, r / 2, r],      # h/w = 2: tall
    ])
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, expected)


def test_cell_anchors_area_ratio_and_size_major_order():
    sizes, ratios = [32, 64, 128, 256], [0.5, 1.0, 2.0]
    a = cell_anchors(sizes, ratios).double()
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    for i, (s, r) in enumerate((s, r) for s in sizes for r in ratios):
        assert w[i] * h[i] == pytest.approx(s * s, rel=1e-5)
        assert h[i] / w[i] == pytest.approx(r, rel=1e-5)
    torch.testing.assert_close((a[:, :2] + a[:, 2:]) / 2, torch.zeros(12, 2, dtype=torch.float64))


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_anchor_grid_is_cell_major_anchor_minor_with_stride_and_offset(offset):
    gen = AnchorGenerator([32], [0.5, 2.0], stride=16, offset=offset)
    assert gen.num_anchors == 2
    h, w = 2, 3
    anchors = gen((h, w))
    assert anchors.shape == (h * w * 2, 4)
    cell = cell_anchors([32], [0.5, 2.0])
    for i in range(h):
        for j in range(w):
            cx, cy = (j + offset) * 16, (i + offset) * 16
            for a in range(2):
                expected = cell[a] + torch.tensor([cx, cy, cx, cy])
                torch.testing.assert_close(anchors[(i * w + j) * 2 + a], expected)
    # explicit spot check: last anchor, cell (1, 2), tall box
    r = 16 * math.sqrt(2)
    torch.testing.assert_close(anchors[-1], torch.tensor([
        (2 + offset) * 16 - r / 2, (1 + offset) * 16 - r, (2 + offset) * 16 + r / 2, (1 + offset) * 16 + r]))


def test_anchors_equal_torchvision_anchor_generator_after_rounding():
    sizes, ratios = (32, 64, 128), (0.5, 1.0, 2.0)
    fh, fw, stride = 5, 7, 16
    tv = TVAnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    images = TVImageList(torch.zeros(1, 3, fh * stride, fw * stride), [(fh * stride, fw * stride)])
    ref = tv(images, [torch.zeros(1, 8, fh, fw)])[0]
    ours = AnchorGenerator(list(sizes), list(ratios), stride=stride)
    exact = ours((fh, fw))
    ours.cell_anchors = ours.cell_anchors.round()  # torchvision rounds its cell anchors
    ours._cache.clear()
    rounded = ours((fh, fw))
    # ours is size-major (s * R + r), torchvision ratio-major (r * S + s) within a cell
    S, R = len(sizes), len(ratios)
    perm = torch.tensor([s * R + r for r in range(R) for s in range(S)])
    cells = fh * fw
    reorder = lambda x: x.view(cells, S * R, 4)[:, perm].reshape(-1, 4)  # noqa: E731
    assert ref.shape == exact.shape == (cells * 9, 4)
    torch.testing.assert_close(reorder(rounded), ref, rtol=0, atol=0)
    assert (reorder(exact) - ref).abs().max() <= 0.5


def test_anchor_cache_returns_the_same_tensor():
    gen = AnchorGenerator([64], [1.0], stride=16)
    a = gen((4, 6))
    assert gen((4, 6)) is a
    b = gen((6, 4))
    assert b is not a and b.shape == a.shape and not torch.equal(a, b)


def test_anchor_offset_out_of_range_raises():
    with pytest.raises(ValueError, match="offset"):
        AnchorGenerator([32], [1.0], stride=16, offset=1.0)


# ----------------------------------------------------------------------------- matcher


def rpn_matcher(low_quality=True):
    return Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=low_quality)


def test_rpn_matcher_thresholds_negatives_ignored_and_positives():
    iou = torch.tensor([
        [0.90, 0.50, 0.10, 0.00, 0.20, 0.65, 0.30, 0.29, 0.70],
        [0.20, 0.60, 0.25, 0.00, 0.75, 0.30, 0.00, 0.00, 0.10],
    ])
    matched, labels = rpn_matcher(low_quality=False)(iou)
    assert labels.dtype == torch.int8 and matched.dtype == torch.int64
    assert labels.tolist() == [1, -1, 0, 0, 1, -1, -1, 0, 1]  # 0.3 is ignored, 0.7 positive
    assert matched.tolist()[:3] == [0, 1, 1]
    assert matched[4] == 1 and matched[5] == 0 and matched[8] == 0
    # every gt's best anchor is already positive: the low-quality rule changes nothing here
    assert rpn_matcher(low_quality=True)(iou)[1].tolist() == labels.tolist()


def test_low_quality_rule_makes_each_gts_best_anchors_positive_ties_included():
    iou = torch.tensor([
        [0.10, 0.40, 0.40, 0.00, 0.35],
        [0.00, 0.20, 0.10, 0.80, 0.50],
    ])
    _, without = rpn_matcher(low_quality=False)(iou)
    assert without.tolist() == [0, -1, -1, 1, -1]
    matched, labels = rpn_matcher(low_quality=True)(iou)
    assert labels.tolist() == [0, 1, 1, 1, -1]  # both anchors tied at gt0's best IoU 0.4
    assert matched.tolist() == [0, 0, 0, 1, 1]


def test_low_quality_anchor_keeps_its_own_best_gt():
    # anchor 1 is gt0's best (0.25) but overlaps gt1 more (0.5): positive, matched to gt1
    iou = torch.tensor([[0.10, 0.25, 0.00], [0.00, 0.50, 0.90]])
    matched, labels = rpn_matcher()(iou)
    assert labels.tolist() == [0, 1, 1]
    assert matched.tolist() == [0, 1, 1]


def test_gt_with_no_overlap_makes_nothing_positive():
    iou = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0]])
    _, labels = rpn_matcher()(iou)
    assert labels.tolist() == [0, 1, 0]


def test_no_ground_truth_means_all_background():
    matched, labels = rpn_matcher()(torch.zeros(0, 7))
    assert labels.tolist() == [0] * 7 and matched.tolist() == [0] * 7
    _, roi_labels = Matcher([0.1, 0.5], [-1, 0, 1])(torch.zeros(0, 3))
    assert roi_labels.tolist() == [-1] * 3  # the lowest interval's label


def test_roi_head_matcher_single_threshold():
    iou = torch.tensor([[0.5, 0.49, 0.0, 1.0]])
    assert Matcher([0.5], [0, 1])(iou)[1].tolist() == [1, 0, 0, 1]
    assert Matcher([0.1, 0.5], [-1, 0, 1])(torch.tensor([[0.05, 0.1, 0.49, 0.5]]))[1].tolist() == [-1, 0, 0, 1]


def test_matcher_argument_checks():
    with pytest.raises(ValueError):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError):
        Matcher([0.7, 0.3], [0, -1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matcher_equals_torchvision_matcher_on_random_boxes(seed):
    gt = random_boxes(6, 100 + seed, max_xy=150, min_wh=10, max_wh=60)
    anchors = random_boxes(400, 200 + seed, max_xy=180, min_wh=8, max_wh=90)
    iou = box_iou(gt, anchors)
    assert (iou.max(dim=1).values > 0).all()  # torchvision treats all-zero gts differently
    assert (iou.max(dim=1).values < 0.7).any()  # the low-quality rule matters here
    ref = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    matched, labels = rpn_matcher()(iou)
    expected_labels = torch.where(ref >= 0, 1, torch.where(ref == -1, 0, -1))
    assert labels.long().tolist() == expected_labels.tolist()
    pos = ref >= 0
    assert pos.sum() >= len(gt) and (labels == 0).sum() > 0 and (labels == -1).sum() > 0
    assert torch.equal(matched[pos], ref[pos])
    # without the low-quality rule, too
    ref2 = det_utils.Matcher(0.7, 0.3, allow_low_quality_matches=False)(iou)
    _, labels2 = rpn_matcher(low_quality=False)(iou)
    assert labels2.long().tolist() == torch.where(ref2 >= 0, 1, torch.where(ref2 == -1, 0, -1)).tolist()


# ----------------------------------------------------------------------------- sampler


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
