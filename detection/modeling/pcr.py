"""ImageNet-style localization with a per-class RPN (per-class regression, PCR), the ResNet paper's
appendix C: one box per class per image, plus an image-level classifier that ranks the classes.

Trunk (conv1..conv4_x, stride 16) -> two heads on the res4 map:

* ``PCRHead``: 3x3 conv + ReLU, then a 1x1 conv with K logits per anchor (each a binary logistic:
  "this anchor is / is not an object of class k") and a 1x1 conv with 4K deltas per anchor (one
  box regressor per class), on the shared translation-invariant anchors;
* ``ImageClassifier``: res5 on the whole res4 map, global average pooling over the image (padding
  excluded), a linear K-way softmax. Class predictions can come from a json file instead.

Training (per image): anchors are matched to the ground-truth boxes (IoU >= 0.7 or a box's best
anchor: positive for the matched box's class; IoU < 0.3 with every box: negative), then
``anchors_per_image`` (8) are sampled, up to half positive (``sample_balanced``: with fewer than 4
positives, negatives fill up to 8; with fewer negatives than needed, fewer are sampled). Losses:

* ``loss_pcr_cls``: binary cross-entropy on the sampled anchors, **only on the channels of the
  image's ground-truth classes**: a positive trains its matched class's channel towards 1, a
  negative trains each of the image's classes' channels towards 0; the other K-1 channels get
  nothing. Channel k is the objectness of class k, only ever asked about images of class k (which
  class the image shows is the classifier's job). Training all K channels would give each anchor
  K-1 easy negatives for 1 positive (999:1 on ImageNet), the imbalance the 1:1 sampling is there
  to avoid, and would turn the K channels into a second, competing classifier.
* ``loss_pcr_loc``: L1/smooth-L1 (``losses.box_regression_loss``) on positives, through the
  matched class's 4 regression outputs only (the other classes' regressors get zero gradient).
* ``loss_cls``: the classifier's cross-entropy, times ``cls_loss_weight``.

The first two are sums divided by ``anchors_per_image * batch size`` (as the RPN's), the last a
mean over the images that kept a labelled box after cropping.

Testing, for every class c: the ``topk_merge`` highest-scoring anchors of channel c (anchors centred
in the image, not in the batch padding) are decoded with class c's regressor; the box is box
voting around the top one: the score-weighted mean of the top box and of those among the top k with
IoU >= ``merge_iou`` with it (the boxes NMS at that threshold would suppress in favour of the top
box). Everything is batched over images, anchors and classes. The dense test at several scales
(INPUT.LOC_TEST_SIZES, the mapper's ``extra_scales``) runs this at every scale, pools each class's
candidates of all scales, sorts them by score and merges once; the class probabilities are the mean
of the scales' softmax.
"""
from __future__ import annotations

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_iou

from detection.structures import ImageList

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .losses import box_regression_loss
from .matcher import Matcher
from .meta_arch import ImageModel
from .rpn import anchors_inside, clip_boxes
from .sampler import sample_balanced

__all__ = ["PCRHead", "ImageClassifier", "PCRLocalizer", "build_pcr_localizer", "merge_top_boxes",
           "load_class_file"]


class PCRHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs: K class logits and 4K deltas per anchor.

    Channel layout: logits ``a * K + k``, deltas ``(a * K + k) * 4 + j`` (anchor a, class k,
    coordinate j), i.e. anchor-major as the RPN's, then class, then (dx, dy, dw, dh).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, head_channels: int = 0):
        super().__init__()
        head_channels = head_channels or in_channels
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.conv = nn.Conv2d(in_channels, head_channels, 3, padding=1)
        self.class_logits = nn.Conv2d(head_channels, num_anchors * num_classes, 1)
        self.class_deltas = nn.Conv2d(head_channels, num_anchors * num_classes * 4, 1)
        for layer in (self.conv, self.class_logits, self.class_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) trunk map -> (B, C', H, W) after the 3x3 conv and ReLU."""
        return F.relu(self.conv(x))

    def dense(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C', H, W) -> logits (B, H*W*A, K), deltas (B, H*W*A, K, 4), in the anchor generator's
        order (row-major cells, then the anchors of a cell)."""
        b, _, h, w = t.shape
        a, k = self.num_anchors, self.num_classes
        logits = self.class_logits(t).view(b, a, k, h, w).permute(0, 3, 4, 1, 2).reshape(b, h * w * a, k)
        deltas = self.class_deltas(t).view(b, a, k, 4, h, w).permute(0, 4, 5, 1, 2, 3).reshape(b, h * w * a, k, 4)
        return logits, deltas

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dense(self.features(x))

    def _at(self, t: torch.Tensor, image_idx: torch.Tensor, anchor_idx: torch.Tensor):
        """Features (P, C') under anchors ``anchor_idx`` (indices into H*W*A) of images ``image_idx``,
        and each anchor's index within its cell."""
        a = self.num_anchors
        return t.flatten(2)[image_idx, :, anchor_idx // a], anchor_idx % a

    def logits_at(self, t, image_idx, anchor_idx, class_idx) -> torch.Tensor:
        """(P,) logits of class ``class_idx[p]`` at anchor ``anchor_idx[p]`` of image ``image_idx[p]``:
        the 1x1 conv evaluated only where the loss needs it (8 anchors x 1 class per image instead of
        every anchor x K classes, which for K = 1000 would cost as much as the trunk)."""
        f, a = self._at(t, image_idx, anchor_idx)
        w = self.class_logits.weight.view(self.num_anchors, self.num_classes, -1)[a, class_idx]
        b = self.class_logits.bias.view(self.num_anchors, self.num_classes)[a, class_idx]
        return (f * w).sum(1) + b

    def deltas_at(self, t, image_idx, anchor_idx, class_idx) -> torch.Tensor:
        """(P, 4) deltas of class ``class_idx[p]``'s regressor at the given anchors (see ``logits_at``)."""
        f, a = self._at(t, image_idx, anchor_idx)
        w = self.class_deltas.weight.view(self.num_anchors, self.num_classes, 4, -1)[a, class_idx]
        b = self.class_deltas.bias.view(self.num_anchors, self.num_classes, 4)[a, class_idx]
        return torch.einsum("pc,pjc->pj", f, w) + b


class ImageClassifier(nn.Module):
    """res5 on the whole stride-16 map, masked global average pooling, linear -> (B, K) logits."""

    def __init__(self, res5: nn.Sequential, out_channels: int, num_classes: int, stride: int = 32):
        super().__init__()
        self.res5 = res5
        self.stride = stride  # of res5's output in input pixels
        self.linear = nn.Linear(out_channels, num_classes)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
        """features (B, C4, H, W); image_sizes (B, 2) of (h, w) in input pixels -> logits (B, K).

        Only res5 cells that see the image (not only batch padding) are averaged, so a padded image
        gets (nearly) the same prediction as alone."""
        x = self.res5(features)
        hh, ww = x.shape[-2:]
        valid_h = (-(-image_sizes[:, 0] // self.stride)).clamp(1, hh)
        valid_w = (-(-image_sizes[:, 1] // self.stride)).clamp(1, ww)
        ys = torch.arange(hh, device=x.device)
        xs = torch.arange(ww, device=x.device)
        mask = (ys[None, :, None] < valid_h[:, None, None]) & (xs[None, None, :] < valid_w[:, None, None])
        mask = mask[:, None].to(x.dtype)
        pooled = (x * mask).sum((2, 3)) / mask.sum((2, 3))
        return self.linear(pooled)


def load_class_file(path: str) -> dict[int, list[int]]:
    """Read ``{image_id: [class indices, best first]}`` (json keys are strings)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"MODEL.PCR.CLASS_FILE {path}: expected a json object {{image_id: [classes]}}")
    return {int(k): [int(c) for c in v] for k, v in data.items()}


def merge_top_boxes(boxes: torch.Tensor, scores: torch.Tensor, merge_iou: float) -> torch.Tensor:
    """Box voting around the top box.

    boxes (..., T, 4), scores (..., T) sorted best first -> (..., 4): the mean of box 0 and of the
    boxes with IoU >= ``merge_iou`` with it, weighted by their scores (all weights equal when the
    scores are all zero). T = 1 returns box 0.
    """
    top = boxes[..., :1, :]
    lt = torch.maximum(top[..., :2], boxes[..., :2])
    rb = torch.minimum(top[..., 2:], boxes[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    iou = inter / (area[..., :1] + area - inter).clamp(min=1e-12)
    member = iou >= merge_iou
    member[..., 0] = True
    w = scores.clamp(min=0) * member
    w = torch.where(w.sum(-1, keepdim=True) > 0, w, member.to(w.dtype))
    return (boxes * w[..., None]).sum(-2) / w.sum(-1, keepdim=True)


class PCRLocalizer(ImageModel):
    """Inputs: a list of dicts per image (the localization mapper's output):

    - ``image``: (3, h, w) tensor, 0..255, INPUT.FORMAT channel order (a crop, or the whole image);
    - ``height``, ``width`` (optional): the original image size;
    - 1-crop test only (optional): ``crop_origin`` (x0, y0) of the crop in the resized image and
      ``resized_size`` (h, w) of that resized image (without them the input is taken to be the
      whole resized image);
    - multi-scale dense test only (optional): ``extra_scales``, a list of (3, h, w) tensors, the
      whole image at further sizes (the same number for every image of a batch);
    - ``image_id``: needed with a class file;
    - training only: ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) in 0..K-1.

    Training returns ``{"loss_pcr_cls", "loss_pcr_loc", "loss_cls"}``. Evaluation returns per image

    - ``"boxes_per_class"``: (K, 4) xyxy in ORIGINAL image pixels, row c = class c's box;
    - ``"class_scores"``: (K,) image-level class probabilities (from a class file: 1 - r / n for
      the class ranked r of n listed, 0 for the others);
    - ``"topk_labels"``: (k,) the top k = min(5, K) classes, best first;
    - ``"boxes"`` (k, 4), ``"scores"`` (k,), ``"labels"`` (k,): the top k classes' boxes, their
      class probabilities and the classes (what the Predictor/demo draw);
    - ``"box_scores"``: (k,) the PCR objectness (sigmoid) of the top anchor (of all scales) of each of them.

    ``LocalizationEvaluator`` reads ``topk_labels`` (ranking) and ``boxes_per_class``.
    """

    def __init__(self, backbone: nn.Module, head: PCRHead, classifier: ImageClassifier,
                 anchor_generator: AnchorGenerator, box_coder: BoxCoder, matcher: Matcher, pixel_mean, pixel_std, *,
                 anchors_per_image: int = 8, positive_fraction: float = 0.5, smooth_l1_beta: float = 0.0,
                 loss_weight: float = 1.0, cls_loss_weight: float = 1.0, topk_merge: int = 5,
                 merge_iou: float = 0.5, boundary_thresh: float = -1.0, class_file: dict[int, list[int]] | None = None,
                 size_divisibility: int = 16, feature_name: str = "res4", topk_output: int = 5,
                 channels_last: bool = False):
        super().__init__(pixel_mean, pixel_std, size_divisibility, channels_last)
        self.backbone = backbone
        self.head = head
        self.classifier = classifier
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.matcher = matcher
        self.anchors_per_image = anchors_per_image
        self.positive_fraction = positive_fraction
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weight = loss_weight
        self.cls_loss_weight = cls_loss_weight
        self.topk_merge = max(1, topk_merge)
        self.merge_iou = merge_iou
        self.boundary_thresh = boundary_thresh
        self.class_file = class_file
        self.feature_name = feature_name
        self.topk_output = topk_output

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    # ------------------------------------------------------------------------------------ training
    def label_anchors(self, anchors: torch.Tensor, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor],
                      sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled anchor labels (B, N) (1 positive, 0 negative, -1 not sampled), the matched gt
        class (B, N) and the regression targets (B, N, 4) (meaningful where positive)."""
        inside = anchors_inside(anchors, sizes, self.boundary_thresh)
        labels, classes, targets = [], [], []
        for gt, gt_cls, usable in zip(gt_boxes, gt_labels, inside):  # gt counts differ per image
            matched, lab = self.matcher(box_iou(gt, anchors))
            lab = lab.long()
            lab[~usable] = -1
            if len(gt) == 0:  # the crop lost every box: no class to train a channel of
                lab.fill_(-1)
            pos, neg = sample_balanced(lab, self.anchors_per_image, self.positive_fraction, bg_label=0)
            sampled = torch.full_like(lab, -1)
            sampled[pos], sampled[neg] = 1, 0
            labels.append(sampled)
            if len(gt):
                classes.append(gt_cls[matched])
                targets.append(self.box_coder.encode(anchors, gt[matched]))
            else:
                classes.append(torch.zeros_like(lab))
                targets.append(torch.zeros_like(anchors))
        return torch.stack(labels), torch.stack(classes), torch.stack(targets)

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)[self.feature_name]
        gt_boxes = [x["boxes"].to(self.device).float().reshape(-1, 4) for x in batched_inputs]
        gt_labels = [x["labels"].to(self.device).long().reshape(-1) for x in batched_inputs]
        sizes = images.image_sizes_tensor()
        t = self.head.features(features)
        anchors = self.anchor_generator(tuple(features.shape[-2:]))
        labels, classes, targets = self.label_anchors(anchors, gt_boxes, gt_labels, sizes)
        b, k = len(batched_inputs), self.num_classes

        # Which channels each image trains: its ground-truth classes (B, K).
        image_classes = torch.zeros(b, k, dtype=torch.bool, device=self.device)
        for i, lab in enumerate(gt_labels):
            image_classes[i, lab] = True
        # (image, anchor, class, target) pairs: a positive trains its matched class's channel
        # towards 1, a negative each of the image's classes' channels towards 0.
        img_s, anc_s = torch.nonzero(labels >= 0, as_tuple=True)
        is_pos = labels[img_s, anc_s] == 1
        neg_j, neg_k = torch.nonzero(image_classes[img_s[~is_pos]], as_tuple=True)
        pair_img = torch.cat((img_s[is_pos], img_s[~is_pos][neg_j]))
        pair_anc = torch.cat((anc_s[is_pos], anc_s[~is_pos][neg_j]))
        pair_cls = torch.cat((classes[img_s[is_pos], anc_s[is_pos]], neg_k))
        target = torch.cat((torch.ones(int(is_pos.sum()), device=self.device),
                            torch.zeros(len(neg_k), device=self.device)))
        logits = self.head.logits_at(t, pair_img, pair_anc, pair_cls)
        loss_cls = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum")
        # regression: only the matched class's regressor of each positive
        pos_img, pos_anc = img_s[is_pos], anc_s[is_pos]
        deltas = self.head.deltas_at(t, pos_img, pos_anc, classes[pos_img, pos_anc])
        loss_loc = box_regression_loss(deltas.float(), targets[pos_img, pos_anc], self.smooth_l1_beta)
        normalizer = self.anchors_per_image * b

        # image-level classifier: soft cross-entropy over the image's classes (one on ImageNet)
        has_label = image_classes.any(1)
        target = image_classes.float() / image_classes.sum(1, keepdim=True).clamp(min=1)
        cls_logits = self.classifier(features, sizes)
        ce = -(target * F.log_softmax(cls_logits, dim=1)).sum(1)
        loss_img = (ce * has_label).sum() / has_label.sum().clamp(min=1)
        return {"loss_pcr_cls": loss_cls * self.loss_weight / normalizer,
                "loss_pcr_loc": loss_loc * self.loss_weight / normalizer,
                "loss_cls": loss_img * self.cls_loss_weight}

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def class_candidates(self, features: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each class, its ``topk_merge`` best anchors decoded by its regressor: boxes (B, K, T, 4)
        xyxy in input pixels (not clipped) and their objectness (B, K, T), best first."""
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(tuple(features.shape[-2:]))
        b, n, k = logits.shape
        inside = anchors_inside(anchors, sizes, -1.0)  # centred in the image, not in the padding
        scores = torch.sigmoid(logits.float()).masked_fill(~inside[..., None], -1.0)
        t = min(self.topk_merge, n)
        top_scores, top_idx = scores.topk(t, dim=1)  # (B, T, K), sorted
        picked = deltas.gather(1, top_idx[..., None].expand(-1, -1, -1, 4))  # (B, T, K, 4)
        boxes = self.box_coder.decode(picked.reshape(-1, 4), anchors[top_idx.reshape(-1)]).view(b, t, k, 4)
        return boxes.transpose(1, 2), top_scores.transpose(1, 2)

    def scale_outputs(self, images: ImageList, classify: bool):
        """One scale: ``class_candidates`` and the classifier's probabilities (B, K) (None unless ``classify``)."""
        features = self.backbone(images.tensor)[self.feature_name]
        sizes = images.image_sizes_tensor()
        boxes, scores = self.class_candidates(features, sizes)
        probs = F.softmax(self.classifier(features, sizes).float(), dim=1) if classify else None
        return boxes, scores, probs

    def extra_scale_outputs(self, inputs: list[dict], s: int, classify: bool):
        """``scale_outputs`` of every input's ``extra_scales[s]``, plus their sizes (B, 2) as (h, w).

        These images need not pad to the same size: one forward per group that does (as in
        ``ImageModel.forward``). A group with fewer than ``topk_merge`` anchors fills its missing
        candidates with score -inf (weight 0 in the merge)."""
        images = self.normalize([{"image": x["extra_scales"][s]} for x in inputs])
        n, k = len(images), self.num_classes
        boxes = torch.zeros(n, k, self.topk_merge, 4, device=self.device)
        scores = torch.full((n, k, self.topk_merge), -math.inf, device=self.device)
        probs = torch.zeros(n, k, device=self.device) if classify else None
        for idx in self.same_size_groups(images):
            b, sc, p = self.scale_outputs(self.batch([images[i] for i in idx]), classify)
            idx = torch.tensor(idx, device=self.device)
            boxes[idx, :, :b.shape[2]], scores[idx, :, :sc.shape[2]] = b, sc
            if classify:
                probs[idx] = p
        sizes = torch.tensor([im.shape[-2:] for im in images], device=self.device)
        return boxes, scores, probs, sizes

    @staticmethod
    def num_extra_scales(inputs: list[dict]) -> int:
        """How many ``extra_scales`` the inputs have (the same for all, whole images only)."""
        counts = {len(x.get("extra_scales", ())) for x in inputs}
        if len(counts) > 1:
            raise ValueError(f"the images of a batch have different numbers of extra_scales: {sorted(counts)}")
        n = counts.pop()
        if n and any("crop_origin" in x for x in inputs):
            raise ValueError("extra_scales are whole images (dense test), not for a 1-crop input")
        return n

    @torch.no_grad()
    def inference(self, images: ImageList, inputs: list[dict]) -> list[dict]:
        classify = self.class_file is None
        boxes, scores, probs = self.scale_outputs(images, classify)
        n_extra = self.num_extra_scales(inputs)
        sizes = images.image_sizes_tensor()
        for s in range(n_extra):
            b, sc, p, extra_sizes = self.extra_scale_outputs(inputs, s, classify)
            # Pool in the first scale's input pixels (the frame to_original maps from). They are the
            # original pixels scaled per axis, which changes neither IoUs nor weighted means: merging
            # here is merging in original pixels.
            to_first = (sizes / extra_sizes).flip(1).repeat(1, 2)  # (w0/ws, h0/hs, w0/ws, h0/hs)
            boxes = torch.cat((boxes, b * to_first[:, None, None]), 2)
            scores = torch.cat((scores, sc), 2)
            if classify:
                probs = probs + p
        if n_extra:  # (a single scale's candidates are sorted already)
            scores, order = scores.sort(dim=2, descending=True, stable=True)
            boxes = boxes.gather(2, order[..., None].expand(-1, -1, -1, 4))
        box_scores = scores[..., 0]
        boxes = self.to_original(merge_top_boxes(boxes, scores, self.merge_iou), inputs, images.image_sizes)
        probs = probs / (1 + n_extra) if classify else self.file_scores(inputs)
        kk = min(self.topk_output, self.num_classes)
        top_probs, top_labels = probs.topk(kk, dim=1)
        top_boxes = boxes.gather(1, top_labels[..., None].expand(-1, -1, 4))
        top_box_scores = box_scores.gather(1, top_labels)
        return [{"boxes_per_class": boxes[i], "class_scores": probs[i], "topk_labels": top_labels[i],
                 "boxes": top_boxes[i], "scores": top_probs[i], "labels": top_labels[i],
                 "box_scores": top_box_scores[i]} for i in range(len(inputs))]

    def to_original(self, boxes: torch.Tensor, inputs: list[dict], image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """(B, K, 4) boxes in input pixels -> original image pixels, clipped to the original image.

        A 1-crop input is shifted by ``crop_origin`` into the resized image first; boxes may reach
        past the crop (the regressors see the object's visible part and extrapolate)."""
        offsets, scales, out_sizes = [], [], []
        for x, (h, w) in zip(inputs, image_sizes):
            x0, y0 = x.get("crop_origin", (0, 0))
            rh, rw = x.get("resized_size", (h, w)) if "crop_origin" in x else (h, w)
            oh, ow = x.get("height", rh), x.get("width", rw)
            offsets.append([x0, y0, x0, y0])
            scales.append([ow / rw, oh / rh, ow / rw, oh / rh])
            out_sizes.append([oh, ow])
        offsets = boxes.new_tensor(offsets)[:, None]
        scales = boxes.new_tensor(scales)[:, None]
        return clip_boxes((boxes + offsets) * scales, boxes.new_tensor(out_sizes)[:, None])

    def file_scores(self, inputs: list[dict]) -> torch.Tensor:
        """(B, K) pseudo-probabilities from the class file: 1 - r / n for rank r of n, else 0."""
        out = torch.zeros(len(inputs), self.num_classes, device=self.device)
        for i, x in enumerate(inputs):
            if "image_id" not in x or int(x["image_id"]) not in self.class_file:
                raise KeyError(f"image {x.get('image_id')!r} is not in MODEL.PCR.CLASS_FILE")
            ranked = self.class_file[int(x["image_id"])]
            if ranked:
                out[i, torch.tensor(ranked, device=self.device)] = 1.0 - torch.arange(
                    len(ranked), device=self.device, dtype=torch.float32) / len(ranked)
        return out


def build_pcr_localizer(cfg) -> PCRLocalizer:
    from .backbone import build_c4_backbone
    from .build import TRUNK_STRIDE, build_anchor_generator

    p, r = cfg.MODEL.PCR, cfg.MODEL.RPN
    if p.CLASS_SOURCE not in ("classifier", "file"):
        raise ValueError(f"MODEL.PCR.CLASS_SOURCE must be classifier or file; got {p.CLASS_SOURCE!r}")
    if p.CLASS_SOURCE == "file" and not p.CLASS_FILE:
        raise ValueError("MODEL.PCR.CLASS_SOURCE is file but MODEL.PCR.CLASS_FILE is empty")
    trunk, res5 = build_c4_backbone(cfg)
    last = res5[-1]
    res5_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
    res5_stride = TRUNK_STRIDE * (2 if cfg.MODEL.RESNETS.RES5_DILATION == 1 else 1)
    anchors = build_anchor_generator(cfg)
    k = p.NUM_CLASSES
    return PCRLocalizer(
        trunk, PCRHead(trunk.out_channels, anchors.num_anchors, k, r.HEAD_CHANNELS),
        ImageClassifier(res5, res5_channels, k, stride=res5_stride), anchors, BoxCoder(r.BBOX_REG_WEIGHTS),
        Matcher(p.IOU_THRESHOLDS, [0, -1, 1], allow_low_quality_matches=r.ALLOW_LOW_QUALITY_MATCHES),
        cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
        anchors_per_image=p.ANCHORS_PER_IMAGE, positive_fraction=p.POSITIVE_FRACTION,
        smooth_l1_beta=r.SMOOTH_L1_BETA, loss_weight=r.LOSS_WEIGHT, cls_loss_weight=p.CLS_LOSS_WEIGHT,
        topk_merge=p.TOPK_MERGE, boundary_thresh=r.BOUNDARY_THRESH,
        class_file=load_class_file(p.CLASS_FILE) if p.CLASS_SOURCE == "file" else None,
        size_divisibility=cfg.MODEL.SIZE_DIVISIBILITY, channels_last=cfg.MODEL.CHANNELS_LAST,
    )
