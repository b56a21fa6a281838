"""The localization mode: per-class RPN (PCR) + image classifier (detection/modeling/meta_arch/pcr.py):
build, anchor sampling, which channels train, decoding to the original image, outputs, class file,
a short training run, one and several test scales."""
import json

import pytest
import torch
import torch.nn as nn

from tiny_localizer import K, tiny_cfg

from detection.evaluation.loc_eval import LocalizationEvaluator
from detection.modeling import build_model
from detection.modeling.box_ops import to_original
from detection.modeling.class_merge import merge_top_boxes
from detection.modeling.meta_arch import FasterRCNN, PCRLocalizer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny tensors: a second thread only adds synchronisation (and spins on a shared, busy CPU)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_build_model_dispatches_on_meta_architecture(model):
    assert isinstance(model, PCRLocalizer)
    assert model.num_classes == K
    assert model.classifier.linear.out_features == K
    # the per-class head: K logits and 4K deltas for each of the 4 anchors of a cell
    assert model.head.objectness_logits.out_channels == 4 * K
    assert model.head.anchor_deltas.out_channels == 4 * K * 4
    det_cfg = tiny_cfg("MODEL.META_ARCHITECTURE", "FasterRCNN", "MODEL.ROI_HEADS.NUM_CLASSES", "2")
    assert isinstance(build_model(det_cfg), FasterRCNN)
    with pytest.raises(ValueError, match="CLASS_FILE"):
        build_model(tiny_cfg("MODEL.PCR.CLASS_SOURCE", "file"))


def sampling_model(sizes):
    torch.manual_seed(0)
    return build_model(tiny_cfg("MODEL.ANCHOR_GENERATOR.SIZES", str(sizes)))


def test_sampling_gives_8_anchors_per_image_at_1_to_1():
    # anchors 60..72 px at one cell all overlap a 64 px box at IoU >= 0.79: plenty of positives
    m = sampling_model([60, 64, 68, 72, 24, 16])
    anchors = m.anchor_generator((8, 8))
    gt = [torch.tensor([[32.0 - 32, 32 - 32, 32 + 32, 32 + 32]]), torch.tensor([[64.0 - 32, 48 - 32, 64 + 32, 48 + 32]])]
    labels, classes, _ = m.label_anchors(anchors, gt, [torch.tensor([1]), torch.tensor([2])],
                                         torch.tensor([[128, 128], [128, 128]]))
    for i, c in enumerate((1, 2)):
        assert (labels[i] == 1).sum() == 4 and (labels[i] == 0).sum() == 4
        assert (classes[i][labels[i] == 1] == c).all()


def test_sampling_fills_with_negatives_when_positives_are_few():
    # a lone 40 px box among 16/24 px anchors: only its best anchor (low-quality match) is positive
    m = sampling_model([16, 24])
    anchors = m.anchor_generator((8, 8))
    gt = [torch.tensor([[40.0, 40.0, 80.0, 80.0]]), torch.zeros(0, 4)]
    labels, _, _ = m.label_anchors(anchors, gt, [torch.tensor([0]), torch.zeros(0, dtype=torch.long)],
                                   torch.tensor([[128, 128], [128, 128]]))
    n_pos = int((labels[0] == 1).sum())
    assert 1 <= n_pos < 4 and (labels[0] >= 0).sum() == 8  # negatives fill up to 8
    assert (labels[1] >= 0).sum() == 0  # a crop that lost every box trains no anchor
    # ... and its losses stay finite (only the classifier of the labelled image contributes)
    m.train()
    batch = [{"image": torch.randint(0, 255, (3, 128, 128), dtype=torch.uint8), "boxes": b,
              "labels": torch.tensor([0]) if len(b) else torch.zeros(0, dtype=torch.long)} for b in gt]
    losses = m(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_only_the_true_class_regressor_and_channel_get_gradient(model):
    model.train()
    model.zero_grad()
    true_class = 1
    batch = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8),
              "boxes": torch.tensor([[8.0, 10.0, 40.0, 44.0]]), "labels": torch.tensor([true_class])}
             for _ in range(2)]
    losses = model(batch)
    assert set(losses) == {"loss_pcr_cls", "loss_pcr_loc", "loss_cls"}
    (losses["loss_pcr_cls"] + losses["loss_pcr_loc"]).backward()
    a = model.head.num_anchors
    reg = model.head.anchor_deltas.weight.grad.view(a, K, 4, -1)
    cls = model.head.objectness_logits.weight.grad.view(a, K, -1)
    others = [c for c in range(K) if c != true_class]
    assert reg[:, true_class].abs().sum() > 0 and cls[:, true_class].abs().sum() > 0
    assert reg[:, others].abs().sum() == 0
    assert cls[:, others].abs().sum() == 0  # channels of classes absent from the image are not trained
    model.zero_grad()


class FixedHead(nn.Module):
    """Logits/deltas chosen by the test: class c peaks at anchor ``best[c]`` with deltas ``d[c]``."""

    def __init__(self, num_anchors, best, deltas):
        super().__init__()
        self.num_anchors, self.num_classes = num_anchors, K
        self.best, self.deltas = best, deltas

    def forward(self, x):
        b, _, h, w = x.shape
        n = h * w * self.num_anchors
        logits = torch.full((b, n, K), -5.0)
        deltas = torch.zeros(b, n, K, 4)
        for c, i in enumerate(self.best):
            logits[:, i, c] = 5.0
            deltas[:, i, c] = self.deltas[c]
        return logits, deltas


def test_decoding_takes_class_c_regressor_at_class_c_best_anchor_and_maps_to_original(model):
    model.eval()
    anchors = model.anchor_generator((4, 4))
    best = [0, 21, 45]
    d = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, -0.25, 0.0, 0.0], [0.0, 0.0, 0.6931472, 0.0]])
    real_head, model.head = model.head, FixedHead(model.head.num_anchors, best, d)
    model.topk_merge = 1
    try:
        image = torch.zeros(3, 64, 64, dtype=torch.uint8)
        out = model([{"image": image, "height": 128, "width": 256, "image_id": 7},  # whole image, scaled 2x, 4x
                     {"image": image, "height": 100, "width": 100, "image_id": 8,  # 1-crop of a 64x80 resize
                      "crop_origin": (8, 0), "resized_size": (64, 80)}])
    finally:
        model.head, model.topk_merge = real_head, 5
    expected = torch.empty(K, 4)
    for c, i in enumerate(best):
        x1, y1, x2, y2 = anchors[i].tolist()
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + d[c, 0] * w, (y1 + y2) / 2 + d[c, 1] * h
        w, h = w * torch.exp(d[c, 2]), h * torch.exp(d[c, 3])
        expected[c] = torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    whole = (expected * torch.tensor([4.0, 2.0, 4.0, 2.0])).clamp(min=0)
    whole[:, 0::2] = whole[:, 0::2].clamp(max=256)
    whole[:, 1::2] = whole[:, 1::2].clamp(max=128)
    assert torch.allclose(out[0]["boxes_per_class"], whole, atol=1e-4)
    crop = ((expected + torch.tensor([8.0, 0, 8, 0])) * torch.tensor([100 / 80, 100 / 64, 100 / 80, 100 / 64]))
    assert torch.allclose(out[1]["boxes_per_class"], crop.clamp(0, 100), atol=1e-4)
    # the one inverse of the data side, on the mapper's 1-crop keys
    sample = {"image": image, "height": 100, "width": 100, "crop_origin": (8, 0), "resized_size": (64, 80)}
    assert torch.allclose(out[1]["boxes_per_class"], to_original(expected, sample, (64, 64)), atol=1e-4)


def test_outputs_are_what_the_evaluator_reads(model):
    model.eval()
    image = torch.randint(0, 255, (3, 48, 80), dtype=torch.uint8)
    out = model([{"image": image, "height": 96, "width": 160, "image_id": 3}])[0]
    assert out["boxes_per_class"].shape == (K, 4) and out["class_scores"].shape == (K,)
    assert out["topk_labels"].shape == (K,)  # min(5, K)
    assert torch.equal(out["topk_labels"], torch.argsort(out["class_scores"], descending=True))
    assert torch.allclose(out["scores"], out["class_scores"][out["labels"]])
    assert torch.allclose(out["boxes"], out["boxes_per_class"][out["labels"]])
    assert torch.isclose(out["class_scores"].sum(), torch.tensor(1.0))
    ev = LocalizationEvaluator(records=[{"image_id": 3, "boxes": out["boxes_per_class"][1:2], "labels": [1]}],
                               verbose=False)
    ev.process([3], [out])
    m = ev.evaluate()
    assert m["loc_err_gt"] == 0.0 and m["num_missing_boxes"] == 0


def test_class_file_ranks_the_classes(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"5": [2, 0, 1]}))
    m = build_model(tiny_cfg("MODEL.PCR.CLASS_SOURCE", "file", "MODEL.PCR.CLASS_FILE", str(path))).eval()
    out = m([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "image_id": 5}])[0]
    assert out["topk_labels"].tolist() == [2, 0, 1]
    with pytest.raises(KeyError, match="CLASS_FILE"):
        m([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "image_id": 6}])


def toy_images():
    """Four 64x64 images, one object each: a bright square whose class is its colour channel."""
    gen = torch.Generator().manual_seed(1)
    samples, records = [], []
    spec = [(0, [6, 8, 40, 42]), (1, [24, 20, 60, 58]), (2, [10, 26, 38, 58]), (0, [30, 4, 62, 36])]
    for i, (c, box) in enumerate(spec):
        img = torch.randint(0, 60, (3, 64, 64), generator=gen).to(torch.uint8)
        x1, y1, x2, y2 = box
        img[c, y1:y2, x1:x2] = 230
        b = torch.tensor([box], dtype=torch.float32)
        samples.append({"image": img, "boxes": b, "labels": torch.tensor([c]), "height": 64, "width": 64,
                        "image_id": i})
        records.append({"image_id": i, "boxes": b, "labels": torch.tensor([c])})
    return samples, records


def test_a_few_hundred_steps_localize_a_handful_of_images():
    torch.manual_seed(0)
    m = build_model(tiny_cfg())
    samples, records = toy_images()
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    m.train()
    for _ in range(150):
        losses = m(samples)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    m.eval()
    ev = LocalizationEvaluator(records=records, verbose=False)
    with torch.no_grad():
        ev.process([s["image_id"] for s in samples], m(samples))
    metrics = ev.evaluate()
    assert metrics["loc_err_gt"] == 0.0
    assert metrics["loc_err_top1"] == 0.0 and metrics["cls_err_top1"] == 0.0


# ---------------------------------------------------------------------------- multi-scale dense test


@pytest.fixture(scope="module")
def sharp_model():
    """A model whose best anchors differ across scales and whose candidates of different scales merge."""
    torch.manual_seed(0)
    m = build_model(tiny_cfg()).eval()
    with torch.no_grad():
        m.head.objectness_logits.weight.normal_(0, 0.3)
        m.head.anchor_deltas.weight.normal_(0, 0.03)
    m.merge_iou = 0.3  # a random net's candidates rarely overlap more
    return m


def candidates(m, image):
    """class_candidates of one image alone: boxes (K, T, 4) in its pixels, scores (K, T)."""
    batch = m.batch(m.normalize([{"image": image}]))
    boxes, scores = m.class_candidates(m.backbone(batch.tensor)[m.feature_name], batch.image_sizes_tensor())
    return boxes[0], scores[0]


def test_one_scale_is_the_merge_of_its_candidates(sharp_model):
    m = sharp_model
    image = torch.randint(0, 255, (3, 48, 80), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    x = {"image": image, "height": 90, "width": 150}
    out = m([x])[0]
    same = m([{**x, "extra_scales": []}])[0]
    assert all(torch.equal(out[k], same[k]) for k in out)
    boxes, scores = candidates(m, image)
    expected = to_original(merge_top_boxes(boxes, scores, m.merge_iou), x, (48, 80))
    assert torch.equal(out["boxes_per_class"], expected)
    assert torch.equal(out["box_scores"], scores[out["labels"], 0])


def test_several_scales_merge_the_pooled_candidates_and_average_the_classifier(sharp_model):
    m = sharp_model
    gen = torch.Generator().manual_seed(2)
    # image 0 and 1 share a batch at the first and the last scale but not at the middle one
    originals = [(90, 150), (88, 140)]
    scales = [[(48, 80), (64, 104), (96, 160)], [(46, 78), (64, 88), (94, 150)]]
    images = [[torch.randint(0, 255, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in s] for s in scales]
    out = m([{"image": ims[0], "extra_scales": ims[1:], "height": oh, "width": ow}
             for ims, (oh, ow) in zip(images, originals)])
    for i, (ims, (oh, ow)) in enumerate(zip(images, originals)):
        boxes, scores, probs = [], [], []
        for im in ims:  # every scale alone, its candidates in original pixels
            b, s = candidates(m, im)
            h, w = im.shape[-2:]
            boxes.append(b * torch.tensor([ow / w, oh / h, ow / w, oh / h]))
            scores.append(s)
            probs.append(m([{"image": im}])[0]["class_scores"])
        scores, order = torch.cat(scores, 1).sort(dim=1, descending=True, stable=True)  # (K, 3T)
        boxes = torch.cat(boxes, 1).gather(1, order[..., None].expand(-1, -1, 4))
        expected = merge_top_boxes(boxes, scores, m.merge_iou)
        expected[:, 0::2], expected[:, 1::2] = expected[:, 0::2].clamp(0, ow), expected[:, 1::2].clamp(0, oh)
        assert torch.allclose(out[i]["boxes_per_class"], expected, atol=1e-3)
        assert torch.allclose(out[i]["class_scores"], torch.stack(probs).mean(0), atol=1e-6)
        assert torch.allclose(out[i]["box_scores"], scores[out[i]["labels"], 0], atol=1e-6)
    with pytest.raises(ValueError, match="extra_scales"):
        m([{"image": images[0][0], "extra_scales": images[0][1:]}, {"image": images[1][0], "extra_scales": []}])
