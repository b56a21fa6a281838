"""A C4 Faster R-CNN assembled from torchvision's generic detection classes
(``torchvision.models.detection.FasterRCNN``) around our trunk and res5 head: the reference that
tools/benchmark.py times ours against, with the same weights, image size and proposal counts."""
from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from detection.modeling import build_c4_backbone


class TorchvisionC4(nn.Module):
    """torchvision.models.detection.FasterRCNN with our trunk as backbone and res5 as box head,
    adapted to our input/output dicts. The box pooler must be torchvision's MultiScaleRoIAlign."""

    def __init__(self, cfg):
        super().__init__()
        trunk, res5 = build_c4_backbone(cfg)

        class Backbone(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = trunk
                self.out_channels = trunk.out_channels

            def forward(self, x):
                return {"0": self.body(x)["res4"]}

        class Res5Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.res5 = res5

            def forward(self, x):
                return self.res5(x).mean(dim=(2, 3))

        r, h, a = cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS, cfg.MODEL.ANCHOR_GENERATOR
        anchors = AnchorGenerator(sizes=(tuple(a.SIZES),), aspect_ratios=(tuple(a.ASPECT_RATIOS),))
        res_channels = res5[-1].conv3.out_channels if hasattr(res5[-1], "conv3") else res5[-1].conv2.out_channels
        mean = [m / 255.0 for m in cfg.MODEL.PIXEL_MEAN]
        std = [s / 255.0 for s in cfg.MODEL.PIXEL_STD]
        self.model = FasterRCNN(
            Backbone(), num_classes=None, min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST,
            image_mean=mean, image_std=std, rpn_anchor_generator=anchors,
            rpn_pre_nms_top_n_train=r.PRE_NMS_TOPK_TRAIN, rpn_pre_nms_top_n_test=r.PRE_NMS_TOPK_TEST,
            rpn_post_nms_top_n_train=r.POST_NMS_TOPK_TRAIN, rpn_post_nms_top_n_test=r.POST_NMS_TOPK_TEST,
            rpn_nms_thresh=r.NMS_THRESH, rpn_batch_size_per_image=r.BATCH_SIZE_PER_IMAGE,
            box_roi_pool=MultiScaleRoIAlign(["0"], cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION, sampling_ratio=0),
            box_head=Res5Head(), box_predictor=FastRCNNPredictor(res_channels, h.NUM_CLASSES + 1),
            box_score_thresh=h.SCORE_THRESH_TEST, box_nms_thresh=h.NMS_THRESH_TEST,
            box_detections_per_img=h.DETECTIONS_PER_IMAGE, box_batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
            box_positive_fraction=h.POSITIVE_FRACTION,
        )

    def forward(self, batch):
        images = [x["image"].to(self.model.roi_heads.box_predictor.cls_score.weight.device).float() / 255.0
                  for x in batch]
        if self.training:
            targets = [{"boxes": x["boxes"].to(images[0].device), "labels": x["labels"].to(images[0].device) + 1}
                       for x in batch]
            return self.model(images, targets)
        return self.model(images)

    @torch.no_grad()
    def copy_weights(self, ours) -> "TorchvisionC4":
        """Our detector's weights in this assembly (background first, with box deltas of its own)."""
        tv = self.model
        tv.backbone.body.load_state_dict(ours.backbone.state_dict())
        tv.roi_heads.box_head.res5.load_state_dict(ours.roi_heads.res5.state_dict())
        for mine, theirs in ((ours.rpn.head.conv, tv.rpn.head.conv[0][0]),
                             (ours.rpn.head.objectness_logits, tv.rpn.head.cls_logits),
                             (ours.rpn.head.anchor_deltas, tv.rpn.head.bbox_pred)):
            theirs.load_state_dict(mine.state_dict())
        mine, theirs = ours.roi_heads.box_predictor, tv.roi_heads.box_predictor
        theirs.cls_score.weight.copy_(torch.cat([mine.cls_score.weight[-1:], mine.cls_score.weight[:-1]]))
        theirs.cls_score.bias.copy_(torch.cat([mine.cls_score.bias[-1:], mine.cls_score.bias[:-1]]))
        theirs.bbox_pred.weight.zero_()
        theirs.bbox_pred.bias.zero_()
        theirs.bbox_pred.weight[4:].copy_(mine.bbox_pred.weight)
        theirs.bbox_pred.bias[4:].copy_(mine.bbox_pred.bias)
        return self
