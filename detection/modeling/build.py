"""Config -> modules: the only place under ``detection.modeling`` that reads the config. The modules
themselves take values in their constructors and know nothing of it."""
from __future__ import annotations

import torch
import torch.nn as nn

from detection.config import get_default_config
from detection.fastpath import prepare_for_inference

from .anchor_head import AnchorHead
from .anchors import AnchorGenerator
from .backbone import ResNet, Stage, build_resnet_stages, c4_split, init_weights
from .box_coder import BoxCoder
from .class_file import load_class_file
from .image_classifier import ImageClassifier
from .matcher import Matcher
from .meta_arch import FasterRCNN, MultiViewDetector, PCRLocalizer
from .pooler import ROIPooler
from .res5_head import BoxPredictor, Res5ROIHeads
from .rpn import RPN

# Keys the localizer read from MODEL.RPN before it had its own MODEL.PCR section (0.1).
_MOVED_TO_PCR = ("HEAD_CHANNELS", "BBOX_REG_WEIGHTS", "SMOOTH_L1_BETA", "LOSS_WEIGHT", "BOUNDARY_THRESH",
                 "ALLOW_LOW_QUALITY_MATCHES")


# ------------------------------------------------------------------------------------------ backbone
def resnet_kwargs(cfg) -> dict:
    r = cfg.MODEL.RESNETS
    return dict(depth=r.DEPTH, stage_blocks=r.STAGE_BLOCKS, block=r.BLOCK, norm=r.NORM, gn_groups=r.GN_GROUPS,
                shortcut=r.SHORTCUT, stride_in_1x1=r.STRIDE_IN_1X1, residual=r.RESIDUAL,
                stem_out_channels=r.STEM_OUT_CHANNELS, res2_out_channels=r.RES2_OUT_CHANNELS,
                width_per_group=r.WIDTH_PER_GROUP, res5_dilation=r.RES5_DILATION)


def build_resnet(cfg, num_stages: int = 4, num_classes: int | None = None, out_features=None) -> ResNet:
    """A whole ResNet (stem..res5, or fewer stages) from ``cfg.MODEL.RESNETS``, initialised and frozen."""
    stem, stages = build_resnet_stages(num_stages=num_stages, **resnet_kwargs(cfg))
    model = ResNet(stem, stages, out_features=out_features, num_classes=num_classes)
    init_weights(model, cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL)
    return model.freeze(cfg.MODEL.RESNETS.FREEZE_AT)


def build_c4_backbone(cfg) -> tuple[ResNet, Stage]:
    """(trunk, res5) of the C4 design from ``cfg.MODEL.RESNETS`` (see ``backbone.c4_split``)."""
    stem, stages = build_resnet_stages(num_stages=4, **resnet_kwargs(cfg))
    r = cfg.MODEL.RESNETS
    return c4_split(stem, stages, freeze_at=r.FREEZE_AT, zero_init_residual=r.ZERO_INIT_RESIDUAL)


# ------------------------------------------------------------------------------------------ detector
def build_anchor_generator(cfg, stride: int) -> AnchorGenerator:
    a = cfg.MODEL.ANCHOR_GENERATOR
    return AnchorGenerator(a.SIZES, a.ASPECT_RATIOS, stride, a.OFFSET)


def build_rpn(cfg, trunk: ResNet) -> RPN:
    r = cfg.MODEL.RPN
    anchors = build_anchor_generator(cfg, trunk.stride)
    return RPN(
        AnchorHead(trunk.out_channels, anchors.num_anchors, 1, r.HEAD_CHANNELS), anchors,
        BoxCoder(r.BBOX_REG_WEIGHTS),
        Matcher(r.IOU_THRESHOLDS, [0, -1, 1], allow_low_quality_matches=r.ALLOW_LOW_QUALITY_MATCHES),
        batch_size_per_image=r.BATCH_SIZE_PER_IMAGE, positive_fraction=r.POSITIVE_FRACTION,
        smooth_l1_beta=r.SMOOTH_L1_BETA, loss_weight=r.LOSS_WEIGHT, nms_thresh=r.NMS_THRESH,
        pre_nms_topk=(r.PRE_NMS_TOPK_TRAIN, r.PRE_NMS_TOPK_TEST),
        post_nms_topk=(r.POST_NMS_TOPK_TRAIN, r.POST_NMS_TOPK_TEST), min_size=r.MIN_SIZE,
        boundary_thresh=r.BOUNDARY_THRESH,
    )


def build_roi_heads(cfg, res5: Stage, feature_stride: int) -> Res5ROIHeads:
    h, b = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    if h.BG_IOU_LOW > 0:  # py-faster-rcnn: proposals below BG_IOU_LOW are neither fg nor bg
        matcher = Matcher([h.BG_IOU_LOW, h.IOU_THRESHOLD], [-1, 0, 1])
    else:
        matcher = Matcher([h.IOU_THRESHOLD], [0, 1])
    return Res5ROIHeads(
        ROIPooler(b.POOLER_RESOLUTION, 1.0 / feature_stride, b.POOLER_TYPE, b.POOLER_SAMPLING_RATIO), res5,
        BoxPredictor(res5.out_channels, h.NUM_CLASSES, h.CLS_AGNOSTIC_BBOX_REG), BoxCoder(b.BBOX_REG_WEIGHTS),
        matcher, num_classes=h.NUM_CLASSES, batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
        positive_fraction=h.POSITIVE_FRACTION, proposal_append_gt=h.PROPOSAL_APPEND_GT,
        smooth_l1_beta=b.SMOOTH_L1_BETA, score_thresh=h.SCORE_THRESH_TEST, nms_thresh=h.NMS_THRESH_TEST,
        detections_per_image=h.DETECTIONS_PER_IMAGE,
    )


def build_faster_rcnn(cfg) -> FasterRCNN:
    trunk, res5 = build_c4_backbone(cfg)
    return FasterRCNN(trunk, build_rpn(cfg, trunk), build_roi_heads(cfg, res5, trunk.stride),
                      cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, cfg.MODEL.SIZE_DIVISIBILITY,
                      channels_last=cfg.MODEL.CHANNELS_LAST)


# ------------------------------------------------------------------------------------------ localizer
def _check_moved_rpn_keys(cfg) -> None:
    """A localizer config that still sets the MODEL.RPN keys the localizer used to read would be
    silently ignored: stop and say where they went."""
    default = get_default_config().MODEL.RPN
    moved = [k for k in _MOVED_TO_PCR if cfg.MODEL.RPN[k] != default[k] and cfg.MODEL.PCR[k] == default[k]]
    if moved:
        raise ValueError(
            "MODEL.META_ARCHITECTURE PCRLocalizer reads its head settings from MODEL.PCR, not MODEL.RPN: move "
            + ", ".join(f"MODEL.RPN.{k} ({cfg.MODEL.RPN[k]!r}) to MODEL.PCR.{k}" for k in moved))


def build_pcr_localizer(cfg) -> PCRLocalizer:
    p = cfg.MODEL.PCR
    if p.CLASS_SOURCE not in ("classifier", "file"):
        raise ValueError(f"MODEL.PCR.CLASS_SOURCE must be classifier or file; got {p.CLASS_SOURCE!r}")
    if p.CLASS_SOURCE == "file" and not p.CLASS_FILE:
        raise ValueError("MODEL.PCR.CLASS_SOURCE is file but MODEL.PCR.CLASS_FILE is empty")
    _check_moved_rpn_keys(cfg)
    trunk, res5 = build_c4_backbone(cfg)
    anchors = build_anchor_generator(cfg, trunk.stride)
    k = p.NUM_CLASSES
    return PCRLocalizer(
        trunk, AnchorHead(trunk.out_channels, anchors.num_anchors, k, p.HEAD_CHANNELS),
        ImageClassifier(res5, res5.out_channels, k, stride=trunk.stride * res5.stride), anchors,
        BoxCoder(p.BBOX_REG_WEIGHTS),
        Matcher(p.IOU_THRESHOLDS, [0, -1, 1], allow_low_quality_matches=p.ALLOW_LOW_QUALITY_MATCHES),
        cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
        anchors_per_image=p.ANCHORS_PER_IMAGE, positive_fraction=p.POSITIVE_FRACTION,
        smooth_l1_beta=p.SMOOTH_L1_BETA, loss_weight=p.LOSS_WEIGHT, cls_loss_weight=p.CLS_LOSS_WEIGHT,
        topk_merge=p.TOPK_MERGE, merge_iou=p.MERGE_IOU, boundary_thresh=p.BOUNDARY_THRESH,
        class_file=load_class_file(p.CLASS_FILE) if p.CLASS_SOURCE == "file" else None,
        size_divisibility=cfg.MODEL.SIZE_DIVISIBILITY, topk_output=p.TOPK_OUTPUT,
        channels_last=cfg.MODEL.CHANNELS_LAST,
    )


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


def build_test_model(cfg, model: nn.Module) -> nn.Module:
    """``model`` as inference runs it (the evaluator, the Predictor, the tools): with the fast paths
    of TEST.FOLD_BN, TEST.INT8, TEST.PRECISION and MODEL.COMPILE (``prepare_for_inference``: a copy
    when one applies, so a model in training is left as it is), wrapped in a ``MultiViewDetector``
    when TEST.AUG or TEST.TILE ask for several views of each image (the test mapper then makes them).
    Load weights into ``model`` before calling this."""
    model = getattr(model, "module", model)  # (a DistributedDataParallel's module)
    t = cfg.TEST
    model = prepare_for_inference(model, fold_bn=t.FOLD_BN, compile=cfg.MODEL.COMPILE, precision=t.PRECISION,
                                  int8=t.INT8)
    aug, tile = t.AUG, t.TILE
    if not aug.ENABLED and tile.SIZE <= 0:
        return model
    if model.task != "detection":
        raise ValueError("TEST.AUG and TEST.TILE are for the detector; the localizer tests several sizes with "
                         "INPUT.LOC_TEST_MODE dense and INPUT.LOC_TEST_SIZES")
    h = cfg.MODEL.ROI_HEADS
    return MultiViewDetector(model, nms_thresh=h.NMS_THRESH_TEST, merge=aug.MERGE,
                             detections_per_image=h.DETECTIONS_PER_IMAGE, views_per_batch=cfg.TEST.IMS_PER_BATCH)
