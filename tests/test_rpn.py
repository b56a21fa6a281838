"""The RPN (detection/modeling/rpn.py): proposals on hand-made anchors and scores, losses against
hand-computed BCE and L1, and proposals on a small model against torchvision's nms image by image."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, nms

from small_detector import BOXES, scene, small_model

from detection.modeling.anchor_head import AnchorHead
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_coder import BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.rpn import RPN
from detection.structures import ImageList

pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- proposals, hand-computed


def _hand_rpn(pre=(10, 10), post=(10, 10), min_size=0.0):
    return RPN(AnchorHead(4, 1), AnchorGenerator([32], [1.0], 16), BoxCoder((1.0, 1.0, 1.0, 1.0)),
               Matcher([0.3, 0.7], [0, -1, 1], True), nms_thresh=0.7, pre_nms_topk=pre, post_nms_topk=post,
               min_size=min_size)


HAND_ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],
    [0.0, 0.0, 10.0, 9.0],     # IoU 0.9 with anchor 0
    [20.0, 20.0, 40.0, 40.0],
    [50.0, 50.0, 80.0, 80.0],  # crosses the border of a 60x60 image
    [70.0, 70.0, 90.0, 90.0],  # outside a 60x60 image: empty after clipping
])
HAND_LOGITS = torch.tensor([[2.0, 3.0, 1.0, 0.5, 5.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
HAND_SIZES = torch.tensor([[60, 60], [100, 100]])


def test_find_proposals_hand_computed_sorted_clipped_nms_per_image():
    rpn = _hand_rpn().eval()
    props = rpn.find_proposals(HAND_ANCHORS, HAND_LOGITS, torch.zeros(2, 5, 4), HAND_SIZES)
    # image 0: anchor 4 (best) is empty after clipping, 1 beats 0 in NMS, 3 is clipped
    assert props[0].tolist() == [[0, 0, 10, 9], [20, 20, 40, 40], [50, 50, 60, 60]]
    # image 1: everything inside; 0 suppressed by 1; order by score
    assert props[1].tolist() == [[70, 70, 90, 90], [50, 50, 80, 80], [20, 20, 40, 40], [0, 0, 10, 9]]


def test_find_proposals_pre_and_post_nms_topk_follow_the_mode():
    rpn = _hand_rpn(pre=(10, 2), post=(10, 3)).eval()
    props = rpn.find_proposals(HAND_ANCHORS, HAND_LOGITS, torch.zeros(2, 5, 4), HAND_SIZES)
    assert props[0].tolist() == [[0, 0, 10, 9]]  # top-2 by score: anchor 4 (dropped, empty) and 1
    assert props[1].tolist() == [[70, 70, 90, 90], [50, 50, 80, 80]]
    rpn.train()
    props = rpn.find_proposals(HAND_ANCHORS, HAND_LOGITS, torch.zeros(2, 5, 4), HAND_SIZES)
    assert len(props[0]) == 3 and len(props[1]) == 4
    rpn = _hand_rpn(post=(10, 3)).eval()
    props = rpn.find_proposals(HAND_ANCHORS, HAND_LOGITS, torch.zeros(2, 5, 4), HAND_SIZES)
    assert props[1].tolist() == [[70, 70, 90, 90], [50, 50, 80, 80], [20, 20, 40, 40]]


def test_find_proposals_min_size_and_deltas():
    rpn = _hand_rpn(min_size=10.0).eval()
    props = rpn.find_proposals(HAND_ANCHORS, HAND_LOGITS, torch.zeros(2, 5, 4), HAND_SIZES)
    assert props[0].tolist() == [[20, 20, 40, 40]]  # 10x9 and 10x10 (clipped) are not > 10
    deltas = torch.zeros(2, 5, 4)
    deltas[1, 2] = torch.tensor([0.5, 0.0, math.log(2.0), 0.0])  # anchor 2: centre +10 px, width x2
    props = _hand_rpn().eval().find_proposals(HAND_ANCHORS, HAND_LOGITS, deltas, HAND_SIZES)
    assert props[1][2].tolist() == pytest.approx([20.0, 20.0, 60.0, 40.0], abs=1e-5)


# ----------------------------------------------------------------------------- losses


def _loss_rpn(boundary_thresh=-1.0):
    return RPN(AnchorHead(4, 1), AnchorGenerator([32], [1.0], 16), BoxCoder((1.0, 1.0, 1.0, 1.0)),
               Matcher([0.3, 0.7], [0, -1, 1], True), batch_size_per_image=1000, positive_fraction=0.5,
               boundary_thresh=boundary_thresh)


def test_rpn_losses_equal_hand_computed_bce_and_l1_when_every_anchor_is_sampled():
    rpn = _loss_rpn()
    anchors = rpn.anchor_generator((3, 3))  # 9 anchors of 32x32 centred on (0|16|32, 0|16|32)
    gt = torch.tensor([[0.0, 0.0, 30.0, 34.0]])
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(1, 9, generator=g), torch.randn(1, 9, 4, generator=g)
    losses = rpn.losses(anchors, logits, deltas, [gt], torch.tensor([[48, 48]]))
    iou = box_iou(gt, anchors)[0]
    labels = torch.full((9,), -1.0)
    labels[iou < 0.3] = 0.0
    labels[iou >= 0.7] = 1.0
    labels[iou == iou.max()] = 1.0
    assert labels.tolist().count(1.0) == 1 and labels.tolist().count(0.0) >= 4  # anchor (1, 1): IoU 0.886
    valid, pos = labels >= 0, labels == 1
    expected_cls = F.binary_cross_entropy_with_logits(logits[0][valid], labels[valid], reduction="sum") / 1000
    target = rpn.box_coder.encode(anchors[pos], gt.expand(int(pos.sum()), 4))
    expected_loc = (deltas[0][pos] - target).abs().sum() / 1000
    torch.testing.assert_close(losses["loss_rpn_cls"], expected_cls)
    torch.testing.assert_close(losses["loss_rpn_loc"], expected_loc)


# ----------------------------------------------------------------------------- RPN on a model


def _reference_proposals(rpn, images, features):
    """Proposals recomputed with torchvision's nms, image by image, plus their scores."""
    t = rpn.head.features(features)  # the raw 1x1 conv outputs, laid out here by hand
    logits, deltas = rpn.head.objectness_logits(t), rpn.head.anchor_deltas(t)
    b, a, h, w = logits.shape
    logits = logits.permute(0, 2, 3, 1).reshape(b, -1)
    deltas = deltas.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
    anchors = rpn.anchor_generator((h, w))
    pre, post = rpn.pre_nms_topk[int(not rpn.training)], rpn.post_nms_topk[int(not rpn.training)]
    out = []
    for i, (ih, iw) in enumerate(images.image_sizes):
        scores, idx = logits[i].topk(min(pre, len(anchors)))
        boxes = rpn.box_coder.decode(deltas[i][idx], anchors[idx])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, iw)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ih)
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, rpn.nms_thresh)
        out.append((boxes[keep][:post], scores[keep][:post], len(keep)))
    return out


def _rpn_inputs(model, sizes=((192, 192),)):
    normalized = [(scene(h, w, seed=i) - model.pixel_mean) / model.pixel_std for i, (h, w) in enumerate(sizes)]
    images = ImageList.from_tensors(normalized, model.size_divisibility)
    with torch.no_grad():
        features = model.backbone(images.tensor)["res4"]
    return images, features


def _spread_rpn_deltas(model, std=0.05):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.rpn.head.anchor_deltas.weight.copy_(torch.randn(model.rpn.head.anchor_deltas.weight.shape,
                                                              generator=g) * std)
        model.rpn.head.objectness_logits.weight.copy_(
            torch.randn(model.rpn.head.objectness_logits.weight.shape, generator=g) * 0.1)


def test_rpn_keeps_at_most_300_proposals_top_scored_after_nms():
    model = small_model("MODEL.ANCHOR_GENERATOR.SIZES", "[32, 64, 128, 256, 512]",
                        "MODEL.RPN.PRE_NMS_TOPK_TEST", "6000", "MODEL.RPN.POST_NMS_TOPK_TEST", "300").eval()
    _spread_rpn_deltas(model)
    images, features = _rpn_inputs(model)
    with torch.no_grad():
        proposals, losses = model.rpn(images, features)
        (ref_boxes, ref_scores, survivors), = _reference_proposals(model.rpn, images, features)
    assert losses == {}
    assert survivors > 300  # more than 300 survive NMS: the cap is what limits the count
    assert len(proposals) == 1 and proposals[0].shape == (300, 4)
    torch.testing.assert_close(proposals[0], ref_boxes, rtol=0, atol=1e-4)
    assert (ref_scores[1:] <= ref_scores[:-1]).all()  # i.e. the proposals come sorted by score


def test_rpn_proposals_inside_each_image_non_degenerate_and_sorted_per_image():
    model = small_model("MODEL.RPN.POST_NMS_TOPK_TEST", "40").eval()
    _spread_rpn_deltas(model, std=0.3)  # large deltas: many boxes cross the borders
    sizes = ((150, 190), (192, 128))
    images, features = _rpn_inputs(model, sizes)
    assert images.tensor.shape[-2:] == (192, 192)
    with torch.no_grad():
        proposals, _ = model.rpn(images, features)
        ref = _reference_proposals(model.rpn, images, features)
    assert len(proposals) == 2
    for props, (h, w), (ref_boxes, ref_scores, _) in zip(proposals, sizes, ref):
        assert 0 < len(props) <= 40
        assert (props[:, 0] >= 0).all() and (props[:, 1] >= 0).all()
        assert (props[:, 2] <= w).all() and (props[:, 3] <= h).all()
        assert (props[:, 2] > props[:, 0]).all() and (props[:, 3] > props[:, 1]).all()
        assert ((props[:, 2] == w) | (props[:, 3] == h) | (props[:, 0] == 0)).any()  # clipping happened
        torch.testing.assert_close(props, ref_boxes, rtol=0, atol=1e-4)
        assert (ref_scores[1:] <= ref_scores[:-1]).all()


def test_rpn_training_mode_uses_train_topk():
    model = small_model("MODEL.RPN.POST_NMS_TOPK_TRAIN", "7", "MODEL.RPN.POST_NMS_TOPK_TEST", "20")
    _spread_rpn_deltas(model)
    images, features = _rpn_inputs(model)
    model.rpn.train()
    with torch.no_grad():
        props, losses = model.rpn(images, features, [BOXES.clone()])
    assert len(props[0]) == 7 and set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    with pytest.raises(ValueError, match="ground-truth"):
        model.rpn(images, features)
    model.rpn.eval()
    with torch.no_grad():
        assert len(model.rpn(images, features)[0][0]) == 20
