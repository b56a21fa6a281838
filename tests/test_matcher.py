"""Matcher (detection/modeling/matcher.py): hand-computed IoU matrices and torchvision's Matcher."""
import pytest
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import box_iou

from random_boxes import random_boxes

from detection.modeling.matcher import Matcher


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
