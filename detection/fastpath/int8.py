"""INT8 post-training quantization of the trunk and res5 for x86 CPUs (PyTorch 2 export quantization).

    quantize_int8(model, batches, "out/int8")     # calibrate on a few hundred images, write the parts
    load_int8(model, "out/int8")                  # swap the int8 parts into a (folded) fp32 model

Each part in ``model.int8_parts`` is exported (``torch.export``, dynamic sizes), annotated by
torchao's ``X86InductorQuantizer`` (int8 activations per tensor, int8 weights per channel,
symmetric weights; convolutions fused with their bias, ReLU and residual add), calibrated by
running the whole model on ``batches`` (so res5 sees the RoIs the RPN really proposes), converted
and saved with ``torch.export.save``. Loading compiles each part with Inductor, which lowers it to
oneDNN's int8 convolutions (VNNI where the CPU has it). The RPN head, the box predictor, pooling
and post-processing stay in fp32.

Needs the optional ``torchao`` (``pip install -e .[int8]``) and a C++ compiler (Inductor). The
accuracy change on the quickstart is in the README ("Speed"); measure your own with
``tools/quantize.py --eval`` before trusting int8 on another model.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import os
import warnings

import torch
import torch.nn as nn

from detection.utils.io import read_json, write_json

from .fold import fold_batchnorm
from .parts import Compiled, capture_inputs, get_part, part_names, set_part

logger = logging.getLogger(__name__)

META_FILE = "int8.json"


def _torchao():
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq  # also registers Inductor's int8 lowerings
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise ImportError("INT8 quantization needs torchao: pip install -e .[int8]") from None
    return xiq, prepare_pt2e, convert_pt2e


def _dynamic(args: tuple) -> tuple:
    """Every dimension of every input may change except channels: images or RoIs (from 1 up),
    height and width."""
    auto = torch.export.Dim.AUTO
    return tuple({0: torch.export.Dim(f"n{i}", min=1), **{d: auto for d in range(2, a.dim())}}
                 for i, a in enumerate(args))


def _widened(args: tuple) -> tuple:
    """The example inputs with at least 2 along dim 0: export would specialise a size of 1 for good."""
    return tuple(torch.cat([a, a]) if a.shape[0] < 2 else a for a in args)


def fingerprint(model: nn.Module, names) -> str:
    """A hash of the fp32 weights of the parts ``names``: which model an int8 directory was made from."""
    h = hashlib.sha1()
    for name in names:
        for key, t in sorted(get_part(model, name).state_dict().items()):
            h.update(key.encode())
            h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def quantize_int8(model: nn.Module, batches, output_dir: str, progress=None) -> str:
    """Calibrate and quantize ``model.int8_parts`` of an fp32 CPU ``model`` on ``batches`` (an iterable
    of lists of mapper dicts, test-time mapping); write them into ``output_dir``. Returns its path.
    ``progress``: called with the number of images after each batch. ``model`` is not modified."""
    xiq, prepare_pt2e, convert_pt2e = _torchao()
    if model.device.type != "cpu":
        raise ValueError(f"INT8 quantization targets the CPU; the model is on {model.device}")
    names = part_names(model, "int8_parts")
    source = fingerprint(model, names)
    work = copy.deepcopy(model).eval()
    fold_batchnorm(work)
    batches = iter(batches)
    first = next(batches, None)
    if not first:
        raise ValueError("INT8 calibration needs at least one batch of images")
    examples = {n: _widened(a) for n, a in capture_inputs(work, names, first).items()}
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = {}
    for name in names:
        # strict: torch.export records the source of each op, which the quantizer's patterns match on
        graph = torch.export.export(get_part(work, name), examples[name], dynamic_shapes=_dynamic(examples[name]),
                                    strict=True).module()
        with warnings.catch_warnings():  # the stem's max-pool takes fp32 input by design: not worth saying
            warnings.filterwarnings("ignore", message="The input of maxpool2d is not quantized")
            prepared[name] = prepare_pt2e(graph, quantizer)
        set_part(work, name, prepared[name])
    images = 0
    with torch.no_grad():
        for batch in itertools.chain([first], batches):
            work(batch)
            images += len(batch)
            if progress:
                progress(images)
    os.makedirs(output_dir, exist_ok=True)
    files = {}
    for name in names:
        converted = convert_pt2e(prepared[name])
        program = torch.export.export(converted, examples[name], dynamic_shapes=_dynamic(examples[name]))
        files[name] = f"{name}.pt2"
        torch.export.save(program, os.path.join(output_dir, files[name]))
    import torchao
    write_json(os.path.join(output_dir, META_FILE),
               {"model": type(model).__name__, "parts": files, "calibration_images": images, "fp32_weights": source,
                "torch": torch.__version__, "torchao": torchao.__version__}, indent=1)
    logger.info("INT8: %s calibrated on %d images, written to %s", ", ".join(names), images, output_dir)
    return output_dir


def load_int8(model: nn.Module, path: str, check_weights: bool = True) -> nn.Module:
    """Replace, in place, the int8 parts of the eval-mode CPU ``model`` by those in ``path`` (written by
    ``quantize_int8`` from the same weights: checked unless ``check_weights`` is False), compiled."""
    _torchao()
    meta_path = os.path.join(path, META_FILE)
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"TEST.INT8 {path!r}: no {META_FILE} there; write one with tools/quantize.py")
    meta = read_json(meta_path)
    names = part_names(model, "int8_parts")
    if meta.get("model") != type(model).__name__ or sorted(meta.get("parts", {})) != sorted(names):
        raise ValueError(f"TEST.INT8 {path!r} holds the parts {sorted(meta.get('parts', {}))} of a "
                         f"{meta.get('model')}; this model is a {type(model).__name__} with parts {sorted(names)}")
    if model.device.type != "cpu":
        raise ValueError(f"TEST.INT8 runs on the CPU; MODEL.DEVICE is {model.device}")
    if check_weights and fingerprint(model, names) != meta.get("fp32_weights"):
        raise ValueError(f"TEST.INT8 {path!r} was quantized from other weights than MODEL.WEIGHTS: "
                         f"run tools/quantize.py again for these weights")
    for name in names:
        program = torch.export.load(os.path.join(path, meta["parts"][name])).module()
        set_part(model, name, Compiled(program))
    logger.info("INT8: %s from %s (calibrated on %d images)", ", ".join(names), path, meta["calibration_images"])
    return model
