"""--resume never restarts silently: corrupt or missing checkpoints stop with a message naming the file;
temporary files of an interrupted checkpoint write are removed at the next start."""
import importlib.util
import logging
import os

import pytest
import torch

from detection.checkpoint import (CheckpointNotFoundError, CorruptCheckpointError, NonFiniteWeightsError,
                                  WeightLoadError)
from detection.config import load_config
from detection.engine.checkpointer import POINTER, Checkpointer
from detection.engine.trainer import Trainer
from detection.modeling import build_model
from tiny import TINY_MODEL, tiny_opts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def make_trainer(out, *opts):
    cfg = load_config(QUICKSTART, TINY_MODEL + ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "4", *opts])
    torch.manual_seed(0)
    return Trainer(cfg, build_model(cfg), build_loader=lambda start: iter(()))


@pytest.fixture
def run_dir(tmp_path):
    """An output folder after 2 iterations: model_0000002.pth and the pointer to it."""
    out = tmp_path / "run"
    trainer = make_trainer(out)
    trainer.iteration = 2
    trainer.save("model_0000002")
    return out


def test_resume_from_a_good_checkpoint_continues_at_its_iteration(run_dir):
    assert make_trainer(run_dir).resume_or_start(True) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_resume_on_a_corrupt_checkpoint_names_the_file(run_dir, damage):
    path = run_dir / "model_0000002.pth"
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 50,
                      "empty": b""}[damage])
    with pytest.raises(CorruptCheckpointError) as e:
        make_trainer(run_dir).resume_or_start(True)
    assert str(path) in str(e.value)


def test_resume_on_weights_that_are_not_a_training_checkpoint_says_so(run_dir):
    path = run_dir / "model_0000002.pth"
    torch.save(torch.load(path, weights_only=True)["model"], path)  # a bare state dict
    with pytest.raises(CorruptCheckpointError, match=r"is not a training checkpoint .*MODEL.WEIGHTS without --resume"):
        make_trainer(run_dir).resume_or_start(True)


def test_resume_with_a_nan_in_the_checkpoint_names_file_and_tensor(run_dir):
    path = run_dir / "model_0000002.pth"
    data = torch.load(path, weights_only=True)
    data["model"]["rpn.head.conv.bias"][0] = float("nan")
    torch.save(data, path)
    with pytest.raises(NonFiniteWeightsError, match=r"tensor rpn.head.conv.bias holds 1 NaN/inf"):
        make_trainer(run_dir).resume_or_start(True)


def test_resume_with_another_config_names_the_file_and_the_run_config(run_dir):
    with pytest.raises(WeightLoadError) as e:
        make_trainer(run_dir, "MODEL.ROI_HEADS.NUM_CLASSES", "3").resume_or_start(True)
    msg = str(e.value)
    assert str(run_dir / "model_0000002.pth") in msg and str(run_dir / "config.yaml") in msg


@pytest.mark.parametrize("pointer_text,expected", [("model_0000009.pth", "names 'model_0000009.pth', which is not"),
                                                   ("", "is empty")])
def test_resume_when_the_pointer_names_a_missing_file_stops_and_writes_nothing(run_dir, pointer_text, expected):
    (run_dir / POINTER).write_text(pointer_text)
    before = sorted(os.listdir(run_dir))
    with pytest.raises(CheckpointNotFoundError) as e:
        make_trainer(run_dir).resume_or_start(True)
    msg = str(e.value)
    assert str(run_dir / POINTER) in msg and expected in msg and "refusing to start from iteration 0" in msg
    assert sorted(os.listdir(run_dir)) == before


def test_resume_with_checkpoints_but_no_pointer_takes_the_newest(run_dir):
    """A kill between writing a checkpoint and its pointer leaves the checkpoint without a pointer."""
    trainer = make_trainer(run_dir)
    trainer.iteration = 10
    trainer.save("model_0000010")
    (run_dir / POINTER).unlink()
    assert make_trainer(run_dir).resume_or_start(True) == 10


def test_resume_in_an_empty_folder_starts_at_zero(tmp_path):
    assert make_trainer(tmp_path / "new").resume_or_start(True) == 0


def test_temporary_files_of_an_interrupted_write_are_removed_at_the_next_start(run_dir, caplog):
    leftovers = ["model_0000004.pth.tmp.4242", ".model_0000004.pth.4242.0badc0de.tmp", "last_checkpoint.tmp.4242",
                 ".last_checkpoint.77.deadbeef.tmp"]
    kept = ["notes.tmp", "metrics.jsonl", "model_0000002.pth", POINTER, "data.json.tmp.12"]
    for name in leftovers + kept:
        if not (run_dir / name).exists():
            (run_dir / name).write_text('{"iteration": 1}\n')
    with caplog.at_level(logging.INFO, logger="detection.engine.checkpointer"):
        assert make_trainer(run_dir).resume_or_start(True) == 2
    assert not any((run_dir / n).exists() for n in leftovers)
    assert all((run_dir / n).exists() for n in kept)
    assert any("removed 4 temporary file(s) of an interrupted checkpoint write" in r.getMessage()
               for r in caplog.records)


def test_checkpointer_save_then_resume_restores_weights(tmp_path):
    cfg = load_config(QUICKSTART, TINY_MODEL)
    a, b = build_model(cfg), build_model(cfg)
    Checkpointer(str(tmp_path), a).save("model_0000001", 1)
    assert Checkpointer(str(tmp_path), b).resume()["iteration"] == 1
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_train_net_resume_with_a_missing_checkpoint_stops(tmp_path):
    spec = importlib.util.spec_from_file_location("tool_train_net", os.path.join(ROOT, "tools", "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    out = tmp_path / "out"
    out.mkdir()
    (out / POINTER).write_text("model_0000002.pth")
    with pytest.raises(CheckpointNotFoundError, match="model_0000002.pth"):
        train_net.main(["--config", QUICKSTART, "--resume", *tiny_opts(tmp_path / "data", out, 4)])
    assert not (out / "model_final.pth").exists()
