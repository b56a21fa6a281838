"""Config -> modules. The modules themselves know nothing of the config."""
from __future__ import annotations

import torch
import torch.nn as nn

from .anchors import AnchorGenerator
from .backbone import build_c4_backbone
from .box_coder import BoxCoder
from .faster_rcnn import FasterRCNN
from .matcher import Matcher
from .pcr import build_pcr_localizer
from .pooler import ROIPooler
from .res5_head import BoxPredictor, Res5ROIHeads
from .rpn import RPN, RPNHead

TRUNK_STRIDE = 16  # conv1..conv4_x


def build_anchor_generator(cfg) -> AnchorGenerator:
    a = cfg.MODEL.ANCHOR_GENERATOR
    return AnchorGenerator(a.SIZES, a.ASPECT_RATIOS, TRUNK_STRIDE, a.OFFSET)


def build_rpn(cfg, in_channels: int) -> RPN:
    r = cfg.MODEL.RPN
    anchors = build_anchor_generator(cfg)
    return RPN(
        RPNHead(in_channels, anchors.num_anchors, r.HEAD_CHANNELS), anchors, BoxCoder(r.BBOX_REG_WEIGHTS),
        Matcher(r.IOU_THRESHOLDS, [0, -1, 1], allow_low_quality_matches=r.ALLOW_LOW_QUALITY_MATCHES),
        batch_size_per_image=r.BATCH_SIZE_PER_IMAGE, positive_fraction=r.POSITIVE_FRACTION,
        smooth_l1_beta=r.SMOOTH_L1_BETA, loss_weight=r.LOSS_WEIGHT, nms_thresh=r.NMS_THRESH,
        pre_nms_topk=(r.PRE_NMS_TOPK_TRAIN, r.PRE_NMS_TOPK_TEST),
        post_nms_topk=(r.POST_NMS_TOPK_TRAIN, r.POST_NMS_TOPK_TEST), min_size=r.MIN_SIZE,
        boundary_thresh=r.BOUNDARY_THRESH,
    )


def build_roi_heads(cfg, res5: nn.Sequential) -> Res5ROIHeads:
    h, b = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    last = res5[-1]
    out_channels = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
    if h.BG_IOU_LOW > 0:  # py-faster-rcnn: proposals below BG_IOU_LOW are neither fg nor bg
        matcher = Matcher([h.BG_IOU_LOW, h.IOU_THRESHOLD], [-1, 0, 1])
    else:
        matcher = Matcher([h.IOU_THRESHOLD], [0, 1])
    return Res5ROIHeads(
        ROIPooler(b.POOLER_RESOLUTION, 1.0 / TRUNK_STRIDE, b.POOLER_TYPE, b.POOLER_SAMPLING_RATIO), res5,
        BoxPredictor(out_channels, h.NUM_CLASSES, h.CLS_AGNOSTIC_BBOX_REG), BoxCoder(b.BBOX_REG_WEIGHTS), matcher,
        num_classes=h.NUM_CLASSES, batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
        positive_fraction=h.POSITIVE_FRACTION, proposal_append_gt=h.PROPOSAL_APPEND_GT,
        smooth_l1_beta=b.SMOOTH_L1_BETA, score_thresh=h.SCORE_THRESH_TEST, nms_thresh=h.NMS_THRESH_TEST,
        detections_per_image=h.DETECTIONS_PER_IMAGE,
    )


def build_faster_rcnn(cfg) -> FasterRCNN:
    trunk, res5 = build_c4_backbone(cfg)
    return FasterRCNN(trunk, build_rpn(cfg, trunk.out_channels), build_roi_heads(cfg, res5),
                      cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.MODEL.SIZE_DIVISIBILITY,
                      channels_last=cfg.MODEL.CHANNELS_LAST)


META_ARCHITECTURES = {"FasterRCNN": build_faster_rcnn, "PCRLocalizer": build_pcr_localizer}


def build_model(cfg) -> nn.Module:
    """The model named by ``MODEL.META_ARCHITECTURE``, on ``MODEL.DEVICE``, randomly initialised
    (load ``MODEL.WEIGHTS`` with ``detection.checkpoint.load_weights``)."""
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in META_ARCHITECTURES:
        raise ValueError(f"MODEL.META_ARCHITECTURE {name!r} is unknown; expected one of {sorted(META_ARCHITECTURES)}")
    if len(cfg.MODEL.PIXEL_MEAN) != 3 or len(cfg.MODEL.PIXEL_STD) != 3:
        raise ValueError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have 3 values each")
    model = META_ARCHITECTURES[name](cfg).to(cfg.MODEL.DEVICE)
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model
