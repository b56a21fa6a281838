"""ImageNet-style localization with a per-class RPN (per-class regression, PCR), the ResNet paper's
appendix C: one box per class per image, plus an image-level classifier that ranks the classes.

Trunk (conv1..conv4_x, stride 16) -> an ``AnchorHead`` with K classes (per-class objectness and box
regression on the shared anchors) and an ``ImageClassifier`` (res5 on the whole map). Training
samples ``anchors_per_image`` anchors (8 in the paper, 1:1) with ``label_anchors``; the anchor
losses train only the channels of the image's ground-truth classes. Testing merges each class's
top anchors by box voting, over every test scale. The reasons behind these choices are in
docs/localization.md.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.structures import ImageList

from ..anchor_head import AnchorHead
from ..anchor_labeling import label_anchors
from ..anchors import AnchorGenerator
from ..box_coder import BoxCoder
from ..box_ops import anchors_inside, to_original
from ..class_merge import merge_top_boxes
from ..image_classifier import ImageClassifier
from ..losses import box_regression_loss
from ..matcher import Matcher
from .base import ImageModel


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

    task = "localization"
    # tensor -> tensor submodules that fast paths may compile or replace (detection.fastpath)
    dense_parts = ("backbone", "head", "classifier.res5")
    int8_parts = ("backbone", "classifier.res5")

    def __init__(self, backbone: nn.Module, head: AnchorHead, classifier: ImageClassifier,
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
        labels, matched, targets = label_anchors(
            anchors, gt_boxes, sizes, self.matcher, self.box_coder, num_samples=self.anchors_per_image,
            positive_fraction=self.positive_fraction, boundary_thresh=self.boundary_thresh,
            sample_without_gt=False)  # a crop that lost every box has no class to train a channel of
        classes = torch.stack([cls[m] if len(cls) else torch.zeros_like(m) for cls, m in zip(gt_labels, matched)])
        return labels, classes, targets

    def losses(self, images: ImageList, batched_inputs: list[dict]) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)[self.feature_name]
        gt_boxes, gt_labels = self.targets(batched_inputs)
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
        logits, deltas = self.head(features)  # (B, N, K), (B, N, K, 4)
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
        merged = merge_top_boxes(boxes, scores, self.merge_iou)
        boxes = torch.stack([to_original(m, x, size) for m, x, size in zip(merged, inputs, images.image_sizes)])
        probs = probs / (1 + n_extra) if classify else self.file_scores(inputs)
        kk = min(self.topk_output, self.num_classes)
        top_probs, top_labels = probs.topk(kk, dim=1)
        top_boxes = boxes.gather(1, top_labels[..., None].expand(-1, -1, 4))
        top_box_scores = box_scores.gather(1, top_labels)
        return [{"boxes_per_class": boxes[i], "class_scores": probs[i], "topk_labels": top_labels[i],
                 "boxes": top_boxes[i], "scores": top_probs[i], "labels": top_labels[i],
                 "box_scores": top_box_scores[i]} for i in range(len(inputs))]

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
