"""Solver, checkpointing, resume after kill -9, DDP on gloo, non-finite loss handling."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from detection.config import load_config
from detection.engine.checkpointer import Checkpointer
from detection.engine.solver import build_optimizer, lr_factor
from detection.engine.trainer import Trainer
from detection.modeling import build_model

from tiny import TINY_MODEL, tiny_opts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def test_lr_factor_warmup_then_steps():
    # Linear warmup from 0.001 over 10 iterations, then x0.1 at 20 and 30.
    assert lr_factor(0, [20, 30], 0.1, 10, 0.001) == pytest.approx(0.001)
    assert lr_factor(5, [20, 30], 0.1, 10, 0.001) == pytest.approx(0.001 * 0.5 + 0.5)
    assert lr_factor(10, [20, 30], 0.1, 10, 0.001) == pytest.approx(1.0)
    assert lr_factor(19, [20, 30], 0.1, 10, 0.001) == pytest.approx(1.0)
    assert lr_factor(20, [20, 30], 0.1, 10, 0.001) == pytest.approx(0.1)
    assert lr_factor(35, [20, 30], 0.1, 10, 0.001) == pytest.approx(0.01)


def test_optimizer_groups_norm_decay_bias_lr_and_linear_scaling(tmp_path):
    cfg = load_config(QUICKSTART, TINY_MODEL + ["SOLVER.WEIGHT_DECAY_NORM", "0.0", "SOLVER.BIAS_LR_FACTOR", "2.0",
                                                "SOLVER.BASE_LR", "0.01", "SOLVER.SCALE_LR", "True",
                                                "SOLVER.IMS_PER_BATCH", "4", "SOLVER.REFERENCE_IMS_PER_BATCH", "16"])
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    gn = model.backbone.stem.conv1.norm
    assert group_of[id(gn.weight)]["weight_decay"] == 0.0
    conv = model.backbone.stem.conv1.weight
    assert group_of[id(conv)]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY
    assert group_of[id(conv)]["lr"] == pytest.approx(0.01 * 4 / 16)  # linear scaling
    assert group_of[id(model.rpn.head.conv.bias)]["lr"] == pytest.approx(2 * 0.01 * 4 / 16)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(group_of) == trainable


def test_checkpoint_pointer_and_rng_roundtrip(tmp_path):
    cfg = load_config(QUICKSTART, TINY_MODEL)
    model = build_model(cfg)
    ck = Checkpointer(str(tmp_path), model)
    torch.manual_seed(123)
    ck.save("model_0000007", 7, class_names=["a"])
    expected = torch.rand(5)  # what the RNG gives right after the save
    assert ck.last_checkpoint() == str(tmp_path / "model_0000007.pth")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000007.pth"]  # no temporary left behind
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    data = ck.resume()
    assert data["iteration"] == 7 and data["class_names"] == ["a"]
    assert torch.equal(torch.rand(5), expected)
    saved = torch.load(tmp_path / "model_0000007.pth", weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])


def _run_train(args, output_dir, env=None):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config", QUICKSTART, *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", **(env or {})})


def _final_weights(output_dir):
    return torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=True)["model"]


@pytest.mark.timeout(600)
def test_resume_after_kill_gives_the_same_weights(tmp_path):
    """N iterations straight vs. killed (SIGKILL) after the N/2 checkpoint and resumed."""
    n = 10
    extra = {"SOLVER.CHECKPOINT_PERIOD": n // 2, "TEST.EVAL_PERIOD": 0}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    p = _run_train(tiny_opts(tmp_path / "data", straight, n, **extra), straight)
    assert p.wait(timeout=400) == 0, p.stderr.read().decode()[-3000:]

    p = _run_train(tiny_opts(tmp_path / "data", killed, n, **extra), killed)
    half = killed / f"model_{n // 2:07d}.pth"
    deadline = time.time() + 400
    while not half.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert half.exists(), "the run never reached its first checkpoint"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (killed / "model_final.pth").exists(), "the run finished before it was killed; lengthen it"

    p = _run_train(["--resume", *tiny_opts(tmp_path / "data", killed, n, **extra)], killed)
    assert p.wait(timeout=400) == 0, p.stderr.read().decode()[-3000:]
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---- DDP: 2 processes on gloo == 1 process with the same total batch -------------------------

def _ddp_cfg(tmp, world):
    # Every anchor and RoI is sampled (no randomness in the losses) and GN has no batch statistics,
    # so the only difference between the runs is how the batch is split over processes.
    opts = tiny_opts(tmp / "data", tmp / f"out{world}", 3) + [
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "100000", "MODEL.RPN.POSITIVE_FRACTION", "1.0",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "100000", "MODEL.ROI_HEADS.POSITIVE_FRACTION", "1.0",
        "SOLVER.CHECKPOINT_PERIOD", "0", "SOLVER.WEIGHT_DECAY", "0.0",
    ]
    return load_config(QUICKSTART, opts)


def _fixed_batches():
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(3):
        batch = []
        for _ in range(2):
            image = torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8)
            xy = torch.rand(3, 2, generator=g) * 50
            batch.append({"image": image, "boxes": torch.cat([xy, xy + 20 + 20 * torch.rand(3, 2, generator=g)], 1),
                          "labels": torch.randint(0, 6, (3,), generator=g)})
        batches.append(batch)
    return batches


def _train_fixed(cfg, rank, world):
    torch.manual_seed(0)
    model = build_model(cfg)
    batches = [b[rank::world] for b in _fixed_batches()]
    trainer = Trainer(cfg, model, lambda start: iter(batches[start:]))
    trainer.events.enabled = False
    trainer.save = lambda name: None
    trainer.train()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _ddp_worker(rank, world, port, tmp):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        weights = _train_fixed(_ddp_cfg(tmp, world), rank, world)
        if rank == 0:  # a file, not a Queue: tensors in a Queue die with the process that sent them
            torch.save(weights, tmp / "ddp_weights.pth")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    torch.set_num_threads(1)
    single = _train_fixed(_ddp_cfg(tmp_path, 1), 0, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, tmp_path)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=280)
        assert p.exitcode == 0
    ddp = torch.load(tmp_path / "ddp_weights.pth", weights_only=True)
    changed = 0
    for k, v in single.items():
        assert torch.allclose(v, ddp[k], atol=1e-5, rtol=1e-4), k
        changed += 1
    assert changed > 10


def test_non_finite_loss_stops_with_iteration_and_terms(tmp_path):
    cfg = load_config(QUICKSTART, tiny_opts(tmp_path / "data", tmp_path / "out", 3))
    model = build_model(cfg)
    batches = _fixed_batches()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias.fill_(float("nan"))
    trainer = Trainer(cfg, model, lambda start: iter(batches[start:]))
    with pytest.raises(FloatingPointError, match=r"iteration 0.*loss_cls=nan"):
        trainer.train()
