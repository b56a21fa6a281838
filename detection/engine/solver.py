"""SGD with momentum, warmup and step decay, from the SOLVER config."""
from __future__ import annotations

import bisect
import logging

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def effective_base_lr(cfg) -> float:
    """BASE_LR, scaled linearly when SCALE_LR is on and the batch differs from the reference."""
    s = cfg.SOLVER
    if s.SCALE_LR and s.IMS_PER_BATCH != s.REFERENCE_IMS_PER_BATCH:
        lr = s.BASE_LR * s.IMS_PER_BATCH / s.REFERENCE_IMS_PER_BATCH
        logger.info("linear LR scaling: %g x %d / %d = %g", s.BASE_LR, s.IMS_PER_BATCH, s.REFERENCE_IMS_PER_BATCH, lr)
        return lr
    return s.BASE_LR


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (SOLVER.SGD_IMPL) over trainable parameters; norm parameters get WEIGHT_DECAY_NORM, biases
    BIAS_LR_FACTOR."""
    s = cfg.SOLVER
    lr = effective_base_lr(cfg)
    groups = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_norm = isinstance(module, NORM_TYPES)
            is_bias = name == "bias"
            wd = s.WEIGHT_DECAY_NORM if is_norm else s.WEIGHT_DECAY
            g_lr = lr * (s.BIAS_LR_FACTOR if is_bias else 1.0)
            groups.setdefault((g_lr, wd), []).append(p)
    param_groups = [{"params": ps, "lr": g_lr, "weight_decay": wd} for (g_lr, wd), ps in groups.items()]
    return torch.optim.SGD(param_groups, lr=lr, momentum=s.MOMENTUM, **sgd_kernel(s.SGD_IMPL))


def sgd_kernel(impl: str) -> dict[str, bool]:
    """SGD's kernel flags for SOLVER.SGD_IMPL. foreach: one call per op over all parameters (torch's
    default on CUDA, not on CPU), the same arithmetic as a loop over the tensors; fused: one kernel
    per step, which rounds differently. A resumed optimizer gets them again (its state dict would
    bring back the checkpoint's)."""
    if impl not in ("foreach", "fused"):
        raise ValueError(f"SOLVER.SGD_IMPL must be 'foreach' or 'fused'; got {impl!r}")
    return {"foreach": impl == "foreach", "fused": impl == "fused"}


def lr_factor(iteration: int, steps: list[int], gamma: float, warmup_iters: int, warmup_factor: float) -> float:
    """Multiplier of the base LR at ``iteration``: linear warmup, then x gamma at each step."""
    factor = gamma ** bisect.bisect_right(sorted(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1 - alpha) + alpha
    return factor


def build_lr_scheduler(cfg, optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    s = cfg.SOLVER
    bad = [st for st in s.STEPS if st > s.MAX_ITER]
    if bad:
        logger.warning("SOLVER.STEPS %s lie beyond SOLVER.MAX_ITER %d and will never apply", bad, s.MAX_ITER)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, list(s.STEPS), s.GAMMA, s.WARMUP_ITERS, s.WARMUP_FACTOR)
    )
