"""Missing, corrupt and unrelated files give clear errors naming the file; the report table stays readable."""
import pickle

import numpy as np
import pytest
import torch
import torch.nn as nn

from detection.checkpoint import (CheckpointError, CheckpointNotFoundError, CorruptCheckpointError, WeightLoadError,
                                  group_names, load_weights, read_checkpoint)
from detection.config import load_config
from detection.modeling import build_resnet


SLIM = ["MODEL.RESNETS.STAGE_BLOCKS", "[1, 1, 1, 1]", "MODEL.RESNETS.BLOCK", "bottleneck",
        "MODEL.RESNETS.STEM_OUT_CHANNELS", "16", "MODEL.RESNETS.WIDTH_PER_GROUP", "8",
        "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"]


@pytest.fixture(scope="module")
def small_resnet():
    return build_resnet(load_config(None, SLIM), num_classes=10)


def test_missing_file(small_resnet, tmp_path):
    path = tmp_path / "nope" / "R-101.pkl"
    with pytest.raises(CheckpointNotFoundError) as e:
        load_weights(small_resnet, path)
    assert str(path) in str(e.value)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, CheckpointError)
    with pytest.raises(CheckpointNotFoundError):
        read_checkpoint(tmp_path)  # a directory


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", bytes(range(256)) * 10,
                                     b"\x89PNG\r\n\x1a\n" + b"\x00" * 100], ids=["empty", "text", "bytes", "png"])
def test_not_a_checkpoint(small_resnet, tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpointError) as e:
        load_weights(small_resnet, path)
    assert str(path) in str(e.value)


def test_truncated_torch_file(small_resnet, tmp_path):
    full = tmp_path / "full.pth"
    torch.save(small_resnet.state_dict(), full)
    data = full.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as e:
        load_weights(small_resnet, path)
    assert str(path) in str(e.value)


def test_pickle_without_weights(small_resnet, tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CorruptCheckpointError) as e:
        load_weights(small_resnet, path)
    assert str(path) in str(e.value) and "list" in str(e.value)


def test_unrelated_file_is_refused(small_resnet, tmp_path):
    path = tmp_path / "bert.pth"
    torch.save({"encoder.layer.0.attention.weight": torch.randn(8, 8), "pooler.dense.bias": torch.randn(8)}, path)
    before = small_resnet.stem.conv1.weight.detach().clone()
    with pytest.raises(WeightLoadError) as e:
        load_weights(small_resnet, path)
    msg = str(e.value)
    assert str(path) in msg and "encoder.layer.0.attention.weight" in msg and "stem.conv1.weight" in msg
    assert torch.equal(small_resnet.stem.conv1.weight, before)
    # a numpy pickle of unrelated arrays too
    path2 = tmp_path / "other.pkl"
    path2.write_bytes(pickle.dumps({"W_embed": np.zeros((3, 3), np.float32)}))
    with pytest.raises(WeightLoadError, match="other.pkl"):
        load_weights(small_resnet, path2)


def test_model_without_resnet_parts(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(build_resnet(load_config(None, SLIM)).state_dict(), path)
    with pytest.raises(WeightLoadError, match="resnet.pth"):
        load_weights(nn.Sequential(nn.Linear(3, 4)), path)


def test_dtype_cast_and_float64_file(small_resnet, tmp_path):
    state = {k: v.double() if v.is_floating_point() else v for k, v in small_resnet.state_dict().items()}
    state["stem.conv1.weight"] = torch.full_like(state["stem.conv1.weight"], 0.25)
    path = tmp_path / "f64.pth"
    torch.save({"model": state}, path)
    report = load_weights(small_resnet, path, strict=True)
    assert report.complete and small_resnet.stem.conv1.weight.dtype == torch.float32
    assert torch.all(small_resnet.stem.conv1.weight == 0.25)


def test_group_names_is_short_for_long_lists():
    names = [f"backbone.res4.{i}.conv{k}.{leaf}" for i in range(23) for k in (1, 2, 3)
             for leaf in ("weight", "norm.weight", "norm.bias")] + ["rpn.head.conv.weight", "rpn.head.conv.bias"]
    lines = group_names(names, max_lines=10)
    assert lines == ["backbone.res4.* (207 tensors)", "rpn.head.* (2 tensors)"]
    assert group_names(["rpn.head.conv.weight", "rpn.head.conv.bias"]) == ["rpn.head.conv.{weight,bias}"]


def test_legacy_torch_format(small_resnet, tmp_path):
    """Files written by torch < 1.6 (not a zip): read by torch.load(weights_only=True) as well."""
    path = tmp_path / "legacy.pth"
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in small_resnet.state_dict().items()}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    report = load_weights(small_resnet, path, strict=True)
    assert report.complete and torch.all(small_resnet.res3[0].conv1.weight == 0.5)
