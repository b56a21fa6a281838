"""label_anchors (detection/modeling/anchor_labeling.py), shared by the RPN and the localizer:
hand-computed cases."""
import math

import torch

from detection.modeling.anchor_labeling import label_anchors
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_coder import BoxCoder
from detection.modeling.matcher import Matcher


RPN_MATCHER = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
UNIT_CODER = BoxCoder((1.0, 1.0, 1.0, 1.0))

ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],    # IoU 1 with gt 0: positive
    [0.0, 0.0, 10.0, 20.0],    # IoU 0.5 with gt 0: ignored
    [20.0, 20.0, 30.0, 30.0],  # overlaps nothing: negative
    [30.0, 0.0, 40.0, 10.0],   # IoU 0.5 with gt 1, its best anchor: positive (low-quality rule)
    [50.0, 50.0, 70.0, 70.0],  # centred at y 60, in the padding of a 48-high image: never labelled
    [-10.0, 30.0, 10.0, 40.0],  # overlaps nothing, crosses the left border by 10
])
GT = torch.tensor([[0.0, 0.0, 10.0, 10.0], [30.0, 0.0, 50.0, 10.0]])
SIZES = torch.tensor([[48, 64], [48, 64]])  # (h, w)


def test_label_anchors_hand_computed_positives_negatives_ignored_matches_and_targets():
    labels, matched, targets = label_anchors(ANCHORS, [GT, torch.zeros(0, 4)], SIZES,
                                             RPN_MATCHER, UNIT_CODER, num_samples=100, positive_fraction=0.5)
    assert labels.dtype == torch.int64 and matched.dtype == torch.int64
    assert labels[0].tolist() == [1, -1, 0, 1, -1, 0]
    assert matched[0].tolist() == [0, 0, 0, 1, 0, 0]
    # anchor 3 (centre (35, 5), 10 x 10) -> gt 1 (centre (40, 5), 20 x 10): dx 5 / 10, dw log 2
    torch.testing.assert_close(targets[0, 0], torch.zeros(4))
    torch.testing.assert_close(targets[0, 3], torch.tensor([0.5, 0.0, math.log(2.0), 0.0]))
    # an image without ground truth: every usable anchor is a negative, no targets
    assert labels[1].tolist() == [0, 0, 0, 0, -1, 0]
    assert matched[1].tolist() == [0] * 6 and torch.equal(targets[1], torch.zeros(6, 4))


def test_label_anchors_boundary_thresh_ignores_anchors_crossing_the_border():
    labels, _, _ = label_anchors(ANCHORS, [GT], SIZES[:1], RPN_MATCHER, UNIT_CODER,
                                 num_samples=100, positive_fraction=0.5, boundary_thresh=0.0)
    assert labels[0].tolist() == [1, -1, 0, 1, -1, -1]  # anchor 5 crosses the border: no longer a negative


def test_label_anchors_sample_at_most_num_samples_at_most_the_positive_fraction():
    labels, _, _ = label_anchors(ANCHORS, [GT], SIZES[:1], RPN_MATCHER, UNIT_CODER,
                                 num_samples=2, positive_fraction=0.5)
    # one of the positives {0, 3}, one of the negatives {2, 5}; the rest not sampled
    assert (labels[0] == 1).sum() == 1 and (labels[0] == 0).sum() == 1
    assert set(torch.nonzero(labels[0] == 1).squeeze(1).tolist()) <= {0, 3}
    assert set(torch.nonzero(labels[0] == 0).squeeze(1).tolist()) <= {2, 5}


def test_label_anchors_without_sample_without_gt_label_nothing_on_an_image_without_boxes():
    labels, matched, targets = label_anchors(ANCHORS, [GT, torch.zeros(0, 4)], SIZES,
                                             RPN_MATCHER, UNIT_CODER, num_samples=100, positive_fraction=0.5,
                                             sample_without_gt=False)
    assert labels[1].tolist() == [-1] * 6
    assert torch.equal(targets[1], torch.zeros(6, 4))
    assert labels[0].tolist() == [1, -1, 0, 1, -1, 0]  # an image with boxes is labelled as before


def test_label_anchors_ignores_anchors_centred_in_the_batch_padding():
    anchors = AnchorGenerator([32], [1.0], 16)((3, 3))  # 9 anchors of 32x32 centred on (0|16|32, 0|16|32)
    labels, _, targets = label_anchors(anchors, [torch.tensor([[0.0, 0.0, 30.0, 30.0]])] * 2,
                                       torch.tensor([[48, 48], [20, 40]]),  # image 1: h 20, w 40
                                       RPN_MATCHER, UNIT_CODER, num_samples=1000, positive_fraction=0.5)
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    padding = (cx >= 40) | (cy >= 20)  # the bottom row of anchors, centred at y = 32
    assert padding.sum() == 3
    assert (labels[0][padding] == 0).all()  # negatives in the 48x48 image
    assert (labels[1][padding] == -1).all()  # ignored where they sit in the padding
    assert torch.equal(labels[0][~padding], labels[1][~padding])  # everything is sampled: the rest agrees
    assert targets.shape == (2, 9, 4)
