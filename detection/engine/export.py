"""Export the detector to TorchScript or ONNX, run the exported files, and check them against eager.

    files = export_model(model, mapper, "out/", formats=("torchscript", "onnx"))
    run = load_exported("out/model.onnx")           # (3, h, w) uint8 + (2,) original size -> boxes, scores, labels
    report = parity(model, mapper, run, images)     # {"ok", "max_box_diff", "max_score_diff", ...}

What the graph holds and what stays in Python: ``detection.modeling.export.ExportableDetector``.
ONNX needs the optional ``onnx`` and ``onnxruntime`` packages (``pip install -e .[export]``); running the
ONNX file in OpenVINO (``load_exported(path, runtime="openvino")``) the optional ``openvino`` (``.[openvino]``).
"""
from __future__ import annotations

import copy
import logging
import os
import warnings

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from detection.data.synthetic import SyntheticSpec, render_image
from detection.fastpath import fold_batchnorm
from detection.modeling.export import ExportableDetector

logger = logging.getLogger(__name__)

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
ONNX_OPSET = 17  # torchvision's RoIAlign (aligned) needs >= 16
BOX_TOL, SCORE_TOL = 1e-3, 1e-4


def synthetic_images(n: int = 4, size: int = 256) -> list[np.ndarray]:
    """``n`` RGB uint8 images of the synthetic val set (rendered, nothing written), of varied sizes."""
    return [render_image(SyntheticSpec(num_val=n, image_size=size), "val", i)[0] for i in range(n)]


def _inputs(sample: dict, normalize: tuple | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The exported module's inputs for a mapper sample (normalised with ``normalize`` = (mean, std))."""
    image = sample["image"]
    if normalize is not None:
        mean, std = (torch.tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in normalize)
        image = (image.float() - mean) / std
    return image, torch.tensor([sample["height"], sample["width"]], dtype=torch.int64)


def exportable(model: torch.nn.Module, normalized_input: bool = False) -> ExportableDetector:
    """A CPU, eval-mode, contiguous-format copy of ``model`` with its BatchNorm folded into the
    convolutions (``fold_batchnorm``: fewer ops in the graph, same outputs up to rounding), wrapped
    for tracing."""
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    fold_batchnorm(model)
    return ExportableDetector(model, normalized_input).eval()


def normalizer(model) -> tuple[list[float], list[float]]:
    """(PIXEL_MEAN, PIXEL_STD) of ``model``, what a normalised-input export expects applied."""
    return model.pixel_mean.flatten().tolist(), model.pixel_std.flatten().tolist()


@torch.no_grad()
def export_model(model, example: dict, output_dir: str, formats=("torchscript", "onnx"),
                 normalized_input: bool = False) -> dict[str, str]:
    """Trace ``model`` (a FasterRCNN) on the mapper sample ``example`` and write each of ``formats``
    into ``output_dir``; returns {format: path}. The graph holds for any image size. With
    ``normalized_input`` the module takes float32 ``(image - PIXEL_MEAN) / PIXEL_STD`` instead of uint8."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"export formats must be among {sorted(FORMATS)}; got {unknown}")
    module = exportable(model, normalized_input)
    args = _inputs(example, normalizer(model) if normalized_input else None)
    os.makedirs(output_dir, exist_ok=True)
    written = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the sizes are traced on purpose
        warnings.filterwarnings("ignore", message=".*is deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript-based ONNX exporter
        # indices into the traced tensors come from topk / nonzero / nms: never negative
        warnings.filterwarnings("ignore", message=".*advanced indexing.*negative values.*")
        if "torchscript" in formats:
            path = os.path.join(output_dir, FORMATS["torchscript"])
            torch.jit.trace(module, args, check_trace=False).save(path)
            written["torchscript"] = path
        if "onnx" in formats:
            path = os.path.join(output_dir, FORMATS["onnx"])
            torch.onnx.export(module, args, path, dynamo=False, opset_version=ONNX_OPSET,
                              input_names=["image", "original_size"], output_names=["boxes", "scores", "labels"],
                              dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                                            "scores": {0: "detections"}, "labels": {0: "detections"}})
            written["onnx"] = path
    for fmt, path in written.items():
        logger.info("exported %s: %s (%.1f MB)", fmt, path, os.path.getsize(path) / 2 ** 20)
    return written


RUNTIMES = ("auto", "torchscript", "onnxruntime", "openvino")
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")


def load_exported(path: str, threads: int | None = None, runtime: str = "auto", precision: str = "f32"):
    """A callable ``(image (3, h, w) tensor, original_size (2,) int64 tensor) -> (boxes, scores,
    labels)`` numpy arrays, for a ``model.ts`` (TorchScript, in PyTorch) or ``model.onnx``
    (``runtime`` "onnxruntime", the default for .onnx, or "openvino": compiled for OpenVINO's "CPU"
    device with ``INFERENCE_PRECISION_HINT`` = ``precision``, f32 / bf16 / f16)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
    is_onnx = path.endswith(".onnx")
    if runtime == "auto":
        runtime = "onnxruntime" if is_onnx else "torchscript"
    if (runtime == "torchscript") == is_onnx:
        raise ValueError(f"runtime {runtime!r} cannot run {path!r} (.onnx: onnxruntime or openvino; .ts: torchscript)")
    if runtime == "openvino":
        return _load_openvino(path, threads, precision)
    if runtime == "onnxruntime":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("running an ONNX export needs onnxruntime: pip install -e .[export]") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def run_onnx(image, original_size):
            return tuple(session.run(None, {"image": image.numpy(), "original_size": original_size.numpy()}))

        return run_onnx
    module = torch.jit.load(path, map_location="cpu").eval()

    @torch.no_grad()
    def run_torchscript(image, original_size):
        return tuple(t.numpy() for t in module(image, original_size))

    return run_torchscript


def _load_openvino(path: str, threads: int | None, precision: str):
    """The ONNX file compiled by OpenVINO for its "CPU" device (dynamic image size)."""
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {OPENVINO_PRECISIONS}; got {precision!r}")
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("running an ONNX export in OpenVINO needs openvino: pip install -e .[openvino]") from None
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in ("boxes", "scores", "labels")]

    def run_openvino(image, original_size):
        result = request.infer({"image": image.numpy(), "original_size": original_size.numpy()})
        return tuple(result[o] for o in outputs)

    return run_openvino


def match_detections(ref: tuple, got: tuple, close_px: float = 1.0) -> dict:
    """Pair two detection sets (boxes, scores, labels) one to one, same label, closest boxes
    (Hungarian assignment on the largest coordinate difference); the differences of the pairs, and
    how many pairs are within ``close_px`` pixels (``close``)."""
    rb, rs, rl = (np.asarray(a) for a in ref)
    gb, gs, gl = (np.asarray(a) for a in got)
    out = {"ref": len(rb), "got": len(gb), "matched": 0, "close": 0, "max_box_diff": 0.0, "max_score_diff": 0.0}
    if len(rb) and len(gb):
        cost = np.abs(rb[:, None, :].astype(np.float64) - gb[None, :, :]).max(-1)
        cost[rl[:, None] != gl[None, :]] = 1e9
        r, g = linear_sum_assignment(cost)
        r, g = r[cost[r, g] < 1e9], g[cost[r, g] < 1e9]
        out.update(matched=len(r), close=int((cost[r, g] <= close_px).sum()), max_box_diff=float(cost[r, g].max(initial=0.0)),
                   max_score_diff=float(np.abs(rs[r].astype(np.float64) - gs[g]).max(initial=0.0)))
    return out


@torch.no_grad()
def parity(model, mapper, run, images: list[np.ndarray], box_tol: float = BOX_TOL, score_tol: float = SCORE_TOL,
           normalized_input: bool = False) -> dict:
    """Eager ``model`` (its own batched test path) vs an exported ``run`` on RGB ``images`` mapped by
    ``mapper``: every detection matched (same label), boxes within ``box_tol`` px, scores within
    ``score_tol``. Returns the totals and ``ok``; the per-image rows are under ``images``."""
    model.eval()
    rows = []
    for image in images:
        sample = mapper.map_image(image)
        out = model([sample])[0]
        ref = (out["boxes"].cpu().numpy(), out["scores"].cpu().numpy(), out["labels"].cpu().numpy())
        rows.append(match_detections(ref, run(*_inputs(sample, normalizer(model) if normalized_input else None))))
    total = {k: sum(r[k] for r in rows) for k in ("ref", "got", "matched")}
    total["max_box_diff"] = max((r["max_box_diff"] for r in rows), default=0.0)
    total["max_score_diff"] = max((r["max_score_diff"] for r in rows), default=0.0)
    total["ok"] = (total["ref"] == total["got"] == total["matched"] and total["max_box_diff"] <= box_tol
                   and total["max_score_diff"] <= score_tol)
    total["images"] = rows
    return total


def describe_parity(name: str, report: dict) -> str:
    return (f"{name}: {'OK' if report['ok'] else 'MISMATCH'} on {len(report['images'])} images: "
            f"{report['matched']}/{report['ref']} eager detections matched ({report['got']} exported), "
            f"max box difference {report['max_box_diff']:.2e} px, max score difference {report['max_score_diff']:.2e}")
