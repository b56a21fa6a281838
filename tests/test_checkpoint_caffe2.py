"""MSRA / Detectron caffe2 pickles (BN folded into scale/bias, stride in the 1x1) load and reproduce features."""
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from detection.checkpoint import load_weights, read_checkpoint
from detection.config import load_config
from detection.modeling import build_resnet

EPS = 1e-5
C2_BRANCH = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}


def _randomise_norms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var") and m.running_var is not None:
                n = m.running_var.numel()
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)


def _cfg(*extra):
    """A slim bottleneck ResNet (R-50's layout, fewer blocks, 1/4 width): same names, fast."""
    return load_config(None, ["MODEL.RESNETS.STAGE_BLOCKS", "[2, 1, 3, 2]", "MODEL.RESNETS.BLOCK", "bottleneck",
                              "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
                              "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.STRIDE_IN_1X1", "True",
                              *extra])


def to_caffe2(model, fold=True):
    """Our ResNet's weights under MSRA caffe2 blob names; BN folded into s, b (or kept as s, b, rm, riv)."""
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    blobs = {}

    def put(c2, conv, norm):
        blobs[c2 + "_w"] = sd[conv + ".weight"].float().numpy()
        w, b, mean, var = (sd[f"{norm}.{k}"] for k in ("weight", "bias", "running_mean", "running_var"))
        if fold:
            s = w / torch.sqrt(var + EPS)
            blobs[c2 + "_bn_s"], blobs[c2 + "_bn_b"] = s.float().numpy(), (b - mean * s).float().numpy()
        else:
            for suffix, t in (("s", w), ("b", b), ("rm", mean), ("riv", var)):
                blobs[f"{c2}_bn_{suffix}"] = t.float().numpy()

    put("conv1", "stem.conv1", "stem.conv1.norm")
    blobs["res_conv1_bn_s"] = blobs.pop("conv1_bn_s", None)
    blobs["res_conv1_bn_b"] = blobs.pop("conv1_bn_b", None)
    for suffix in ("rm", "riv"):
        if f"conv1_bn_{suffix}" in blobs:
            blobs[f"res_conv1_bn_{suffix}"] = blobs.pop(f"conv1_bn_{suffix}")
    for name, block in model.blocks():
        stage, i = name.split(".")
        for ours, c2 in C2_BRANCH.items():
            if f"{name}.{ours}.weight" in sd:
                put(f"{stage}_{i}_{c2}", f"{name}.{ours}", f"{name}.{ours}.norm")
    blobs["fc1000_w"] = sd["linear.weight"].float().numpy()
    blobs["fc1000_b"] = sd["linear.bias"].float().numpy()
    blobs = {k: v for k, v in blobs.items() if v is not None}
    blobs["res2_0_branch2a_w_momentum"] = np.zeros_like(blobs["res2_0_branch2a_w"])  # optimizer state
    blobs["conv1_w_momentum"] = np.zeros_like(blobs["conv1_w"])
    return blobs


@pytest.fixture(scope="module")
def reference():
    """A random slim bottleneck ResNet (BN in eval, stride in the 1x1) and its outputs on a small batch."""
    torch.manual_seed(0)
    model = build_resnet(_cfg("MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.FREEZE_AT", "0"), num_classes=1000,
                         out_features=["res4", "res5"]).eval()
    _randomise_norms(model)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    return model, x, out


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def _py2_str(data: bytes) -> bytes:
    return (b"U" + bytes([len(data)]) + data) if len(data) < 256 else (b"T" + struct.pack("<I", len(data)) + data)


def py2_pickle(d) -> bytes:
    """What Python 2 + numpy wrote for {str: float32 array | dict} (protocol 2, numpy.core names, str data)."""
    def arr(a):
        a = np.ascontiguousarray(a, dtype="<f4")
        shape = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in a.shape) + b"t"
        dtype = (b"cnumpy\ndtype\n" + _py2_str(b"f4") + b"K\x00K\x01\x87R(K\x03" + _py2_str(b"<")
                 + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b") + b"\x87R(K\x01"
                + shape + dtype + b"\x89" + _py2_str(a.tobytes()) + b"tb")

    def obj(v):
        if isinstance(v, dict):
            return b"}(" + b"".join(_py2_str(k.encode()) + obj(x) for k, x in v.items()) + b"u"
        return arr(v)
    return b"\x80\x02" + obj(d) + b"."


@pytest.mark.parametrize("layout", ["top", "blobs_py2", "detectron2_wrapped", "unfolded"])
def test_caffe2_pickle_reproduces_reference(reference, tmp_path, layout):
    ref_model, x, ref = reference
    blobs = to_caffe2(ref_model, fold=layout != "unfolded")
    path = tmp_path / "R-50.pkl"
    if layout == "blobs_py2":
        path.write_bytes(py2_pickle({"blobs": blobs}))
    elif layout == "detectron2_wrapped":  # how Detectron2's checkpointer hands caffe2 blobs around
        path.write_bytes(pickle.dumps({"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}))
    else:
        path.write_bytes(pickle.dumps(blobs, protocol=2))
    model = build_resnet(_cfg(), num_classes=1000, out_features=["res4", "res5"]).eval()  # FrozenBN
    report = load_weights(model, path, strict=True)
    assert report.complete
    info = report.info
    assert info.source == "caffe2" and info.input_format == "BGR" and info.stride_in_1x1 is True
    assert info.pixel_mean == pytest.approx((102.98, 115.95, 122.77)) and info.pixel_std == (1.0, 1.0, 1.0)
    assert sorted(info.ignored) == ["conv1_w_momentum", "res2_0_branch2a_w_momentum"]
    table = report.table()
    assert "momentum" in table and ("folded" in table) == (layout != "unfolded")
    if layout != "unfolded":  # the frozen affine is exactly (s, b)
        norm = model.res2[0].conv1.norm
        assert torch.equal(norm.weight, torch.from_numpy(blobs["res2_0_branch2a_bn_s"]))
        assert torch.all(norm.running_mean == 0) and torch.allclose(norm.running_var, torch.full_like(norm.running_var, 1 - EPS))
    with torch.no_grad():
        out = model(x)
    for key in ("res4", "res5", "linear"):
        _close(out[key], ref[key])


def test_caffe2_by_hand(reference, tmp_path):
    """Stem and the strided res3.0 block computed from the blobs with plain convolutions."""
    ref_model, x, _ = reference
    blobs = {k: torch.from_numpy(v) for k, v in to_caffe2(ref_model).items()}
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps({k: v.numpy() for k, v in blobs.items()}, protocol=2))
    model = build_resnet(_cfg(), num_classes=1000).eval()
    load_weights(model, path)

    def affine(y, name):
        return y * blobs[name + "_bn_s"].view(1, -1, 1, 1) + blobs[name + "_bn_b"].view(1, -1, 1, 1)

    with torch.no_grad():
        stem = F.max_pool2d(F.relu(affine(F.conv2d(x, blobs["conv1_w"], stride=2, padding=3), "res_conv1")), 3, 2, 1)
        _close(model.stem(x), stem)
        h = model.res2(stem)
        a = F.relu(affine(F.conv2d(h, blobs["res3_0_branch2a_w"], stride=2), "res3_0_branch2a"))  # stride in 1x1
        b = F.relu(affine(F.conv2d(a, blobs["res3_0_branch2b_w"], padding=1), "res3_0_branch2b"))
        c = affine(F.conv2d(b, blobs["res3_0_branch2c_w"]), "res3_0_branch2c")
        short = affine(F.conv2d(h, blobs["res3_0_branch1_w"], stride=2), "res3_0_branch1")
        _close(model.res3[0](h), F.relu(c + short))


def test_caffe2_into_detector(reference, tmp_path):
    modeling = pytest.importorskip("detection.modeling")
    ref_model, x, ref = reference
    blobs = to_caffe2(ref_model)
    blobs["rpn_cls_logits_w"] = np.zeros((15, 256, 1, 1), np.float32)  # a Detectron (1) head blob: not converted
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    model = modeling.build_model(_cfg("MODEL.ROI_HEADS.NUM_CLASSES", "5")).eval()
    report = load_weights(model, path)
    assert not report.unexpected and not report.shape_mismatch
    assert all(n.startswith(("rpn.head.", "roi_heads.box_predictor.")) for n in report.missing)
    assert any(n.startswith("roi_heads.res5.1.conv3") for n in report.loaded)
    assert "rpn_cls_logits_w" in report.info.ignored and "rpn_cls_logits_w" in report.table()
    with torch.no_grad():
        feat = model.backbone(x)["res4"]
        _close(feat, ref["res4"])
        _close(model.roi_heads.res5(feat), ref["res5"])


def test_read_checkpoint_names(reference, tmp_path):
    ref_model, _, _ = reference
    path = tmp_path / "weights.bin"  # the extension says nothing: the content does
    path.write_bytes(pickle.dumps(to_caffe2(ref_model), protocol=4))
    ckpt = read_checkpoint(path)
    sd = ckpt.state_dict
    assert ckpt.info.source == "caffe2"
    for name in ("stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.shortcut.norm.bias",
                 "res3.0.conv1.weight", "res5.1.conv3.norm.weight", "linear.weight"):
        assert name in sd, name
    assert sd["res3.0.conv1.weight"].shape == (32, 64, 1, 1) and sd["res3.0.conv2.weight"].shape == (32, 32, 3, 3)
    assert not any("momentum" in k for k in sd)
    ref_names = {k for k in ref_model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(sd) == ref_names
    assert isinstance(ref_model.res2[0].conv1.norm, nn.BatchNorm2d)
