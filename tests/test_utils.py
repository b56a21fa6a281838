"""The shared helpers of detection/utils: atomic writes, tensors to numpy, the seed, DDP unwrap,
COCO from a dict, the metrics.jsonl reader and the figure policy."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from detection.engine.events import EventWriter, read_metrics
from detection.engine.launch import setup
from detection.evaluation.coco_eval import outputs_to_coco_results
from detection.evaluation.voc_eval import voc_eval_arrays
from detection.utils.coco import coco_from_dict
from detection.utils.comm import unwrap_model
from detection.utils.io import atomic_write, write_json, write_text
from detection.utils.seed import resolve_seed
from detection.utils.tensors import to_numpy


# ------------------------------------------------------------------------------------ atomic write
def test_atomic_write_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"AP50": 1.0})

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write('{"AP50": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"AP50": 1.0}
    assert os.listdir(tmp_path) == ["metrics.json"]
    with pytest.raises(TypeError):  # json.dump fails half way through: a new file never appears
        write_json(tmp_path / "new.json", {"a": [1, 2, object()]})
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_write_creates_the_folder_and_replaces_text_json_and_torch_files(tmp_path):
    folder = tmp_path / "a" / "b"
    assert write_text(folder / "last_checkpoint", "model_final.pth") == str(folder / "last_checkpoint")
    write_text(folder / "last_checkpoint", "model_0000002.pth")
    assert (folder / "last_checkpoint").read_text() == "model_0000002.pth"
    write_json(folder / "x.json", [1, 2.5, None], indent=1)
    assert json.loads((folder / "x.json").read_text()) == [1, 2.5, None]
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_write(folder / "model.pth", lambda tmp: torch.save(state, tmp))
    assert torch.equal(torch.load(folder / "model.pth", weights_only=True)["w"], state["w"])
    assert sorted(os.listdir(folder)) == ["last_checkpoint", "model.pth", "x.json"]


# ----------------------------------------------------------------------------------- to numpy
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_to_numpy_upcasts_half_precision_exactly(dtype):
    x = torch.tensor([[0.1, 1.5, 300.7]], dtype=dtype, requires_grad=True)
    out = to_numpy(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.detach().float().numpy())
    out64 = to_numpy(x, np.float64)
    assert out64.dtype == np.float64 and np.array_equal(out64, out.astype(np.float64))
    assert to_numpy(torch.tensor([3, 4]), np.int64).tolist() == [3, 4]
    assert to_numpy([1.0, 2.0]).dtype == np.float64


def test_voc_and_coco_conversions_accept_bf16_outputs():
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]])
    det = torch.tensor([[12.0, 12.0, 50.0, 50.0], [0.0, 0.0, 8.0, 8.0]])
    scores = torch.tensor([0.9, 0.8])
    args = (gt, torch.tensor([0, 0]), torch.tensor([1, 1]))
    fp32 = voc_eval_arrays(*args, det, scores, torch.tensor([0, 0]), torch.tensor([1, 1]), num_classes=1)
    bf16 = voc_eval_arrays(*args, det.bfloat16(), scores.bfloat16(), torch.tensor([0, 0]), torch.tensor([1, 1]),
                           num_classes=1)
    assert bf16[0]["ap"] == fp32[0]["ap"] == pytest.approx(0.5)  # one of two boxes found first
    out = {"boxes": det.bfloat16(), "scores": scores.bfloat16(), "labels": torch.tensor([0, 0])}
    res = outputs_to_coco_results(7, out, [3])
    assert [r["bbox"] for r in res] == [[12.0, 12.0, 38.0, 38.0], [0.0, 0.0, 8.0, 8.0]]
    assert res[0]["score"] == pytest.approx(0.9, abs=4e-3) and res[0]["category_id"] == 3


# ---------------------------------------------------------------------------------------- seed
def test_resolve_seed_keeps_a_given_seed_and_draws_a_valid_one_otherwise():
    assert resolve_seed(0) == 0 and resolve_seed(1234) == 1234
    drawn = {resolve_seed(-1) for _ in range(5)}
    assert all(0 <= s < 2 ** 31 for s in drawn) and len(drawn) > 1


def test_setup_gives_model_and_data_the_same_seed_when_seed_is_negative(tmp_path):
    args = argparse.Namespace(config="", opts=["SEED", "-1", "OUTPUT_DIR", str(tmp_path)])
    cfg = setup(args)
    assert cfg.SEED >= 0  # drawn once, kept in the config (and so in config.yaml)
    assert torch.initial_seed() == cfg.SEED  # the model's initialisation (rank 0: SEED + 0)
    assert resolve_seed(cfg.SEED) == cfg.SEED  # what build_train_loader derives its streams from


def test_a_resumed_run_keeps_the_seed_its_first_start_drew(tmp_path):
    """SEED -1 draws a seed once; --resume takes it from the run's config.yaml, so the data
    stream (derived from cfg.SEED) continues instead of starting a new one."""
    first = setup(argparse.Namespace(config="", opts=["SEED", "-1", "OUTPUT_DIR", str(tmp_path)]))
    (tmp_path / "config.yaml").write_text(first.dump())
    again = setup(argparse.Namespace(config="", resume=True, opts=["SEED", "-1", "OUTPUT_DIR", str(tmp_path)]))
    assert again.SEED == first.SEED
    fresh = {setup(argparse.Namespace(config="", opts=["SEED", "-1", "OUTPUT_DIR", str(tmp_path)])).SEED
             for _ in range(3)}
    assert fresh - {first.SEED}  # without --resume a new seed is drawn
    given = setup(argparse.Namespace(config="", resume=True, opts=["SEED", "7", "OUTPUT_DIR", str(tmp_path)]))
    assert given.SEED == 7  # an explicit seed is the user's


# ------------------------------------------------------------------------------- the small rest
def test_unwrap_model_returns_the_wrapped_module_or_the_model():
    net = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(net)) is net
    assert unwrap_model(net) is net


def test_coco_from_dict_indexes_without_printing(capsys):
    coco = coco_from_dict({"images": [{"id": 4}], "categories": [{"id": 2, "name": "a"}],
                           "annotations": [{"id": 1, "image_id": 4, "category_id": 2, "bbox": [0, 0, 2, 3]}]})
    assert coco.getImgIds() == [4] and coco.getAnnIds(imgIds=[4]) == [1]
    assert capsys.readouterr().out == ""


def test_metrics_jsonl_written_then_read_and_truncated(tmp_path):
    events = EventWriter(str(tmp_path))
    for it in (1, 2, 3):
        events.write(it, {"total_loss": 1.0 / it})
    events.truncate_after(2)
    events.close()
    assert read_metrics(events.path) == [{"iteration": 1, "total_loss": 1.0}, {"iteration": 2, "total_loss": 0.5}]
    with open(events.path, "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 3"):
        read_metrics(events.path)


def test_figures_leave_the_matplotlib_backend_and_pyplot_alone(tmp_path):
    # A fresh interpreter: whether pyplot gets imported, and the backend a user chose, are process-wide.
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from detection.engine.events import plot_curves
from detection.utils.io import write_text
write_text({str(tmp_path / "m.jsonl")!r}, '{{"iteration": 1, "total_loss": 2.0, "loss_cls": 1.0}}\\n'
                                         '{{"iteration": 2, "total_loss": 1.0, "loss_cls": 0.5}}\\n')
plot_curves({str(tmp_path / "m.jsonl")!r}, {str(tmp_path / "curves.png")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["svg", "False"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
