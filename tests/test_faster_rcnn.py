"""The whole C4 Faster R-CNN (detection/modeling/meta_arch/faster_rcnn.py, built by build_model):
postprocess to the original size, training losses and gradients, build options, overfitting one image,
batched inference equal to single."""
import math

import pytest
import torch
from torchvision.ops import box_iou

from small_detector import BOXES, LABELS, scene, small_model, train_inputs

from detection.modeling.meta_arch.faster_rcnn import detector_postprocess
from detection.structures import ImageList

LOSS_NAMES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}


pytestmark = pytest.mark.usefixtures("single_thread")


# ----------------------------------------------------------------------------- postprocess


def test_detector_postprocess_maps_boxes_to_the_original_size_and_drops_emptied_ones():
    result = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 5.0, 100.0], [150.0, 10.0, 160.0, 20.0]]),
              "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 2, 0])}
    # resized 100 x 150 (h x w) -> original 150 x 300: x * 2, y * 1.5
    out = detector_postprocess(result, {"height": 150, "width": 300}, (100, 150))
    assert out["boxes"].tolist() == [[20.0, 30.0, 60.0, 60.0], [0.0, 0.0, 10.0, 150.0]]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.8]) and out["labels"].tolist() == [1, 2]
    same = detector_postprocess(result, {}, (100, 150))  # no height/width: the resized size, clipped
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


@pytest.mark.parametrize("n", [1, 3])
def test_image_batch_written_in_channels_last_equals_the_padded_batch(n):
    """The batch is written once in the trunk's memory format: the same values as padding in NCHW
    (pad value in the padding) and converting."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 20 + 3 * i, 30 - 5 * i, generator=g) for i in range(n)]
    expected = torch.full((n, 3, 32, 32), -1.5)
    for im, e in zip(images, expected):
        e[:, :im.shape[1], :im.shape[2]] = im
    batch = ImageList.from_tensors(images, 16, pad_value=-1.5, memory_format=torch.channels_last)
    assert batch.tensor.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch.tensor, expected)
    assert batch.image_sizes == [tuple(im.shape[1:]) for im in images]
    assert torch.equal(ImageList.from_tensors(images, 16, pad_value=-1.5).tensor, expected)
