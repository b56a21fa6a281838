"""torchvision ImageNet ResNet weights -> our ResNet / C4 split / detector reproduce torchvision's features."""
import pytest
import torch
import torch.nn as nn
import torchvision

from detection.checkpoint import WeightLoadError, load_weights, read_checkpoint
from detection.config import load_config
from detection.modeling import build_c4_backbone, build_resnet


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """BN affine and running statistics away from 1/0 so that wrong loading shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)


@pytest.fixture(scope="module")
def tv_r50(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.resnet50()
    _randomise_bn(model)
    model.eval()
    path = tmp_path_factory.mktemp("tv") / "resnet50-0123abcd.pth"
    torch.save(model.state_dict(), path)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        l3 = model.layer3(model.layer2(model.layer1(y)))
        l4 = model.layer4(l3)
        logits = model.fc(torch.flatten(model.avgpool(l4), 1))
    return path, x, {"res4": l3, "res5": l4, "linear": logits}


def _close(a, b):
    """atol 1e-4 relative to the feature scale (features reach ~100 with random weights), rtol 1e-4."""
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


TORCHVISION_INPUT = ["INPUT.FORMAT", "RGB", "MODEL.PIXEL_MEAN", "[123.675, 116.28, 103.53]",
                     "MODEL.PIXEL_STD", "[58.395, 57.12, 57.375]"]


def _cfg(depth=50, norm="FrozenBN", *extra):
    return load_config(None, ["MODEL.RESNETS.DEPTH", str(depth), "MODEL.RESNETS.STRIDE_IN_1X1", "False",
                              "MODEL.RESNETS.NORM", norm, *TORCHVISION_INPUT, *extra])


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_classifier_reproduces_torchvision(tv_r50, norm):
    path, x, ref = tv_r50
    cfg = _cfg(50, norm)
    model = build_resnet(cfg, num_classes=1000, out_features=["res4", "res5"]).eval()
    report = load_weights(model, path, strict=True, cfg=cfg)
    assert report.complete and report.fraction_loaded == 1.0 and report.warnings == []
    assert report.info.source == "torchvision" and report.info.input_format == "RGB"
    assert report.info.stride_in_1x1 is False
    if norm == "BN":  # nn.BatchNorm2d's counter is not in the (converted) file and is no noise
        assert report.benign and all(n.endswith("num_batches_tracked") for n in report.benign)
    with torch.no_grad():
        out = model(x)
    for key in ("res4", "res5", "linear"):
        _close(out[key], ref[key])


def test_config_mismatch_warnings(tv_r50):
    path, _, _ = tv_r50
    info = read_checkpoint(path).info
    cfg = load_config(None, ["MODEL.RESNETS.DEPTH", "50"])  # defaults: BGR, caffe means, stride in 1x1
    text = "\n".join(info.config_mismatches(cfg))
    assert "INPUT.FORMAT" in text and "PIXEL_MEAN" in text and "PIXEL_STD" in text and "STRIDE_IN_1X1" in text
    assert info.config_opts()[:2] == ["INPUT.FORMAT", "RGB"]
    fixed = load_config(None, ["MODEL.RESNETS.DEPTH", "50", *info.config_opts()])
    assert info.config_mismatches(fixed) == []
    assert fixed.MODEL.PIXEL_STD == [58.395, 57.12, 57.375]


def test_c4_split_reproduces_layer3_and_layer4(tv_r50):
    path, x, ref = tv_r50
    trunk, res5 = build_c4_backbone(_cfg())
    # the trunk alone: res5 and the ImageNet head are dropped with a note, not reported as unexpected
    report = load_weights(trunk.eval(), path)
    assert report.complete
    reasons = {r for _, r in report.dropped}
    assert any("res5" in r for r in reasons) and any("linear" in r for r in reasons)
    assert "dropped on purpose" in report.table()
    # trunk and res5 under the detector's naming: backbone.* and roi_heads.res5.*
    holder = nn.Module()
    holder.backbone = trunk
    holder.roi_heads = nn.Module()
    holder.roi_heads.res5 = res5
    holder.eval()
    report = load_weights(holder, path)
    assert report.complete
    assert {n for n, _ in report.dropped} == {"linear.weight", "linear.bias"}
    assert any(n.startswith("roi_heads.res5.0.conv2") for n in report.loaded)
    with torch.no_grad():
        feat = trunk(x)["res4"]
        _close(feat, ref["res4"])
        _close(res5(feat), ref["res5"])


def test_detector_gets_trunk_and_res5(tv_r50):
    modeling = pytest.importorskip("detection.modeling")
    path, x, ref = tv_r50
    cfg = _cfg(50, "FrozenBN", "MODEL.ROI_HEADS.NUM_CLASSES", "3")
    model = modeling.build_model(cfg).eval()
    report = load_weights(model, path)
    assert not report.unexpected and not report.shape_mismatch
    assert sorted(report.missing) == sorted(k for k in model.state_dict()
                                            if k.startswith(("rpn.head.", "roi_heads.box_predictor.")))
    assert "ImageNet classifier head" in report.table()
    with torch.no_grad():
        _close(model.backbone(x)["res4"], ref["res4"])


def test_wrong_depth_is_reported(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    model = build_resnet(_cfg(34), num_classes=10)  # same widths, more blocks: loads partially
    report = load_weights(model, path)
    assert report.missing and any(n.startswith("res4.2.") for n in report.missing)
    assert [n for n, _, _ in report.shape_mismatch] == ["linear.weight", "linear.bias"]
    assert "linear.weight" in report.table() and "(1000, 512)" in report.table()
    with pytest.raises(WeightLoadError):
        load_weights(model, path, strict=True)
    # R18 into R50: some 3x3 convs and norms fit by shape, most do not: loaded partially, loudly
    r50 = build_resnet(_cfg(50), num_classes=1000)
    report = load_weights(r50, path)
    assert len(report.shape_mismatch) > 10 and report.fraction_loaded < 0.5
    assert any(w.startswith("PARTIAL WEIGHTS") and "width:" in w for w in report.warnings)
