#!/usr/bin/env python
"""Where the time of a training iteration goes: N iterations under torch.profiler.

    python tools/profile_net.py --config configs/quickstart.yaml --iters 20
    python tools/profile_net.py --config configs/coco_r101.yaml --size 600 1000 --iters 3 --warmup 1 \\
        MODEL.WEIGHTS "" SOLVER.IMS_PER_BATCH 1
    python tools/profile_net.py --config configs/quickstart.yaml --iters 0 --inference 20

Prints the ops of the profiled iterations by self CPU time (torch.profiler's key_averages) and the
share of the wall time in data loading, forward, backward (with zero_grad) and the optimizer step
(with the LR schedule), the ranges the Trainer marks with record_function. The iterations are the
Trainer's own steps (its optimizer, schedule and loss checks) on the training loader of the config,
or with --size H W on random images of that size with random boxes (no data loading: the paper's
scale without a dataset). The warm-up iterations run first, timed without the profiler: their
s/it is the figure to compare. --inference N profiles the test-mode forward on N images the same
way (the test loader of DATASETS.TEST[0], or random images with --size). Nothing is written
unless --trace FILE asks for a Chrome trace; OUTPUT_DIR is a temporary folder.

Call the file profile_net.py, not profile.py: a tools/profile.py would shadow Python's own
``profile`` module (which cProfile imports) for every script started from tools/.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from detection.checkpoint import load_weights
from detection.config import load_config
from detection.data import build_test_loader, build_train_loader
from detection.engine.classes import resolve_classes
from detection.engine.launch import HelpFormatter, add_config_argument, add_overrides_argument, run_tool
from detection.engine.trainer import Trainer
from detection.modeling import build_model, build_test_model
from detection.utils.benchmark import calibrate_frozen_bn, synthetic_batch
from detection.utils.logger import setup_logger
from detection.utils.malloc import keep_freed_memory
from detection.utils.seed import seed_all
from detection.utils.threads import log_threads

logger = logging.getLogger("detection")

PHASES = ("data", "forward", "backward", "optimizer")


def random_batches(n: int, size, num_classes: int):
    i = 0
    while True:
        yield synthetic_batch(n, size[0], size[1], num_classes, seed=i)
        i += 1


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profiled(device: torch.device):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    return profile(activities=activities)


def phase_table(prof, wall: float, iters: int) -> str:
    """The share of the wall time in each phase range (CPU time of the range: on CUDA the host
    side, which waits for the device only where the code syncs)."""
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in PHASES}
    lines = [f"{'phase':<10} {'s/it':>8} {'share':>7}"]
    for name in PHASES:
        t = totals.get(name, 0.0)
        lines.append(f"{name:<10} {t / iters:8.4f} {100 * t / wall:6.1f}%")
    rest = wall - sum(totals.values())
    lines.append(f"{'other':<10} {rest / iters:8.4f} {100 * rest / wall:6.1f}%")
    lines.append(f"{'total':<10} {wall / iters:8.4f} {100.0:6.1f}%   (under the profiler)")
    return "\n".join(lines)


def profile_training(cfg, model, args) -> None:
    device = next(model.parameters()).device
    if args.size:
        batches = random_batches(cfg.SOLVER.IMS_PER_BATCH, args.size, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    else:
        batches = iter(build_train_loader(cfg))
    trainer = Trainer(cfg, model, lambda start: batches)
    if not cfg.MODEL.WEIGHTS:
        calibrate_frozen_bn(model, synthetic_batch(1, *(args.size or (256, 256)), 1, seed=2**31 - 1))
    model.train()
    t0 = None
    for i in range(args.warmup):
        if i == 1:  # the first iteration pays for allocations and kernel choices
            synchronize(device)
            t0 = time.perf_counter()
        trainer.run_step(next(batches))
        trainer.iteration += 1
    trainer.check_losses()
    synchronize(device)
    if t0 is not None:
        logger.info("without the profiler: %.4f s/it (%d iterations after the first)",
                    (time.perf_counter() - t0) / (args.warmup - 1), args.warmup - 1)
    if args.iters <= 0:
        return
    with profiled(device) as prof:
        start = time.perf_counter()
        for _ in range(args.iters):
            with record_function("data"):
                batch = next(batches)
            trainer.run_step(batch)
            trainer.iteration += 1
        trainer.check_losses()
        synchronize(device)
        wall = time.perf_counter() - start
    report(prof, f"training, {args.iters} iterations", args)
    print(phase_table(prof, wall, args.iters))


def profile_inference(cfg, model, args) -> None:
    device = next(model.parameters()).device
    model = build_test_model(cfg, model.eval())  # what inference runs: the fast paths of the config
    if args.size:
        images = synthetic_batch(args.inference, args.size[0], args.size[1], 1, seed=0)
    else:
        loader, _, _ = build_test_loader(cfg, cfg.DATASETS.TEST[0])
        images = [x for batch in loader for x in batch][:args.inference]
    with torch.no_grad():
        model(images[:1])  # warm-up
        with profiled(device) as prof:
            start = time.perf_counter()
            for x in images:
                model([x])
            synchronize(device)
            wall = time.perf_counter() - start
    report(prof, f"inference, {len(images)} images", args)
    print(f"inference: {wall / len(images):.4f} s/image (under the profiler)")


def report(prof, what: str, args) -> None:
    sort = "self_cuda_time_total" if args.sort_cuda else "self_cpu_time_total"
    print(f"\n== {what}: ops by {sort} ==")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"Chrome trace: {args.trace}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_config_argument(p)
    p.add_argument("--iters", type=int, default=20, help="profiled training iterations (0: none)")
    p.add_argument("--warmup", type=int, default=5, help="training iterations before, timed without the profiler")
    p.add_argument("--inference", type=int, default=0, metavar="N", help="also profile inference on N images")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="random images of this size instead of the datasets (needs ROI_HEADS.NUM_CLASSES > 0)")
    p.add_argument("--rows", type=int, default=25, help="ops in each table")
    p.add_argument("--sort-cuda", action="store_true", help="sort by self CUDA time instead of self CPU time")
    p.add_argument("--trace", default="", metavar="FILE", help="write a Chrome trace of the last profile")
    add_overrides_argument(p, 'MODEL.WEIGHTS "" SOLVER.IMS_PER_BATCH 1 MODEL.CHANNELS_LAST False')
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    for name in ("iters", "warmup", "inference", "rows"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0; got {getattr(args, name)}")
    if args.size and min(args.size) < 32:
        raise ValueError(f"--size H W must be at least 32 x 32; got {args.size}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config or None, [*args.opts, "OUTPUT_DIR", tmp])
        if args.size and cfg.MODEL.ROI_HEADS.NUM_CLASSES <= 0:
            raise ValueError("--size needs MODEL.ROI_HEADS.NUM_CLASSES > 0 (there is no dataset to count them)")
        if not args.size:
            cfg, _ = resolve_classes(cfg, list(cfg.DATASETS.TRAIN), cfg.MODEL.WEIGHTS, fine_tune=True)
        setup_logger(tmp)
        log_threads()
        logger.info("glibc keeps freed memory: %s", keep_freed_memory())
        seed_all(cfg.SEED)
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            load_weights(model, cfg.MODEL.WEIGHTS, cfg=cfg, allow_partial=True)
        profile_training(cfg, model, args)
        if args.inference:
            profile_inference(cfg, model, args)


if __name__ == "__main__":
    run_tool(main)
