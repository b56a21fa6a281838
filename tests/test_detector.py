"""The C4 Faster R-CNN: RPN proposals, RoI pooling, res5 head inference, training, postprocess, overfitting."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, nms, roi_align, roi_pool

from detection.config import load_config
from detection.modeling import build_model
from detection.modeling.anchors import AnchorGenerator
from detection.modeling.box_coder import BoxCoder
from detection.modeling.meta_arch.faster_rcnn import detector_postprocess as postprocess
from detection.modeling.matcher import Matcher
from detection.modeling.pooler import ROIPooler
from detection.modeling.res5_head import BoxPredictor, Res5ROIHeads
from detection.modeling.anchor_head import AnchorHead
from detection.modeling.anchor_labeling import label_anchors
from detection.modeling.box_ops import anchors_inside, clip_boxes, first_k_per_group
from detection.modeling.rpn import RPN
from detection.structures import ImageList

LOSS_NAMES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}

# A tiny ResNet-18 C4 detector: basic blocks with 16/32/64/128 channels (STEM_OUT_CHANNELS 16), so that
# training on CPU takes well under 0.1 s per iteration (16 RoIs of 6x6 per image through res5).
SMALL = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.RESNETS.GN_GROUPS", "8",
    "MODEL.RESNETS.FREEZE_AT", "0",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[32, 64, 128]",
    "MODEL.ROI_HEADS.NUM_CLASSES", "3",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.5",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "300",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "300",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "6",
    "MODEL.PIXEL_MEAN", "[128.0, 128.0, 128.0]",
    "MODEL.PIXEL_STD", "[64.0, 64.0, 64.0]",
]


pytestmark = pytest.mark.usefixtures("single_thread")


def small_cfg(*opts):
    return load_config(None, SMALL + list(opts))


def small_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(small_cfg(*opts))


BOXES = torch.tensor([[20.0, 30.0, 70.0, 90.0], [90.0, 20.0, 150.0, 60.0], [85.0, 95.0, 140.0, 145.0]])
LABELS = torch.tensor([0, 1, 2])
COLORS = torch.tensor([[255.0, 0.0, 0.0], [0.0, 255.0, 0.0], [0.0, 0.0, 255.0]])


def scene(h=160, w=160, boxes=BOXES, labels=LABELS, seed=0):
    """Noise with filled rectangles, one colour per class."""
    img = 128 + 40 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(seed))
    for b, c in zip(boxes.long(), labels):
        img[:, b[1]:b[3], b[0]:b[2]] = COLORS[c][:, None, None]
    return img.clamp(0, 255)


def train_inputs(seed=0):
    return [{"image": scene(seed=seed), "boxes": BOXES.clone(), "labels": LABELS.clone()}]


# ----------------------------------------------------------------------------- helpers: hand-computed


def test_first_k_per_group_hand_computed():
    group = torch.tensor([1, 0, 1, 2, 0, 1, 1])
    assert first_k_per_group(group, 2, 4).tolist() == [1, 4, 0, 2, 3]
    assert first_k_per_group(group, 3, 4).tolist() == [1, 4, 0, 2, 5, 3]
    assert first_k_per_group(group, 0, 4).tolist() == []
    assert first_k_per_group(torch.zeros(0, dtype=torch.long), 5, 2).tolist() == []


def test_clip_boxes_hand_computed():
    boxes = torch.tensor([[-5.0, -3.0, 50.0, 40.0], [10.0, 20.0, 30.0, 200.0], [45.0, 35.0, 60.0, 50.0]])
    out = clip_boxes(boxes, torch.tensor([30, 40]))  # h 30, w 40
    assert out.tolist() == [[0.0, 0.0, 40.0, 30.0], [10.0, 20.0, 30.0, 30.0], [40.0, 30.0, 40.0, 30.0]]
    per_box = clip_boxes(boxes, torch.tensor([[30, 40], [100, 100], [100, 50]]))
    assert per_box.tolist() == [[0.0, 0.0, 40.0, 30.0], [10.0, 20.0, 30.0, 100.0], [45.0, 35.0, 50.0, 50.0]]


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


# ----------------------------------------------------------------------------- RPN labels and losses


def test_anchors_inside_hand_computed():
    anchors = torch.tensor([[-10.0, 0.0, 10.0, 10.0],   # centre (0, 5), crosses the left border by 10
                            [30.0, 0.0, 50.0, 10.0],    # centre (40, 5): in the padding of a 32-wide image
                            [0.0, 0.0, 20.0, 20.0],
                            [15.0, 15.0, 45.0, 45.0]])  # centre (30, 30), crosses right/bottom by 13
    sizes = torch.tensor([[32, 32], [50, 50]])
    assert anchors_inside(anchors, sizes, -1.0).tolist() == [[True, False, True, True], [True] * 4]
    # continuous coordinates: an anchor ending exactly on the border (x2 = 50 = w) is inside
    assert anchors_inside(anchors, sizes, 0.0).tolist() == [[False, False, True, False],
                                                             [False, True, True, True]]
    assert anchors_inside(anchors, sizes, 15.0).tolist() == [[True, False, True, True], [True] * 4]


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


def test_rpn_ignores_anchors_centred_in_the_batch_padding():
    rpn = _loss_rpn()
    anchors = rpn.anchor_generator((3, 3))
    labels, _, targets = label_anchors(anchors, [torch.tensor([[0.0, 0.0, 30.0, 30.0]])] * 2,
                                       torch.tensor([[48, 48], [20, 40]]),  # image 1: h 20, w 40
                                       rpn.matcher, rpn.box_coder, num_samples=rpn.batch_size_per_image,
                                       positive_fraction=rpn.positive_fraction)
    cx, cy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    padding = (cx >= 40) | (cy >= 20)  # the bottom row of anchors, centred at y = 32
    assert padding.sum() == 3
    assert (labels[0][padding] == 0).all()  # negatives in the 48x48 image
    assert (labels[1][padding] == -1).all()  # ignored where they sit in the padding
    assert torch.equal(labels[0][~padding], labels[1][~padding])  # everything is sampled: the rest agrees
    assert targets.shape == (2, 9, 4)


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


# ----------------------------------------------------------------------------- pooler


def _pool_inputs():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 12, 16, generator=g)
    boxes = [torch.tensor([[10.0, 20.0, 100.0, 150.0], [0.0, 0.0, 255.0, 191.0], [33.3, 47.1, 60.2, 70.9]]),
             torch.tensor([[5.5, 6.5, 250.0, 100.0]])]
    rois = torch.tensor([[0, 10.0, 20.0, 100.0, 150.0], [0, 0.0, 0.0, 255.0, 191.0], [0, 33.3, 47.1, 60.2, 70.9],
                         [1, 5.5, 6.5, 250.0, 100.0]])
    return features, boxes, rois


@pytest.mark.parametrize("pooler_type,aligned", [("ROIAlign", False), ("ROIAlignV2", True)])
def test_roi_align_pooler_equals_torchvision(pooler_type, aligned):
    features, boxes, rois = _pool_inputs()
    out = ROIPooler(7, 1 / 16, pooler_type, sampling_ratio=0)(features, boxes)
    assert out.shape == (4, 8, 7, 7)
    torch.testing.assert_close(out, roi_align(features, rois, (7, 7), 1 / 16, 0, aligned=aligned), rtol=0, atol=0)
    other = roi_align(features, rois, (7, 7), 1 / 16, 0, aligned=not aligned)
    assert not torch.allclose(out, other, atol=1e-3)
    out2 = ROIPooler(7, 1 / 16, pooler_type, sampling_ratio=2)(features, boxes)
    torch.testing.assert_close(out2, roi_align(features, rois, (7, 7), 1 / 16, 2, aligned=aligned), rtol=0, atol=0)


def test_roi_pool_pooler_equals_torchvision():
    features, boxes, rois = _pool_inputs()
    out = ROIPooler(6, 1 / 16, "ROIPool")(features, boxes)
    torch.testing.assert_close(out, roi_pool(features, rois, (6, 6), 1 / 16), rtol=0, atol=0)


def test_roi_align_v2_samples_a_ramp_at_half_pixel_shifted_bin_centres():
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(2, 1, 8, 16).contiguous()  # value = column index
    ramp[1] += 100.0  # second image: offset, to check the image index
    boxes = [torch.tensor([[32.0, 16.0, 96.0, 80.0]]), torch.tensor([[40.0, 16.0, 120.0, 80.0]])]
    v2 = ROIPooler(4, 1 / 16, "ROIAlignV2")(ramp, boxes)
    v1 = ROIPooler(4, 1 / 16, "ROIAlign")(ramp, boxes)
    # image 0: x in feature units 2..6, bin width 1; V2 shifts by -0.5
    torch.testing.assert_close(v2[0, 0], torch.tensor([2.0, 3.0, 4.0, 5.0]).expand(4, 4))
    torch.testing.assert_close(v1[0, 0], torch.tensor([2.5, 3.5, 4.5, 5.5]).expand(4, 4))
    # image 1: x 2.5..7.5, bin width 1.25
    expected = 100.0 + 2.5 - 0.5 + (torch.arange(4.0) + 0.5) * 1.25
    torch.testing.assert_close(v2[1, 0], expected.expand(4, 4))


def test_unknown_pooler_type_raises():
    with pytest.raises(ValueError, match="POOLER_TYPE"):
        ROIPooler(7, 1 / 16, "ROIWarp")


# ----------------------------------------------------------------------------- res5 head inference


def _heads(num_classes=3, agnostic=False, score_thresh=0.05, nms_thresh=0.5, per_image=100):
    return Res5ROIHeads(ROIPooler(4, 1 / 16), torch.nn.Identity(), BoxPredictor(8, num_classes, agnostic),
                        BoxCoder((10.0, 10.0, 5.0, 5.0)), Matcher([0.5], [0, 1]), num_classes=num_classes,
                        score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_image=per_image).eval()


def _hand_head_case():
    proposals = [torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 100.0, 90.0], [12.0, 10.0, 52.0, 50.0]]),
                 torch.tensor([[30.0, 30.0, 45.0, 60.0]])]
    probs = torch.tensor([
        [0.70, 0.10, 0.02, 0.18],  # p0: class 0 and 1 pass 0.05
        [0.01, 0.04, 0.90, 0.05],  # p1: class 2 only
        [0.60, 0.30, 0.01, 0.09],  # p2: class 0 (suppressed by p0's), class 1 (suppresses p0's)
        [0.05, 0.80, 0.05, 0.10],  # image 1: class 1; 0.05 is not > 0.05
    ])
    deltas = torch.zeros(4, 12)
    deltas[0, 0:4] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # p0 class 0: dx 1 / wx 10 * w 40 = +4 px
    return proposals, probs.log(), deltas


def test_res5_head_inference_hand_computed():
    proposals, logits, deltas = _hand_head_case()
    out = _heads().inference(logits, deltas, proposals, [(120, 120), (50, 40)])
    assert len(out) == 2
    torch.testing.assert_close(out[0]["scores"], torch.tensor([0.9, 0.7, 0.3]))
    assert out[0]["labels"].tolist() == [2, 0, 1]
    torch.testing.assert_close(out[0]["boxes"], torch.tensor(
        [[60.0, 60.0, 100.0, 90.0], [14.0, 10.0, 54.0, 50.0], [12.0, 10.0, 52.0, 50.0]]))
    # image 1: clipped to its own size (h 50, w 40)
    torch.testing.assert_close(out[1]["scores"], torch.tensor([0.8]))
    assert out[1]["labels"].tolist() == [1]
    torch.testing.assert_close(out[1]["boxes"], torch.tensor([[30.0, 30.0, 40.0, 50.0]]))


def test_res5_head_score_threshold_nms_threshold_and_detections_per_image():
    proposals, logits, deltas = _hand_head_case()
    sizes = [(120, 120), (50, 40)]
    out = _heads(score_thresh=0.5).inference(logits, deltas, proposals, sizes)
    # p2 class 0 (0.6) overlaps p0 class 0 (0.7) with IoU 0.905: suppressed
    assert out[0]["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert out[0]["labels"].tolist() == [2, 0]
    # NMS threshold above that IoU keeps it
    out = _heads(score_thresh=0.5, nms_thresh=0.95).inference(logits, deltas, proposals, sizes)
    assert out[0]["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert out[0]["labels"].tolist() == [2, 0, 0]
    out = _heads(per_image=2).inference(logits, deltas, proposals, sizes)
    assert out[0]["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert out[1]["scores"].tolist() == pytest.approx([0.8])


def test_res5_head_class_agnostic_boxes_are_shared_by_all_classes():
    proposals, logits, _ = _hand_head_case()
    deltas = torch.zeros(4, 4)
    deltas[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    heads = _heads(agnostic=True)
    assert heads.box_predictor.bbox_pred.out_features == 4
    out = heads.inference(logits, deltas, proposals, [(120, 120), (50, 40)])
    # p0 is shifted for every class now: p0 class 1 [14,10,54,50] vs p2 class 1 [12,10,52,50] still overlap
    assert out[0]["labels"].tolist() == [2, 0, 1]
    torch.testing.assert_close(out[0]["boxes"][1], torch.tensor([14.0, 10.0, 54.0, 50.0]))
    torch.testing.assert_close(out[0]["boxes"][2], torch.tensor([12.0, 10.0, 52.0, 50.0]))


def test_res5_head_inference_with_no_proposals_for_an_image():
    proposals, logits, deltas = _hand_head_case()
    out = _heads().inference(logits[:3], deltas[:3], [proposals[0], torch.zeros(0, 4)], [(120, 120), (50, 40)])
    assert len(out[0]["scores"]) == 3 and len(out[1]["scores"]) == 0 and out[1]["boxes"].shape == (0, 4)


def test_res5_head_sampling_appends_gt_and_labels_background_last():
    heads = _heads()
    heads.batch_size_per_image, heads.positive_fraction = 512, 0.25
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 11.0]])
    gt, gt_cls = torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([2])
    boxes, labels, targets = heads.sample([props], [gt], [gt_cls])
    assert labels.tolist() == [2, 2, 2, 3]  # three foreground (the gt itself included), then background
    fg = {tuple(b) for b in boxes[0][:3].tolist()}
    assert fg == {(0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 10.0, 11.0)} and boxes[0][:3].tolist().count([0, 0, 10, 10]) == 2
    assert boxes[0][3].tolist() == [50.0, 50.0, 60.0, 60.0]
    assert (targets == gt).all()
    # no ground truth: every proposal is background
    boxes, labels, _ = heads.sample([props], [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)])
    assert labels.tolist() == [3, 3, 3] and len(boxes[0]) == 3


def test_res5_head_losses_hand_computed():
    heads = _heads()
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(4, 4, generator=g), torch.randn(4, 12, generator=g)
    labels = torch.tensor([0, 3, 2, 3])
    boxes = [torch.tensor([[10.0, 10.0, 50.0, 50.0], [0.0, 0.0, 20.0, 30.0]]),
             torch.tensor([[5.0, 5.0, 25.0, 45.0], [1.0, 2.0, 3.0, 4.0]])]
    targets = torch.tensor([[12.0, 8.0, 48.0, 60.0], [0.0, 0.0, 1.0, 1.0],
                            [5.0, 0.0, 30.0, 40.0], [0.0, 0.0, 1.0, 1.0]])
    losses = heads.losses(logits, deltas, labels, targets, boxes)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    enc = coder.encode(torch.cat(boxes), targets)
    expected_box = ((deltas[0, 0:4] - enc[0]).abs().sum() + (deltas[2, 8:12] - enc[2]).abs().sum()) / 4
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(logits, labels))
    torch.testing.assert_close(losses["loss_box_reg"], expected_box)


# ----------------------------------------------------------------------------- postprocess


def test_postprocess_maps_boxes_to_the_original_size_hand_computed():
    result = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 100.0], [150.0, 10.0, 160.0, 20.0]]),
              "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 0])}
    # resized 100 x 150 (h x w) -> original 150 x 300: x * 2, y * 1.5
    out = postprocess(result, {"height": 150, "width": 300}, (100, 150))
    assert out["boxes"].tolist() == [[20.0, 30.0, 60.0, 60.0], [0.0, 0.0, 10.0, 150.0]]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8]) and out["labels"].tolist() == [1, 2]
    same = postprocess(result, {}, (100, 150))  # no height/width: the resized size, clipped
    assert same["boxes"].tolist() == [[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 100.0]]


def test_model_outputs_are_scaled_to_height_and_width():
    model = small_model("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0").eval()
    img = scene(96, 128)
    with torch.no_grad():
        plain = model([{"image": img}])[0]
        scaled = model([{"image": img, "height": 192, "width": 384}])[0]
    assert len(plain["boxes"]) > 0 and len(scaled["boxes"]) == len(plain["boxes"])
    torch.testing.assert_close(scaled["boxes"], plain["boxes"] * torch.tensor([3.0, 2.0, 3.0, 2.0]),
                               rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(scaled["scores"], plain["scores"])
    assert (plain["boxes"][:, 2] <= 128).all() and (plain["boxes"][:, 3] <= 96).all()


# ----------------------------------------------------------------------------- training


def _check_losses(losses):
    assert set(losses) == LOSS_NAMES
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name


def test_training_returns_four_finite_losses_and_gradients():
    model = small_model().train()
    inputs = train_inputs() + [{"image": scene(128, 160, BOXES[:2] * 0.8, LABELS[:2], seed=3),
                                "boxes": BOXES[:2] * 0.8, "labels": LABELS[:2]}]
    losses = model(inputs)
    _check_losses(losses)
    assert all(v > 0 for v in losses.values())
    # untrained: the classification losses are near their chance values
    assert losses["loss_rpn_cls"].item() == pytest.approx(math.log(2), abs=0.05)
    assert losses["loss_cls"].item() == pytest.approx(math.log(4), rel=0.2)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_frozen_parameters_get_no_gradient_and_do_not_change():
    model = small_model("MODEL.RESNETS.FREEZE_AT", "2", "MODEL.RESNETS.NORM", "BN").train()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    frozen_buffers = {n: b.clone() for n, b in model.named_buffers()
                      if n.startswith(("backbone.stem.", "backbone.res2."))}
    assert frozen and all(n.startswith(("backbone.stem.", "backbone.res2.")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone.res3."))
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        opt.zero_grad()
        sum(model(train_inputs()).values()).backward()
        assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
        opt.step()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert all(torch.equal(buffers[n], v) for n, v in frozen_buffers.items())
    changed = [n for n, v in trainable.items() if not torch.equal(params[n], v)]
    assert "backbone.res3.0.conv1.weight" in changed and "rpn.head.conv.weight" in changed
    assert "roi_heads.res5.0.conv1.weight" in changed and "roi_heads.box_predictor.cls_score.weight" in changed


def test_image_without_ground_truth_trains():
    model = small_model().train()
    empty = {"image": scene(seed=5), "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    losses = model(train_inputs() + [empty])
    _check_losses(losses)
    sum(losses.values()).backward()
    only_empty = model([empty])
    _check_losses(only_empty)
    assert only_empty["loss_rpn_loc"].item() == 0.0 and only_empty["loss_box_reg"].item() == 0.0
    assert only_empty["loss_rpn_cls"].item() > 0 and only_empty["loss_cls"].item() > 0
    sum(only_empty.values()).backward()


def test_class_agnostic_bbox_reg_builds_4_outputs_and_runs():
    model = small_model("MODEL.ROI_HEADS.CLS_AGNOSTIC_BBOX_REG", "True")
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4
    assert model.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    _check_losses(model.train()(train_inputs()))
    with torch.no_grad():
        out = model.eval()([{"image": scene()}])[0]
    assert out["boxes"].shape[1] == 4 and torch.isfinite(out["boxes"]).all()


def test_class_specific_bbox_reg_has_4k_outputs():
    model = small_model()
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 12


def test_roi_pool_pooler_type_trains_and_runs():
    model = small_model("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIPool")
    assert model.roi_heads.pooler.pooler_type == "ROIPool"
    _check_losses(model.train()(train_inputs()))
    with torch.no_grad():
        out = model.eval()([{"image": scene()}])[0]
    assert set(out) == {"boxes", "scores", "labels"} and torch.isfinite(out["boxes"]).all()


# ----------------------------------------------------------------------------- overfitting one image


def _train(model, inputs, iters, lr):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    model.train()
    for i in range(iters):
        for group in opt.param_groups:  # short warmup, then a 10x drop for the last quarter
            group["lr"] = lr * min(1.0, (i + 1) / 20) * (0.1 if i >= 3 * iters // 4 else 1.0)
        losses = model(inputs)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    return losses


@pytest.fixture(scope="module")
def overfit_model():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = small_model(seed=0)
        losses = _train(model, train_inputs(), iters=200, lr=0.02)
    finally:
        torch.set_num_threads(n)
    return model.eval(), losses


def test_single_image_overfits(overfit_model):
    model, losses = overfit_model
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = model([{"image": scene()}])[0]
    assert len(out["boxes"]) > 0
    iou = box_iou(BOXES, out["boxes"])
    for k in range(len(BOXES)):
        right = (out["labels"] == LABELS[k]) & (iou[k] > 0.7) & (out["scores"] > 0.5)
        assert right.any(), f"object {k} not found: ious {iou[k].tolist()}, labels {out['labels'].tolist()}"
        # the most confident detection on this object is of the right class
        on_it = torch.nonzero(iou[k] > 0.5).squeeze(1)
        top = on_it[out["scores"][on_it].argmax()]
        assert out["labels"][top] == LABELS[k] and iou[k, top] > 0.7


# ----------------------------------------------------------------------------- batching


def _assert_same_detections(a, b, atol=1e-4):
    assert a["labels"].tolist() == b["labels"].tolist()
    torch.testing.assert_close(a["scores"], b["scores"], rtol=0, atol=atol)
    torch.testing.assert_close(a["boxes"], b["boxes"], rtol=0, atol=atol)


def _two_scenes(size1, size2):
    boxes2 = torch.tensor([[30.0, 20.0, 80.0, 70.0], [100.0, 80.0, 150.0, 130.0]])
    return ({"image": scene(*size1)}, {"image": scene(*size2, boxes=boxes2, labels=torch.tensor([2, 0]), seed=9)})


def test_batched_inference_matches_single_when_sizes_equal_after_padding(overfit_model):
    model, _ = overfit_model
    a, b = _two_scenes((160, 192), (160, 192))
    with torch.no_grad():
        batched = model([a, b])
        single = [model([a])[0], model([b])[0]]
    assert len(batched[0]["boxes"]) >= 3 and len(batched[1]["boxes"]) >= 1
    for x, y in zip(batched, single):
        _assert_same_detections(x, y)


def test_batched_inference_matches_single_for_different_sizes(overfit_model):
    model, _ = overfit_model
    a, b = _two_scenes((160, 200), (150, 190))  # pad to 160x208 and 160x192 alone, 160x208 together
    with torch.no_grad():
        batched = model([a, b])
        single = [model([a])[0], model([b])[0]]
    for x, y in zip(batched, single):
        _assert_same_detections(x, y)
