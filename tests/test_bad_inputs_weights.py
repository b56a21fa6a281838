"""Weights that fit only partly, or hold NaN/inf: named causes, refused in evaluation, loud in training."""
import importlib.util
import logging
import os

import pytest
import torch

from detection.checkpoint import NonFiniteWeightsError, PartialWeightsError, load_weights
from detection.config import load_config
from detection.modeling import build_model
from tiny import TINY_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def tiny_cfg(*opts):
    return load_config(QUICKSTART, TINY_MODEL + list(opts))


def tiny_model(*opts):
    torch.manual_seed(1)
    return build_model(tiny_cfg(*opts))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking checkpoint of the tiny detector (1 block per stage, GN), in our format."""
    path = tmp_path_factory.mktemp("w") / "tiny.pth"
    model = tiny_model()
    torch.save({"model": model.state_dict(), "iteration": 7}, path)
    return str(path), model.state_dict()


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- partial fits: refused, named cause


def test_deeper_model_refuses_partial_weights_naming_file_depth_and_nothing_is_copied(saved):
    path, _ = saved
    opts = ("MODEL.RESNETS.STAGE_BLOCKS", "[1, 2, 3, 1]")
    model = tiny_model(*opts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PartialWeightsError) as e:
        load_weights(model, path, cfg=tiny_cfg(*opts))
    msg = str(e.value)
    assert path in msg
    assert "18 of the model's 54 ResNet tensors" in msg  # res3.1, res4.1, res4.2: 3 blocks x 6 tensors
    assert "depth: blocks per stage in the file vs the model: res3 1 vs 2, res4 1 vs 3" in msg
    assert "MODEL.ALLOW_PARTIAL_WEIGHTS" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_norm_mismatch_is_named(saved):
    path, _ = saved
    with pytest.raises(PartialWeightsError, match=r"norm: the model has BN running statistics that the file lacks"):
        load_weights(tiny_model("MODEL.RESNETS.NORM", "FrozenBN"), path,
                     cfg=tiny_cfg("MODEL.RESNETS.NORM", "FrozenBN"))


def test_width_mismatch_is_named_with_the_tensor_and_shapes(saved, tmp_path):
    _, state = saved
    state = dict(state)
    name = "backbone.res4.0.conv1.weight"
    c_out, c_in, kh, kw = state[name].shape
    state[name] = torch.zeros(c_out * 2, c_in, kh, kw)
    path = tmp_path / "wider.pth"
    torch.save({"model": state}, path)
    with pytest.raises(PartialWeightsError) as e:
        load_weights(tiny_model(), path, cfg=tiny_cfg())
    msg = str(e.value)
    assert f"width: 1 tensors have other shapes, e.g. {name} file ({2 * c_out}, {c_in}, {kh}, {kw}) " \
           f"model ({c_out}, {c_in}, {kh}, {kw})" in msg


def test_allow_partial_weights_key_loads_with_a_loud_warning(saved, caplog):
    path, state = saved
    opts = ("MODEL.RESNETS.STAGE_BLOCKS", "[1, 2, 3, 1]", "MODEL.ALLOW_PARTIAL_WEIGHTS", "True")
    model = tiny_model(*opts)
    with caplog.at_level(logging.WARNING):
        report = load_weights(model, path, cfg=tiny_cfg(*opts))
    assert report.warnings[0].startswith("PARTIAL WEIGHTS: 18 of the model's 54 ResNet tensors")
    assert any(r.levelno == logging.WARNING and "PARTIAL WEIGHTS" in r.getMessage() and path in r.getMessage()
               for r in caplog.records)
    assert torch.equal(model.state_dict()["backbone.res4.0.conv1.weight"], state["backbone.res4.0.conv1.weight"])


def test_training_load_warns_and_goes_on(saved, caplog):
    path, _ = saved
    opts = ("MODEL.RESNETS.STAGE_BLOCKS", "[1, 2, 3, 1]")
    with caplog.at_level(logging.WARNING):
        report = load_weights(tiny_model(*opts), path, cfg=tiny_cfg(*opts), allow_partial=True)
    assert "depth:" in report.warnings[0]
    assert any("PARTIAL WEIGHTS" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_other_class_count_and_backbone_only_files_are_not_partial(saved, tmp_path):
    path, state = saved
    opts = ("MODEL.ROI_HEADS.NUM_CLASSES", "3")  # fine-tuning: the box predictor does not fit, as expected
    report = load_weights(tiny_model(*opts), path, cfg=tiny_cfg(*opts))
    assert {n for n, _, _ in report.shape_mismatch} == {f"roi_heads.box_predictor.{p}.{w}"
                                                        for p in ("cls_score", "bbox_pred") for w in ("weight", "bias")}
    assert not any("PARTIAL" in w for w in report.warnings)
    trunk = {k: v for k, v in state.items() if k.startswith(("backbone.", "roi_heads.res5."))}
    torch.save({"model": trunk}, tmp_path / "trunk.pth")
    report = load_weights(tiny_model(), tmp_path / "trunk.pth", cfg=tiny_cfg())
    assert report.missing and all(n.startswith(("rpn.head.", "roi_heads.box_predictor.")) for n in report.missing)


def test_eval_tool_refuses_partial_weights(saved, tmp_path):
    path, _ = saved
    with pytest.raises(PartialWeightsError, match="depth"):
        _tool("eval").main(["--config", QUICKSTART, "--weights", path, *TINY_MODEL,
                            "MODEL.RESNETS.STAGE_BLOCKS", "[2, 1, 1, 1]", "OUTPUT_DIR", str(tmp_path)])


def test_train_net_eval_only_refuses_partial_weights(saved, tmp_path):
    path, _ = saved
    with pytest.raises(PartialWeightsError, match="depth"):
        _tool("train_net").main(["--config", QUICKSTART, "--eval-only", *TINY_MODEL, "MODEL.WEIGHTS", path,
                                 "MODEL.RESNETS.STAGE_BLOCKS", "[2, 1, 1, 1]", "OUTPUT_DIR", str(tmp_path)])


# ----------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("bad", ["one nan", "all nan", "inf"])
def test_non_finite_weights_are_an_error_naming_file_and_tensor(saved, tmp_path, bad):
    _, state = saved
    state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    name = "backbone.res3.0.conv2.weight"
    if bad == "one nan":
        state[name].view(-1)[5] = float("nan")
    elif bad == "all nan":
        state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
        name = "backbone.stem.conv1.weight"  # the first tensor
    else:
        state[name].view(-1)[0] = float("-inf")
    path = tmp_path / "bad.pth"
    torch.save({"model": state}, path)
    model = tiny_model()
    before = model.state_dict()["backbone.stem.conv1.weight"].clone()
    with pytest.raises(NonFiniteWeightsError) as e:
        load_weights(model, path, allow_partial=True)
    msg = str(e.value)
    assert str(path) in msg and f"tensor {name} holds" in msg
    if bad == "one nan":
        assert f"holds 1 NaN/inf values of {state[name].numel()}" in msg
    if bad == "all nan":
        assert "tensors in all hold some" in msg
    assert torch.equal(model.state_dict()["backbone.stem.conv1.weight"], before)
