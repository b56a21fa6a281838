#!/usr/bin/env python
"""CPU inference of our C4 Faster R-CNN in every form we have, against one assembled from
torchvision's generic detection classes, in one table; training seconds per iteration below it.

    python tools/benchmark.py --settings paper            # configs/coco_r101.yaml at 600x1000
    python tools/benchmark.py --settings both --markdown bench.md --json bench.json
    python tools/benchmark.py --config configs/quickstart.yaml --size 320 400 --rows eager,compiled,onnxruntime
    python tools/benchmark.py --settings paper --device cuda --amp bf16 --rows eager,torchvision,train,train-torchvision

Every row runs in a fresh process on the same synthetic image and the same weights (random, with
FrozenBN statistics set from the image so the RPN keeps its full proposal budget; or --weights).
s/image is the median of --iters calls after --warmup; the one-time cost (folding, compiling,
calibrating, exporting, plus the first call's excess over the median) is timed apart from it.
Peak RSS is that of the timed calls (the process's peak is reset after the model is prepared).
"Eager detections within 1 px": the eager row's detections paired one to one with this row's (same label,
closest box) and counted when the box is within 1 px (meaningful with trained --weights only).
GFLOP/s = 2 x the conv and linear multiply-adds of the image (RoIs that reach res5 included) / s.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import torch

from detection.config import load_config
from detection.engine.launch import HelpFormatter, add_config_argument, add_overrides_argument, run_tool
from detection.engine.torchvision_c4 import TorchvisionC4
from detection.modeling import build_model
from detection.utils import benchmark as B
from detection.utils.benchmark import calibrate_frozen_bn, synthetic_batch
from detection.utils.io import write_json, write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {"paper": ("configs/coco_r101.yaml", (600, 1000)), "d2": ("configs/coco_r101_d2.yaml", (800, 1333))}
# row: (label, prepare_for_inference arguments); None: not a detection.fastpath row
INFERENCE_ROWS = {
    "eager": ("eager fp32 before #16", None),
    "folded": ("default: BN folded, pooling threads", dict(fold_bn=True)),
    "compiled": ("folded + compiled", dict(fold_bn=True, compile=True)),
    "bf16": ("folded, bf16", dict(fold_bn=True, precision="bf16")),
    "compiled-bf16": ("folded + compiled, bf16", dict(fold_bn=True, compile=True, precision="bf16")),
    "int8": ("int8 trunk + res5, compiled", None),
    "onnxruntime": ("ONNX Runtime (folded)", None),
    "openvino": ("OpenVINO f32 (folded)", None),
    "openvino-bf16": ("OpenVINO bf16 (folded)", None),
    "torchvision": ("torchvision assembly", None),
}
TRAIN_ROWS = {"train": "ours", "train-compiled": "ours, compiled", "train-torchvision": "torchvision assembly"}
GPU_ROWS = ("eager", "torchvision", "train", "train-compiled", "train-torchvision")


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _numpy(out: dict, label_offset: int = 0) -> tuple:
    return (out["boxes"].float().cpu().numpy(), out["scores"].float().cpu().numpy(),
            (out["labels"] - label_offset).cpu().numpy())


def prepare(row: str, model, cfg, batch, job: dict):
    """(callable () -> (boxes, scores, labels) numpy on ``batch``'s image, the module res5 runs in or
    None, preparation seconds that happened elsewhere (an ONNX export written by an earlier row))."""
    device, sample = cfg.MODEL.DEVICE, batch[0]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(job["amp"])

    def torch_runner(m, label_offset=0):
        def run():
            with torch.autocast("cuda", dtype=dtype, enabled=bool(dtype) and device.startswith("cuda")):
                return _numpy(m(batch)[0], label_offset)
        return run

    if row == "eager":  # the path before the fast paths: no folding, and RoI pooling in one call on one core
        from detection.modeling import pooler
        run_default = torch_runner(model)

        def run_before():
            saved, pooler.MIN_OUTPUTS_PER_THREAD = pooler.MIN_OUTPUTS_PER_THREAD, float("inf")
            try:
                return run_default()
            finally:
                pooler.MIN_OUTPUTS_PER_THREAD = saved

        return run_before, model.roi_heads.res5, 0.0
    if row == "torchvision":
        tv = TorchvisionC4(cfg).copy_weights(model).to(device).eval()
        return torch_runner(tv, label_offset=1), tv.model.roi_heads.box_head.res5, 0.0
    from detection.fastpath import prepare_for_inference
    if INFERENCE_ROWS[row][1] is not None:
        return torch_runner(prepare_for_inference(model, **INFERENCE_ROWS[row][1])), None, 0.0
    if row == "int8":
        from detection.fastpath.int8 import quantize_int8
        h, w = job["size"]
        calib = [synthetic_batch(1, h, w, cfg.MODEL.ROI_HEADS.NUM_CLASSES, seed=10 + i) for i in range(job["calib"])]
        out_dir = tempfile.mkdtemp(dir=job["workdir"], prefix="int8_")
        quantize_int8(model, calib, out_dir)
        return torch_runner(prepare_for_inference(model, fold_bn=True, int8=out_dir)), None, 0.0
    from detection.engine.export import export_model, load_exported
    path, elsewhere = os.path.join(job["workdir"], "model.onnx"), 0.0
    if os.path.exists(path):  # exported by an earlier row of this setting: its cost counts here too
        elsewhere = float(open(path + ".seconds").read())
    else:
        start = time.perf_counter()
        export_model(prepare_for_inference(model, fold_bn=True), sample, job["workdir"], formats=("onnx",))
        write_text(path + ".seconds", str(time.perf_counter() - start))
    runtime, precision = ("onnxruntime", "f32") if row == "onnxruntime" else ("openvino", row.partition("-")[2] or "f32")
    run = load_exported(path, threads=torch.get_num_threads(), runtime=runtime, precision=precision)
    args = (sample["image"], torch.tensor([sample["height"], sample["width"]]))
    return (lambda: run(*args)), None, elsewhere


def setting_config(job: dict):
    cfg = load_config(job["config"], job["opts"])
    # Our model takes images already resized (by the data loader); torchvision's resizes inside.
    # Giving both an image already at the target size makes torchvision's resize a no-op copy.
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = min(job["size"]), max(job["size"])
    return cfg


def reference_model(cfg, job: dict, batch):
    """Our detector with --weights, or random weights whose FrozenBN statistics come from ``batch``."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if job["weights"]:
        from detection.checkpoint import load_weights
        load_weights(model, job["weights"], cfg=cfg)
    else:
        calibrate_frozen_bn(model, batch)
    return model.eval()


def time_calls(call, iters: int, warmup: int, device: str) -> tuple[list, list]:
    """(wall seconds, CPU seconds of the process) of the ``iters`` calls after ``warmup`` untimed ones."""
    times, cpu_times = [], []
    for i in range(warmup + iters):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        call()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
    return times, cpu_times


def measure_inference(row: str, job: dict) -> dict:
    cfg = setting_config(job)
    device = cfg.MODEL.DEVICE
    batch = synthetic_batch(1, *job["size"], cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    model = reference_model(cfg, job, batch)
    start = time.perf_counter()
    with torch.no_grad():
        run, res5, elsewhere = prepare(row, model.to(device), cfg, batch, job)
    prepared_s = time.perf_counter() - start + elsewhere
    if row != "eager":
        del model
    B.release_memory()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    peak_reset = B.reset_peak_rss()
    rois = []
    hook = res5.register_forward_pre_hook(lambda m, a: rois.append(a[0].shape[0])) if res5 is not None else None
    with torch.no_grad():
        _sync(device)
        start = time.perf_counter()
        detections = run()  # the first warm-up call (compiles where there is something to compile)
        _sync(device)
        first = time.perf_counter() - start
        if hook is not None:
            hook.remove()
        times, cpu_times = time_calls(run, job["iters"], job["warmup"] - 1, device)
    median = statistics.median(times)
    one_time = None if row in ("eager", "torchvision") else prepared_s + max(0.0, first - median)
    return {"median_s": median, "times": times, "median_cpu_s": statistics.median(cpu_times), "one_time_s": one_time,
            "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda") else B.peak_rss_mib(),
            "peak_of": "timed calls" if peak_reset else "whole process", "test_rois": rois[0] if rois else None,
            "detections": [a.tolist() for a in detections]}


def measure_train(row: str, job: dict) -> dict:
    cfg = setting_config(job)
    device = cfg.MODEL.DEVICE
    batch = synthetic_batch(1, *job["size"], cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    model = reference_model(cfg, job, batch)
    if row == "train-torchvision":
        model = TorchvisionC4(cfg).copy_weights(model)
    model = model.to(device).train()
    if row == "train-compiled":  # what MODEL.COMPILE does in tools/train_net.py: the dense parts, weights not frozen
        from detection.fastpath import compile_parts
        compile_parts(model, inference=False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(job["amp"])
    scaler = torch.amp.GradScaler("cuda", enabled=job["amp"] == "fp16" and device.startswith("cuda"))
    B.release_memory()
    peak_reset = B.reset_peak_rss()

    def step():
        with torch.autocast("cuda", dtype=dtype, enabled=bool(dtype) and device.startswith("cuda")):
            loss = sum(model(batch).values())
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    start = time.perf_counter()
    step()  # the first warm-up iteration (compiles for train-compiled)
    first = time.perf_counter() - start
    times, cpu_times = time_calls(step, job["iters"], job["warmup"] - 1, device)
    median = statistics.median(times)
    return {"median_s": median, "times": times, "median_cpu_s": statistics.median(cpu_times),
            "one_time_s": max(0.0, first - median) if row == "train-compiled" else None,
            "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda") else B.peak_rss_mib(),
            "peak_of": "iterations" if peak_reset else "whole process"}


def measure(row: str, job: dict, queue) -> None:
    """One row in this (fresh) process; puts its result, or the error that stopped it, on ``queue``."""
    try:
        if job["threads"]:
            torch.set_num_threads(job["threads"])
        queue.put((measure_train if row in TRAIN_ROWS else measure_inference)(row, job))
    except Exception as e:  # noqa: BLE001 -- a row that fails is reported in the table, the others still run
        queue.put({"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"})


def run_isolated(row: str, job: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=B.call_in_file, args=(os.path.abspath(__file__), "measure", row, job, q))
    p.start()
    while p.is_alive() and q.empty():
        p.join(timeout=1)
    out = q.get() if not q.empty() else {"error": f"the process died (exit code {p.exitcode})"}
    p.join()
    return out


def add_comparisons(results: list, gflop: dict, peak: B.CpuPeak | None, ceiling: float | None) -> None:
    """Ratios to torchvision and eager, GFLOP/s and shares, detections vs eager: in each result, in place."""
    from detection.engine.export import match_detections

    for r in results:
        if r.get("error"):
            continue
        same = {x["key"]: x for x in results if x["setting"] == r["setting"] and not x.get("error")}
        r["s_per_image"] = r["median_s"]
        tv = same.get("train-torchvision" if r["kind"] == "train" else "torchvision")
        r["vs_torchvision"] = tv["median_s"] / r["median_s"] if tv else None
        if r["kind"] == "train":
            continue
        eager = same.get("eager")
        r["vs_eager"] = eager["median_s"] / r["median_s"] if eager else None
        flops = gflop.get(r["setting"])
        r["gflops"] = flops["gflop"] / r["median_s"] if flops else None
        r["peak_share"] = r["gflops"] / peak.gflops if r["gflops"] and peak and peak.gflops else None
        r["ceiling_share"] = r["gflops"] / ceiling if r["gflops"] and ceiling else None
        if eager:
            m = match_detections(eager["detections"], r["detections"])
            r.update(matched=m["close"], eager_count=m["ref"], max_box_diff=m["max_box_diff"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--settings", default="paper", choices=["paper", "d2", "both"],
                   help="paper: configs/coco_r101.yaml at 600x1000; d2: configs/coco_r101_d2.yaml at 800x1333")
    add_config_argument(p)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size (default: the setting's)")
    p.add_argument("--rows", default=",".join([*INFERENCE_ROWS, *TRAIN_ROWS]), metavar="A,B",
                   help=f"rows to run, comma-separated, among {', '.join([*INFERENCE_ROWS, *TRAIN_ROWS])}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (sets MODEL.DEVICE)")
    p.add_argument("--amp", default="", choices=["", "bf16", "fp16"], help="autocast dtype, CUDA only (default: fp32)")
    p.add_argument("--iters", type=int, default=5, metavar="N", help="timed iterations")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed iterations first (at least 1)")
    p.add_argument("--calib-batches", type=int, default=4, metavar="N", help="synthetic images calibrating int8")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="torch intra-op threads (default: 0, torch's own)")
    p.add_argument("--weights", default="", metavar="FILE", help="weights to load (default: random, calibrated)")
    p.add_argument("--flop-per-cycle", type=int, default=0, metavar="N", help="FP32 FLOP/cycle/core (default: from cpuinfo)")
    p.add_argument("--clock-ghz", type=float, default=0.0, metavar="GHZ", help="core clock (default: from cpufreq/cpuinfo)")
    p.add_argument("--json", default="", metavar="FILE", help="also write the results here (default: not written)")
    p.add_argument("--markdown", default="", metavar="FILE", help="also write the tables as markdown (default: not written)")
    add_overrides_argument(p, "MODEL.RESNETS.DEPTH 50 MODEL.RPN.POST_NMS_TOPK_TEST 1000")
    args = p.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in INFERENCE_ROWS and r not in TRAIN_ROWS]
    if unknown or not rows:
        raise ValueError(f"--rows: unknown {unknown or 'empty'}; choose among {[*INFERENCE_ROWS, *TRAIN_ROWS]}")
    gpu = args.device.startswith("cuda")
    if gpu and any(r not in GPU_ROWS for r in rows):
        raise ValueError(f"--device {args.device}: --rows must be among {GPU_ROWS} (the fast paths are for the CPU)")
    if args.iters < 1 or args.warmup < 1:
        raise ValueError(f"--iters and --warmup must be >= 1; got {args.iters}, {args.warmup}")
    for path in (args.config, args.weights):
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"no such file: {path}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config:
        settings = {os.path.splitext(os.path.basename(args.config))[0]: (args.config, None)}
    else:
        names = ["paper", "d2"] if args.settings == "both" else [args.settings]
        settings = {n: (os.path.join(ROOT, SETTINGS[n][0]), SETTINGS[n][1]) for n in names}
    opts = ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", *args.opts]
    peak = None if gpu else B.cpu_peak(args.threads, args.flop_per_cycle, args.clock_ghz)
    ceiling = None if gpu else B.conv_ceiling_gflops()
    results, gflop = [], {}
    with tempfile.TemporaryDirectory(prefix="benchmark_") as tmp:
        for name, (config, size) in settings.items():
            cfg = load_config(config, opts)
            size = tuple(args.size or size or (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST))
            setting = f"{name} {size[0]}x{size[1]}"
            job = {"config": config, "opts": opts, "size": size, "iters": args.iters, "warmup": args.warmup,
                   "amp": args.amp, "threads": args.threads, "weights": args.weights, "calib": args.calib_batches,
                   "workdir": os.path.join(tmp, name)}
            os.makedirs(job["workdir"])
            for row in rows:
                kind = "train" if row in TRAIN_ROWS else "inference"
                label = TRAIN_ROWS[row] if kind == "train" else INFERENCE_ROWS[row][0]
                r = {"setting": setting, "key": row, "row": label, "kind": kind, **run_isolated(row, job)}
                results.append(r)
                print(f"  {setting} {label}: " + (r["error"] if r.get("error") else f"{r['median_s']:.3f} s, "
                      f"peak {r['peak_mib']:.0f} MiB"), flush=True)
            rois = next((r["test_rois"] for r in results if r["setting"] == setting and r.get("test_rois")),
                        cfg.MODEL.RPN.POST_NMS_TOPK_TEST)
            gflop[setting] = B.detector_gflop(cfg, size, rois)
    if ceiling is not None:
        ceiling = max(ceiling, B.conv_ceiling_gflops())  # measured before and after: the machine may be shared
    add_comparisons(results, gflop, peak, ceiling)
    text = report(results, gflop, peak, ceiling, args, markdown=False)
    print("\n" + text)
    if args.markdown:
        write_text(args.markdown, report(results, gflop, peak, ceiling, args, markdown=True) + "\n")
    if args.json:
        write_json(args.json, {"results": results, "gflop": gflop, "peak": peak.as_dict() if peak else None,
                               "conv_ceiling_gflops": ceiling, "args": vars(args)}, indent=1)
    return results


def report(results: list, gflop: dict, peak, ceiling, args, markdown: bool) -> str:
    inference = [r for r in results if r["kind"] == "inference"]
    train = [r for r in results if r["kind"] == "train"]
    parts = []
    where = f"{args.device}{', amp ' + args.amp if args.amp else ''}, {torch.get_num_threads()} threads"
    if inference:
        parts.append(f"Inference, one image ({where}; median of {args.iters} after {args.warmup} warm-up; "
                     "vs: speed-up, the other's s/image over this row's)")
        parts.append(B.format_table(B.INFERENCE_HEADERS, [B.inference_cells(r) for r in inference], markdown))
        notes = [f"{s}: {B.describe_gflop(f)}" for s, f in gflop.items()]
        if peak:
            notes.append(peak.describe())
        if ceiling:
            notes.append(f"conv ceiling = {ceiling:.0f} GFLOP/s measured: fp32 3x3 conv {B.CEILING_SHAPE} -> "
                         f"{B.CEILING_SHAPE[1]} channels, channels-last, oneDNN (best of two, before and after)")
        notes += [f"failed: {r['setting']} {r['row']}: {r['error']}" for r in inference if r.get("error")]
        notes.append("peak RSS: of the timed calls, in a fresh process per row; one-time: preparation (fold, "
                     "compile, calibrate, export) + the first call's excess over the median")
        parts.append("\n".join(("- " if markdown else "  ") + n for n in notes))
    if train:
        parts.append(f"Training, one image per iteration ({where}; median of {args.iters} after {args.warmup} warm-up)")
        parts.append(B.format_table(B.TRAIN_HEADERS, [B.train_cells(r) for r in train], markdown))
        failed = [f"failed: {r['setting']} {r['row']}: {r['error']}" for r in train if r.get("error")]
        if failed:
            parts.append("\n".join(("- " if markdown else "  ") + n for n in failed))
    return "\n\n".join(parts)


if __name__ == "__main__":
    run_tool(main)
