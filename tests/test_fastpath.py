"""Fast inference paths (detection.fastpath): folded BatchNorm, torch.compile, bf16 autocast and int8
give eager fp32's detections (int8 and bf16: within a tolerance), and the int8 parts really run int8."""
from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detection.data import DatasetMapper
from detection.engine.export import match_detections, synthetic_images
from detection.fastpath import fold_batchnorm, load_int8, prepare_for_inference, quantize_int8
from detection.layers import ConvNorm
from detection.modeling import build_model, build_test_model
from detection.utils.seed import seed_all
from tiny import tiny_test_config
from tiny_localizer import tiny_cfg as tiny_loc_cfg

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile (Inductor) needs a C++ compiler")


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm statistics and affine parameters far from the identity, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                c = m.running_mean.numel()
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return model


@pytest.fixture(scope="module")
def detector():
    cfg = tiny_test_config("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05")
    seed_all(0)
    model = _randomize_norms(build_model(cfg)).eval()
    mapper = DatasetMapper(cfg, is_train=False)
    samples = [mapper.map_image(im) for im in synthetic_images(3, size=128)]
    return cfg, model, samples


def _detections(model, samples):
    with torch.no_grad():
        return [tuple(out[k].numpy() for k in ("boxes", "scores", "labels")) for out in model(samples)]


def _same_detections(ref, got, box_tol=1e-3, score_tol=1e-4):
    for r, g in zip(ref, got):
        m = match_detections(r, g)
        assert m["ref"] > 0, "the test model must detect something"
        assert m["ref"] == m["got"] == m["matched"], m
        assert m["max_box_diff"] <= box_tol and m["max_score_diff"] <= score_tol, m


# ------------------------------------------------------------------------------------------- folding
@pytest.mark.parametrize("norm", ["frozen", "bn_eval"])
def test_folded_conv_equals_conv_then_norm(norm):
    torch.manual_seed(0)
    bn = FrozenBatchNorm2d(4) if norm == "frozen" else nn.BatchNorm2d(4).eval()
    conv = ConvNorm(3, 4, 3, padding=1, bias=norm == "bn_eval", norm=_randomize_norms(nn.Sequential(bn))[0])
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        # by hand: (conv(x) - mean) / sqrt(var + eps) * gamma + beta
        raw = nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        expected = (raw - bn.running_mean.view(-1, 1, 1)) / (bn.running_var.view(-1, 1, 1) + bn.eps).sqrt() \
            * bn.weight.view(-1, 1, 1) + bn.bias.view(-1, 1, 1)
        assert fold_batchnorm(conv) == 1
        assert conv.norm is None and conv.bias is not None
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


def test_training_batchnorm_and_groupnorm_are_not_folded():
    train_bn = ConvNorm(3, 4, 1, norm=nn.BatchNorm2d(4).train())
    gn = ConvNorm(3, 4, 1, norm=nn.GroupNorm(2, 4))
    assert fold_batchnorm(nn.Sequential(train_bn, gn)) == 0
    assert isinstance(train_bn.norm, nn.BatchNorm2d) and isinstance(gn.norm, nn.GroupNorm)


def test_folded_detector_gives_eager_detections_and_leaves_the_model_alone(detector):
    cfg, model, samples = detector
    before = copy.deepcopy(model.state_dict())
    fast = prepare_for_inference(model, fold_bn=True)
    assert fast is not model
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    _same_detections(_detections(model, samples), _detections(fast, samples))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is untouched


def test_no_fast_path_is_the_model_itself_and_the_config_switches_them(detector):
    cfg, model, _ = detector
    assert prepare_for_inference(model, fold_bn=False) is model
    off = copy.deepcopy(cfg)
    off.TEST.FOLD_BN = False
    assert build_test_model(off, model) is model
    assert build_test_model(cfg, model) is not model  # TEST.FOLD_BN is on by default
    with pytest.raises(ValueError, match="TEST.PRECISION"):
        prepare_for_inference(model, precision="int4")


def test_folded_localizer_gives_eager_outputs():
    seed_all(0)
    model = _randomize_norms(build_model(tiny_loc_cfg("MODEL.RESNETS.NORM", "FrozenBN"))).eval()
    images = [{"image": torch.randint(0, 256, (3, 96, 128)).float(), "height": 96, "width": 128}]
    fast = prepare_for_inference(model, fold_bn=True)
    with torch.no_grad():
        ref, got = model(images)[0], fast(images)[0]
    assert torch.equal(ref["labels"], got["labels"])
    torch.testing.assert_close(got["boxes"], ref["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------- bf16, compile
def test_bf16_autocast_keeps_the_detections_close(detector):
    _, model, samples = detector
    fast = prepare_for_inference(model, precision="bf16")
    ref, got = _detections(model, samples), _detections(fast, samples)
    assert all(g[0].dtype == np.float32 for g in got)  # outputs back in fp32
    # bf16 keeps 8 mantissa bits: the strongest detections survive with boxes within a few pixels
    for r, g in zip(ref, got):
        top = np.argsort(-r[1])[:5]
        m = match_detections(tuple(a[top] for a in r), g)
        assert m["matched"] == len(top) and m["max_box_diff"] < 4.0, m


@needs_compiler
def test_compiled_detector_gives_eager_detections(detector):
    _, model, samples = detector
    fast = prepare_for_inference(model, fold_bn=True, compile=True)
    _same_detections(_detections(model, samples), _detections(fast, samples))
    # another image size and a batch of two: dynamic shapes, no error
    _same_detections(_detections(model, samples[:2]), _detections(fast, samples[:2]))


# ------------------------------------------------------------------------------------------------ int8
@needs_compiler
def test_int8_parts_run_in_int8_and_keep_the_strong_detections(detector, tmp_path):
    pytest.importorskip("torchao")
    from torch._dynamo.utils import counters

    _, model, samples = detector
    out = quantize_int8(model, [samples[:2], samples[2:]], str(tmp_path / "int8"))
    counters.clear()
    fast = prepare_for_inference(model, int8=out)
    got = _detections(fast, samples)
    # Inductor lowered every convolution of the trunk and res5 to oneDNN's int8 convolution
    convs = sum(isinstance(m, nn.Conv2d) for name in model.int8_parts for m in model.get_submodule(name).modules())
    assert counters["inductor"]["qconv_weight_prepack_matcher_count"] == convs
    ref = _detections(model, samples)
    for r, g in zip(ref, got):
        top = np.argsort(-r[1])[:3]
        m = match_detections(tuple(a[top] for a in r), g)
        assert m["matched"] == len(top) and m["max_box_diff"] < 6.0, m


@needs_compiler
def test_int8_refuses_other_weights_and_a_missing_directory(detector, tmp_path):
    pytest.importorskip("torchao")
    _, model, samples = detector
    out = quantize_int8(model, [samples[:1]], str(tmp_path / "int8"))
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.backbone.stem.conv1.weight.add_(0.01)
    with pytest.raises(ValueError, match="other weights"):
        load_int8(other, out)
    with pytest.raises(FileNotFoundError, match="tools/quantize.py"):
        load_int8(copy.deepcopy(model), str(tmp_path / "nothing"))
