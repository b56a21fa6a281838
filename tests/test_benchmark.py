"""tools/benchmark.py and detection/utils/benchmark.py: the CPU peak derived from cpuinfo text
(hand-computed cases), the tables, and the rows run in-process on a tiny detector (no timing asserts)."""
from __future__ import annotations

import importlib.util

import pytest

from detection.utils import benchmark as B
from tiny import QUICKSTART, TINY_MODEL
from tool_scripts import load_tool


def _cpuinfo(vendor: str, family: int, flags: str, mhz: str = "2596.130") -> str:
    block = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: test\n"
             f"cpu MHz\t\t: {mhz}\nflags\t\t: fpu sse sse2 {flags}\n")
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1")


@pytest.mark.parametrize("vendor, family, flags, expected", [
    ("GenuineIntel", 6, "avx avx2 fma avx512f avx512bw", 64),      # Xeon: two 512-bit FMA units
    ("AuthenticAMD", 25, "avx avx2 fma avx512f avx512_bf16", 32),  # Zen 4: 512-bit double-pumped on 256-bit
    ("AuthenticAMD", 26, "avx avx2 fma avx512f", 64),               # Zen 5: 512-bit datapath
    ("AuthenticAMD", 23, "avx avx2 fma", 32),                       # Zen 2: AVX2, two 256-bit FMA
    ("GenuineIntel", 6, "avx", 16),                                 # Sandy Bridge: add + mul, 256 bit
    ("GenuineIntel", 6, "", 8),                                     # SSE2 only
])
def test_flop_per_cycle_from_cpuinfo_flags_and_vendor(vendor, family, flags, expected):
    fpc, why = B.flop_per_cycle(_cpuinfo(vendor, family, flags))
    assert fpc == expected and why
    assert B.flop_per_cycle("processor : 0\nFeatures : fp\n")[0] == 0  # unknown ISA: no guess


def test_peak_is_cores_times_flop_per_cycle_times_clock():
    zen4 = _cpuinfo("AuthenticAMD", 25, "avx avx2 fma avx512f")
    assert B.clock_ghz(zen4) == (pytest.approx(2.59613), "/proc/cpuinfo cpu MHz (nominal)")
    assert B.clock_ghz(zen4, "3700000\n") == (pytest.approx(3.7), "cpufreq cpuinfo_max_freq")
    peak = B.cpu_peak(threads=1, cpuinfo=zen4, max_freq_khz="")
    assert (peak.cores, peak.flop_per_cycle) == (1, 32)
    assert peak.gflops == pytest.approx(1 * 32 * 2.59613)
    assert "1 cores x 32 FP32 FLOP/cycle" in peak.describe() and "= 83 GFLOP/s" in peak.describe()
    peak = B.cpu_peak(threads=1, flop_per_cycle_override=64, clock_ghz_override=3.7, cpuinfo=zen4, max_freq_khz="")
    assert peak.gflops == pytest.approx(64 * 3.7) and peak.isa == "--flop-per-cycle"
    assert B.cpu_peak(threads=10 ** 6, cpuinfo=zen4, max_freq_khz="").cores == B.usable_cores()


def test_padded_size_and_detector_flops_add_up():
    assert B.padded_size((600, 1000), 32) == (608, 1024) and B.padded_size((600, 1000), 0) == (600, 1000)
    from detection.config import load_config
    cfg = load_config(QUICKSTART, TINY_MODEL)
    one, ten = B.detector_gflop(cfg, (64, 96), 1), B.detector_gflop(cfg, (64, 96), 10)
    assert one["image_gflop"] == ten["image_gflop"] > 0 and one["roi_gflop"] == ten["roi_gflop"] > 0
    assert ten["gflop"] == pytest.approx(ten["image_gflop"] + 10 * ten["roi_gflop"], rel=1e-6)


def test_tables_text_and_markdown():
    row = {"setting": "paper 600x1000", "row": "eager fp32", "s_per_image": 0.5, "vs_torchvision": 1.3,
           "vs_eager": 1.0, "gflops": 1300.0, "peak_share": 0.25, "ceiling_share": 0.5, "peak_mib": 1879.4,
           "one_time_s": None, "matched": 99, "eager_count": 100, "max_box_diff": 0.00012}
    cells = B.inference_cells(row)
    assert cells == ["paper 600x1000", "eager fp32", "0.500", "2.00", "1.30x", "1.00x", "1300", "25%", "50%",
                     "1879", None, "99/100", "1.2e-04"]
    failed = B.inference_cells({"setting": "s", "row": "r", "error": "ImportError: no openvino"})
    assert failed[2] == "failed" and failed[3:] == [None] * 10
    assert B.format_table(["a", "bb", "c"], [["x", "y", 1.5], ["long", None, "10"]]) == (
        "a     bb    c\n"
        "----  --  ---\n"
        "x     y   1.5\n"
        "long  --   10")
    assert B.format_table(["a", "bb", "c"], [["x", None, 1]], markdown=True) == (
        "| a | bb | c |\n|---|---|--:|\n| x | -- | 1 |")


def test_conv_ceiling_is_a_positive_rate():
    assert B.conv_ceiling_gflops(shape=(1, 8, 8, 8), iters=1, warmup=1) > 0


def test_benchmark_rows_run_on_a_tiny_detector(tmp_path, single_thread):
    pytest.importorskip("onnxruntime")
    bench = load_tool("benchmark")
    job = {"config": QUICKSTART, "opts": ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *TINY_MODEL], "size": (64, 96),
           "iters": 1, "warmup": 1, "amp": "", "threads": 0, "weights": "", "calib": 1, "workdir": str(tmp_path)}
    results = []
    openvino = ("openvino",) if importlib.util.find_spec("openvino") else ()
    for row in ("eager", "folded", "bf16", "onnxruntime", *openvino, "torchvision", "train", "train-torchvision"):
        kind = "train" if row in bench.TRAIN_ROWS else "inference"
        r = (bench.measure_train if kind == "train" else bench.measure_inference)(row, job)
        results.append({"setting": "tiny", "key": row, "row": row, "kind": kind, **r})
    results.append({"setting": "tiny", "key": "int8", "row": "int8", "kind": "inference", "error": "skipped"})
    by = {r["key"]: r for r in results}
    assert by["eager"]["test_rois"] == 30  # the tiny config's POST_NMS_TOPK_TEST: the RPN keeps its budget
    assert by["eager"]["one_time_s"] is None and by["folded"]["one_time_s"] >= 0
    gflop = {"tiny": B.detector_gflop(bench.setting_config(job), job["size"], by["eager"]["test_rois"])}
    peak = B.CpuPeak(1, 32, 2.5, "test", "test")
    bench.add_comparisons(results, gflop, peak, 100.0)
    for key in ("folded", "onnxruntime", *openvino):  # exact paths: every detection of eager, boxes within 1e-3 px
        assert by[key]["matched"] == by[key]["eager_count"] == len(by["eager"]["detections"][0]) > 0, key
        assert by[key]["max_box_diff"] < 1e-3, key
    assert by["bf16"]["eager_count"] == by["folded"]["eager_count"]
    assert by["eager"]["vs_eager"] == 1.0 and by["torchvision"]["vs_torchvision"] == 1.0
    assert by["folded"]["vs_eager"] == pytest.approx(by["eager"]["median_s"] / by["folded"]["median_s"])
    assert by["eager"]["gflops"] == pytest.approx(gflop["tiny"]["gflop"] / by["eager"]["median_s"])
    assert by["eager"]["peak_share"] == pytest.approx(by["eager"]["gflops"] / 80.0)
    assert by["train"]["vs_torchvision"] == pytest.approx(by["train-torchvision"]["median_s"] / by["train"]["median_s"])

    class Args:
        device, amp, iters, warmup = "cpu", "", 1, 1
    text = bench.report(results, gflop, peak, 100.0, Args, markdown=False)
    assert "ONNX" not in text and "onnxruntime" in text and "failed: tiny int8: skipped" in text and "Training" in text
    assert "peak = 1 cores x 32 FP32 FLOP/cycle (test) x 2.50 GHz (test) = 80 GFLOP/s" in text
    assert bench.report(results, gflop, peak, 100.0, Args, markdown=True).count("|---|---|") == 2
