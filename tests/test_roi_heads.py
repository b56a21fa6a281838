"""Res5ROIHeads and BoxPredictor (detection/modeling/res5_head.py): inference, sampling and losses on
hand-computed cases."""
import pytest
import torch
import torch.nn.functional as F

from detection.modeling.box_coder import BoxCoder
from detection.modeling.matcher import Matcher
from detection.modeling.pooler import ROIPooler
from detection.modeling.res5_head import BoxPredictor, Res5ROIHeads


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


def test_res5_head_forward_on_zero_proposals_returns_zero_detections_for_every_image():
    heads = _heads()
    features = torch.randn(2, 8, 6, 8, generator=torch.Generator().manual_seed(0))
    out, losses = heads(features, [torch.zeros(0, 4), torch.zeros(0, 4)], [(96, 128), (80, 100)])
    assert losses == {} and len(out) == 2
    for det in out:
        assert det["boxes"].shape == (0, 4) and det["scores"].shape == (0,) and det["labels"].shape == (0,)
        assert det["labels"].dtype == torch.int64


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
