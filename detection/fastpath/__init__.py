"""Fast inference paths: the same model, the same detections (or, for int8 and bf16, within a
measured tolerance), less time. ``prepare_for_inference`` is what ``build_test_model`` calls with
TEST.FOLD_BN, MODEL.COMPILE, TEST.PRECISION and TEST.INT8; the README's "Speed" section has the
figures of each path."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .compile import compile_parts
from .fold import fold_batchnorm
from .int8 import load_int8, quantize_int8
from .parts import Autocast, get_part, part_names, set_part

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

__all__ = ["prepare_for_inference", "fold_batchnorm", "compile_parts", "quantize_int8", "load_int8", "PRECISIONS"]


def prepare_for_inference(model: nn.Module, *, fold_bn: bool = True, compile: bool = False,
                          precision: str = "fp32", int8: str = "") -> nn.Module:
    """``model`` ready for inference with the fast paths asked for: a new eval-mode model when one
    applies (``model`` itself is left as it is, so training can go on), else ``model``.

    - ``fold_bn``: FrozenBN / eval-mode BN folded into the convolutions (same outputs up to rounding).
    - ``int8``: a directory written by ``quantize_int8`` for these weights: the trunk and res5 in int8.
    - ``precision``: "fp32", or "bf16" / "fp16" autocast over the dense parts (outputs back in fp32).
    - ``compile``: ``torch.compile`` the dense parts (frozen weights); int8 parts are always compiled.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"TEST.PRECISION must be one of {sorted(PRECISIONS)}; got {precision!r}")
    if not (fold_bn or compile or int8 or PRECISIONS[precision]):
        return model
    names = part_names(model)
    fast = copy.deepcopy(model).eval()
    for m in fast.modules():  # a training model's nn.Module.compile would still call the original's weights
        m._compiled_call_impl = None
    quantized = ()
    if int8:
        load_int8(fast, int8)
        quantized = part_names(fast, "int8_parts")
    if fold_bn:
        fold_batchnorm(fast)
    dtype = PRECISIONS[precision]
    rest = [n for n in names if n not in quantized]
    if compile:
        compile_parts(fast, inference=True, names=rest)
    if dtype is not None:
        for name in rest:
            set_part(fast, name, Autocast(get_part(fast, name), dtype, fast.device.type))
    return fast
