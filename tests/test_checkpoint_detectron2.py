"""Detectron2 checkpoints (.pkl of numpy / .pth of tensors) and our own checkpoints into the C4 detector."""
import ast
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from detection.checkpoint import (WeightLoadError, convert_checkpoint, load_weights, match_checkpoint,
                                  read_checkpoint)
from detection.config import load_config
from detection.modeling import build_c4_backbone, build_resnet

# A slim bottleneck ResNet (R-50's names and layout, 2 blocks a stage, 1/8 width): fast, and every name kind.
SMALL = ["MODEL.RESNETS.STAGE_BLOCKS", "[2, 2, 2, 2]", "MODEL.RESNETS.BLOCK", "bottleneck",
         "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
         "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"]


class StandInDetector(nn.Module):
    """The detector's parameter names (used when ``detection.modeling.build_model`` is not there)."""

    def __init__(self, cfg):
        super().__init__()
        self.backbone, res5 = build_c4_backbone(cfg)
        c4 = self.backbone.out_channels
        c5 = res5[-1].conv2.out_channels if not hasattr(res5[-1], "conv3") else res5[-1].conv3.out_channels
        a, k = len(cfg.MODEL.ANCHOR_GENERATOR.SIZES) * len(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS), cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.rpn = nn.Module()
        self.rpn.head = nn.Module()
        self.rpn.head.conv = nn.Conv2d(c4, c4, 3, padding=1)
        self.rpn.head.objectness_logits = nn.Conv2d(c4, a, 1)
        self.rpn.head.anchor_deltas = nn.Conv2d(c4, 4 * a, 1)
        self.roi_heads = nn.Module()
        self.roi_heads.res5 = res5
        self.roi_heads.box_predictor = nn.Module()
        self.roi_heads.box_predictor.cls_score = nn.Linear(c5, k + 1)
        self.roi_heads.box_predictor.bbox_pred = nn.Linear(c5, 4 * k)


def build_detector(cfg, seed):
    torch.manual_seed(seed)
    try:
        from detection.modeling import build_model
    except ImportError:
        return StandInDetector(cfg)
    return build_model(cfg)


def _randomise_buffers(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and ("norm" in name or "running" in name):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)


def to_detectron2(state):
    """Our detector state dict -> Detectron2's names, numpy values."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        out[re.sub(r"^rpn\.head\.", "proposal_generator.rpn_head.", k)] = v.detach().cpu().numpy().copy()
    return out


def _cfg(*extra):
    return load_config(None, [*SMALL, *extra])


@pytest.fixture(scope="module")
def source():
    cfg = _cfg()
    model = build_detector(cfg, seed=1)
    _randomise_buffers(model, seed=2)
    return cfg, model


def _assert_same(model, ref):
    ref_state = ref.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref_state[k]), k


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_detectron2_checkpoint_loads_fully(source, tmp_path, kind):
    cfg, ref = source
    d2 = to_detectron2(ref.state_dict())
    d2["pixel_mean"] = np.array([[[103.53]], [[116.28]], [[123.675]]], np.float32)  # older Detectron2 files
    d2["pixel_std"] = np.ones((3, 1, 1), np.float32)
    if kind == "pkl":
        path = tmp_path / "model_final_abc123.pkl"
        with open(path, "wb") as f:
            pickle.dump({"model": d2, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f)
    else:  # a Detectron2 training checkpoint: tensors + optimizer/scheduler state
        path = tmp_path / "model_0004999.pth"
        torch.save({"model": {k: torch.from_numpy(v) for k, v in d2.items()},
                    "optimizer": {"state": {}, "param_groups": [{"lr": 0.02, "params": [0, 1]}]},
                    "scheduler": {"last_epoch": 4999}, "iteration": 4999}, path)
    model = build_detector(cfg, seed=3)
    report = load_weights(model, path, strict=True)
    assert report.complete and not report.missing and not report.unexpected and not report.shape_mismatch
    assert report.info.source == "detectron2" and report.info.input_format == "BGR"
    assert report.info.pixel_mean == pytest.approx((103.53, 116.28, 123.675))
    assert {n for n, _ in report.dropped} <= {"pixel_mean", "pixel_std"}
    notes = "\n".join(report.info.notes)
    assert "pixel_mean" in notes and "pixel_std" in notes and "rpn.head" in notes
    _assert_same(model, ref)


def test_shape_mismatch_and_unexpected_in_report(source, tmp_path):
    cfg, ref = source
    d2 = to_detectron2(ref.state_dict())
    d2["roi_heads.box_head.fc1.weight"] = np.zeros((4, 4), np.float32)  # not in our model
    path = tmp_path / "model_final_coco.pkl"
    path.write_bytes(pickle.dumps({"model": d2, "__author__": "Detectron2 Model Zoo"}))
    small = build_detector(_cfg("MODEL.ROI_HEADS.NUM_CLASSES", "20"), seed=4)
    before = small.roi_heads.box_predictor.cls_score.weight.detach().clone()
    with pytest.raises(WeightLoadError) as e:
        load_weights(small, path, strict=True)
    assert "cls_score" in str(e.value)
    assert torch.equal(small.roi_heads.box_predictor.cls_score.weight, before)  # strict failure copies nothing
    report = load_weights(small, path)
    mism = {n: (f, m) for n, f, m in report.shape_mismatch}
    c5 = before.shape[1]
    assert mism == {"roi_heads.box_predictor.cls_score.weight": ((81, c5), (21, c5)),
                    "roi_heads.box_predictor.cls_score.bias": ((81,), (21,)),
                    "roi_heads.box_predictor.bbox_pred.weight": ((320, c5), (80, c5)),
                    "roi_heads.box_predictor.bbox_pred.bias": ((320,), (80,))}
    assert report.unexpected == ["roi_heads.box_head.fc1.weight"]
    assert report.missing == []  # skipped tensors are listed once, as mismatches, and stay as initialised...
    assert torch.equal(small.roi_heads.box_predictor.cls_score.weight, before)
    assert torch.equal(small.rpn.head.conv.weight, ref.rpn.head.conv.weight)  # ...everything else is loaded
    table = report.table()
    assert "shape mismatch (skipped): 4" in table and f"file (81, {c5})  model (21, {c5})" in table
    assert "unexpected (in the file, not in the model): 1" in table and "roi_heads.box_head.fc1.weight" in table
    assert str(path) in table and "the file has 80 classes (+ background), the model 20" in table


def test_our_checkpoint_with_ddp_prefix_and_cfg(source, tmp_path):
    cfg, ref = source
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"module." + k: v for k, v in ref.state_dict().items()}, "iteration": 7,
                "cfg": cfg.dump()}, path)
    model = build_detector(cfg, seed=5)
    report = load_weights(model, path, strict=True, cfg=cfg)
    assert report.complete and report.info.source == "ours" and not report.warnings
    assert report.info.input_format == cfg.INPUT.FORMAT and report.info.stride_in_1x1 is True
    _assert_same(model, ref)


def test_backbone_only_from_detector_checkpoint(source, tmp_path):
    cfg, ref = source
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": to_detectron2(ref.state_dict()), "__author__": "x"}))
    resnet = build_resnet(cfg)  # stem..res5, no ImageNet head
    report = load_weights(resnet, path, strict=True)
    assert report.complete
    reasons = " ".join(r for _, r in report.dropped)
    assert "RPN" in reasons and "box predictor" in reasons
    assert torch.equal(resnet.res5[0].conv1.weight, ref.roi_heads.res5[0].conv1.weight)
    assert torch.equal(resnet.res3[1].conv2.norm.running_var, ref.backbone.res3[1].conv2.norm.running_var)


def _shared_keys_file():
    here = Path(__file__).resolve().parent.parent
    for root in (here / "shared", here.parent / "shared", Path(os.environ.get("SHARED_DIR", "/nonexistent"))):
        f = root / "formats" / "detectron2_faster_rcnn_R101_C4_keys.txt"
        if f.is_file():
            return f
    return None


def test_real_detectron2_r101_c4_names_fit_our_detector():
    """The names/shapes of the Detectron2 model-zoo R101-C4 COCO checkpoint map onto our R101 detector."""
    keys = _shared_keys_file()
    if keys is None:
        pytest.skip("shared/formats/detectron2_faster_rcnn_R101_C4_keys.txt not found")
    entries = {}
    for line in keys.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape = line.split("\t")
            entries[name] = torch.empty(ast.literal_eval(shape), device="meta")  # no memory: shapes only
    assert len(entries) == 530
    ckpt = convert_checkpoint({"model": entries, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True},
                              "model_final_298dad.pkl")
    model = build_detector(load_config(None, ["MODEL.RESNETS.DEPTH", "101", "MODEL.ROI_HEADS.NUM_CLASSES", "80"]),
                           seed=0)
    report = match_checkpoint(model, ckpt)
    assert report.complete, report.table()
    assert len(report.loaded) == 530 and report.fraction_loaded == 1.0


def test_detect_format_from_content(source, tmp_path):
    cfg, ref = source
    path = tmp_path / "weights.pth"  # a pickle despite the extension
    path.write_bytes(pickle.dumps({"model": to_detectron2(ref.state_dict()), "__author__": "x"}))
    assert read_checkpoint(path).info.source == "detectron2"
    assert "rpn.head.conv.weight" in read_checkpoint(path).state_dict


def test_torch_file_holding_numpy_arrays(tmp_path):
    """A .pth whose "model" holds numpy arrays (as some converted Detectron2 files do) loads with weights_only."""
    cfg = _cfg()
    ref = build_detector(cfg, seed=6)
    _randomise_buffers(ref, seed=7)
    path = tmp_path / "converted.pth"
    torch.save({"model": to_detectron2(ref.state_dict()), "__author__": "converter"}, path)
    model = build_detector(cfg, seed=8)
    assert load_weights(model, path, strict=True).complete
    _assert_same(model, ref)
