"""tools/benchmark.py's inputs (a synthetic batch; FrozenBN statistics that keep random weights
in scale) and what it reports besides its timings: the CPU's FP32 peak and how it is derived,
a measured practical ceiling (one big convolution in oneDNN), the detector's FLOPs per image, the
peak resident memory of a phase of a process, and the result tables (plain text or markdown).

Peak = cores the process may use x FP32 FLOP per cycle per core x clock. FLOP per cycle is read
from the ISA flags and vendor in /proc/cpuinfo (two FMA pipes of 8 or 16 floats, 2 FLOP each):

    AVX-512, Intel                        64  (two 512-bit FMA units, Xeon server parts)
    AVX-512, AMD Zen 5 (family >= 0x1a)   64  (512-bit datapath)
    AVX-512, AMD Zen 4                    32  (double-pumped 256-bit units)
    AVX2 + FMA                            32  (two 256-bit FMA units)
    AVX without FMA                       16  (one 256-bit add + one 256-bit multiply)
    SSE2 / NEON (asimd)                   8 / 16

The clock is cpufreq's cpuinfo_max_freq when the kernel exposes it, else /proc/cpuinfo's "cpu MHz"
(a VM's nominal clock: cores that boost beyond it make the share of peak look better than it is,
hence the measured ceiling beside it).
"""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import math
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.misc import FrozenBatchNorm2d

CPUINFO, MAX_FREQ = "/proc/cpuinfo", "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
CEILING_SHAPE = (8, 256, 56, 56)  # a res3-sized 3x3 conv, 256 -> 256 channels: 3.7 GFLOP


def synthetic_batch(n: int, h: int, w: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        xy = torch.rand(8, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 32 + torch.rand(8, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(0, num_classes, (8,), generator=g)
        batch.append({"image": image, "boxes": boxes, "labels": labels, "height": h, "width": w})
    return batch


@torch.no_grad()
def calibrate_frozen_bn(model: nn.Module, batch) -> None:
    """Set every FrozenBN's statistics to those of its input on ``batch``, in forward order: with
    random weights the activations would otherwise blow up and the RPN collapse to a few proposals."""
    def set_stats(module, args):
        module.running_mean.copy_(args[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(args[0].var(dim=(0, 2, 3)))

    hooks = [m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    was_training = model.training
    model.eval()(batch)
    model.train(was_training)
    for h in hooks:
        h.remove()


def _first_processor(cpuinfo: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor block of /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def flop_per_cycle(cpuinfo: str) -> tuple[int, str]:
    """(FP32 FLOP per cycle per core, why) from /proc/cpuinfo text; (0, why) when the ISA is unknown."""
    info = _first_processor(cpuinfo)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    vendor = info.get("vendor_id", "")
    try:
        family = int(info.get("cpu family", "0"))
    except ValueError:
        family = 0
    if "avx512f" in flags:
        if vendor == "GenuineIntel":
            return 64, "AVX-512, two 512-bit FMA units (Intel server)"
        if vendor == "AuthenticAMD" and family >= 26:
            return 64, "AVX-512 on AMD Zen 5, 512-bit FMA datapath"
        if vendor == "AuthenticAMD":
            return 32, "AVX-512 on AMD Zen 4, double-pumped on two 256-bit FMA units"
        return 32, f"AVX-512 ({vendor or 'unknown vendor'}), counted as two 256-bit FMA units"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2, two 256-bit FMA units"
    if "avx" in flags:
        return 16, "AVX without FMA, a 256-bit add and a 256-bit multiply"
    if "asimd" in flags:
        return 16, "NEON, two 128-bit FMA units"
    if "sse2" in flags:
        return 8, "SSE2, a 128-bit add and a 128-bit multiply"
    return 0, "unknown ISA (pass --flop-per-cycle)"


def clock_ghz(cpuinfo: str, max_freq_khz: str | None = None) -> tuple[float, str]:
    """(clock in GHz, where it came from): cpufreq's cpuinfo_max_freq (kHz) if given, else "cpu MHz"."""
    if max_freq_khz and max_freq_khz.strip().isdigit():
        return int(max_freq_khz) / 1e6, "cpufreq cpuinfo_max_freq"
    mhz = _first_processor(cpuinfo).get("cpu MHz")
    try:
        return float(mhz) / 1e3, "/proc/cpuinfo cpu MHz (nominal)"
    except (TypeError, ValueError):
        return 0.0, "unknown clock (pass --clock-ghz)"


def usable_cores() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


@dataclass
class CpuPeak:
    cores: int
    flop_per_cycle: int
    clock_ghz: float
    isa: str
    clock_source: str

    @property
    def gflops(self) -> float:
        return self.cores * self.flop_per_cycle * self.clock_ghz

    def describe(self) -> str:
        return (f"peak = {self.cores} cores x {self.flop_per_cycle} FP32 FLOP/cycle ({self.isa}) x "
                f"{self.clock_ghz:.2f} GHz ({self.clock_source}) = {self.gflops:.0f} GFLOP/s")

    def as_dict(self) -> dict:
        return {**asdict(self), "gflops": self.gflops}


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cpu_peak(threads: int = 0, flop_per_cycle_override: int = 0, clock_ghz_override: float = 0.0,
             cpuinfo: str | None = None, max_freq_khz: str | None = None) -> CpuPeak:
    """This machine's FP32 peak for a process using ``threads`` threads (0: every usable core).
    ``cpuinfo`` / ``max_freq_khz`` default to the files of this machine."""
    if cpuinfo is None:
        cpuinfo = _read(CPUINFO) or ""
    if max_freq_khz is None:
        max_freq_khz = _read(MAX_FREQ)
    fpc, isa = flop_per_cycle(cpuinfo)
    clock, source = clock_ghz(cpuinfo, max_freq_khz)
    if flop_per_cycle_override:
        fpc, isa = flop_per_cycle_override, "--flop-per-cycle"
    if clock_ghz_override:
        clock, source = clock_ghz_override, "--clock-ghz"
    cores = usable_cores()
    return CpuPeak(min(cores, threads) if threads else cores, fpc, clock, isa, source)


@torch.no_grad()
def conv_ceiling_gflops(shape=CEILING_SHAPE, iters: int = 5, warmup: int = 2) -> float:
    """GFLOP/s of one fp32 3x3 convolution (C -> C channels, padding 1, channels-last) on the CPU,
    the median of ``iters`` calls: what oneDNN reaches on the detector's commonest layer."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(memory_format=torch.channels_last)
    weight = (torch.randn(c, c, 3, 3, generator=g) / (3 * c ** 0.5)).to(memory_format=torch.channels_last)
    times = []
    for i in range(warmup + iters):
        start = time.perf_counter()
        F.conv2d(x, weight, padding=1)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 2 * n * c * h * w * c * 9 / statistics.median(times) / 1e9


def padded_size(size, divisibility: int) -> tuple[int, int]:
    """(H, W) rounded up to a multiple of ``divisibility`` (0 or 1: unchanged), what the trunk sees."""
    d = max(1, divisibility)
    return tuple(-(-s // d) * d for s in size)


def detector_gflop(cfg, size, num_rois: int) -> dict:
    """FLOPs (2 x multiply-adds of convolutions and linear layers) of one image of ``size`` through
    the detector of ``cfg`` with ``num_rois`` RoIs reaching res5: per image, per RoI, total (GFLOP)."""
    from detection.analysis.summary import summarize_cfg  # the analysis package builds models: import late

    padded = padded_size(size, cfg.MODEL.SIZE_DIVISIBILITY)
    t = summarize_cfg(cfg, part="detector", input_size=padded, num_rois=num_rois)["totals"]
    return {"input": list(padded), "num_rois": num_rois, "image_gflop": 2 * t["macs_per_image"] / 1e9,
            "roi_gflop": 2 * t["macs_per_roi"] / 1e9, "gflop": 2 * t["macs"] / 1e9}


def describe_gflop(f: dict) -> str:
    return (f"FLOPs = 2 x MACs at {f['input'][0]}x{f['input'][1]} (padded): {f['image_gflop']:.4g} GFLOP trunk + RPN "
            f"+ {f['num_rois']} RoIs x {f['roi_gflop']:.4g} GFLOP res5 + predictor = {f['gflop']:.4g} GFLOP per image")


def call_in_file(path: str, name: str, *args):
    """``name(*args)`` of the Python file ``path`` imported as a module: the target of a spawned
    process for a function of a script (tools/ is not a package, and the script may itself have
    been imported from its file)."""
    spec = importlib.util.spec_from_file_location("benchmark_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)(*args)


def release_memory() -> None:
    """Free what Python and the C allocator hold but no longer use, so a later peak starts clean."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Restart this process's peak resident set (Linux: VmHWM) from its current size; False if the
    kernel does not allow it (the peak is then the whole process's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set of this process since start or the last ``reset_peak_rss`` (MiB)."""
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def format_table(headers: list[str], rows: list[list], markdown: bool = False) -> str:
    """Rows of cells (None: "--") under ``headers``; the first two columns left-aligned, the rest right.
    ``markdown``: a GitHub table."""
    cells = [list(headers)] + [["--" if c is None else str(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("---" if i < 2 else "--:" for i in range(len(headers))) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


INFERENCE_HEADERS = ["setting", "row", "s/image", "images/s", "vs torchvision", "vs eager", "GFLOP/s", "% peak",
                     "% conv ceiling", "peak RSS MiB", "one-time s", "eager detections within 1 px", "max box diff px"]
TRAIN_HEADERS = ["setting", "row", "s/iteration", "vs torchvision", "peak RSS MiB", "one-time s"]


def _f(value, fmt: str, suffix: str = ""):
    return None if value is None else format(value, fmt) + suffix


def inference_cells(r: dict) -> list:
    """A row of the inference table from a result dict (keys: setting, row, s_per_image, vs_torchvision,
    vs_eager, gflops, peak_share, ceiling_share, peak_mib, one_time_s, matched, eager_count, max_box_diff;
    or error: "failed", the message goes under the table). Ratios are speed-ups: the other's s/image over this row's."""
    if r.get("error"):
        return [r["setting"], r["row"], "failed"] + [None] * (len(INFERENCE_HEADERS) - 3)
    s = r["s_per_image"]
    dets = None if r.get("matched") is None else f"{r['matched']}/{r['eager_count']}"
    return [r["setting"], r["row"], _f(s, ".3f"), _f(1 / s, ".2f"), _f(r.get("vs_torchvision"), ".2f", "x"),
            _f(r.get("vs_eager"), ".2f", "x"), _f(r.get("gflops"), ".0f"), _f(r.get("peak_share"), ".0%"),
            _f(r.get("ceiling_share"), ".0%"), _f(r.get("peak_mib"), ".0f"), _f(r.get("one_time_s"), ".1f"),
            dets, _f(r.get("max_box_diff"), ".1e") if dets else None]


def train_cells(r: dict) -> list:
    if r.get("error"):
        return [r["setting"], r["row"], "failed"] + [None] * (len(TRAIN_HEADERS) - 3)
    return [r["setting"], r["row"], _f(r["s_per_image"], ".3f"), _f(r.get("vs_torchvision"), ".2f", "x"),
            _f(r.get("peak_mib"), ".0f"), _f(r.get("one_time_s"), ".1f")]
