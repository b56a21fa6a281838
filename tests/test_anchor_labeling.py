"""label_anchors (detection/modeling/anchor_labeling.py), shared by the RPN and the localizer:
hand-computed cases."""
import torch

from detection.modeling.anchor_labeling import label_anchors
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_coder import BoxCoder
from detection.modeling.matcher import Matcher


RPN_MATCHER = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)
UNIT_CODER = BoxCoder((1.0, 1.0, 1.0, 1.0))


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
