"""What tests/golden/make_golden.py recorded and tests/test_relayout_parity.py re-runs, the same for
both: build a golden model, train it, run it at test time, run the Predictor. Public API only."""
from __future__ import annotations

import hashlib
import os

import torch
import torch.nn.functional as F
from torchvision.ops import nms, roi_align

from detection.checkpoint import load_weights
from detection.config import load_config
from detection.engine.predictor import Predictor
from detection.modeling import build_model
from detection.utils.seed import seed_all

GOLDEN = os.path.dirname(os.path.abspath(__file__))
MODELS = ("detector", "localizer")
INIT_SEED, TRAIN_SEED = 0, 1
ITERATIONS = 3  # on batches 0, 1, 0
LR, WEIGHT_DECAY = 0.02, 1e-4


def numerics_fingerprint() -> str:
    """A hash of the bits that fixed, seeded torch ops (the kinds the golden models run: 7x7/3x3/1x1
    convolutions in NHWC, group norm, linear, RoIAlign, NMS, and a backward pass) give on this
    machine, single-threaded, with the torch version. None of this project's code is involved, so a
    code change never changes it; another CPU whose kernels round differently (AVX2 vs AVX-512,
    another oneDNN path) or another torch build does. Bit-identity is only meaningful between runs
    with the same fingerprint."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 64, 80, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
        w1, w2, w3 = (torch.randn(s, generator=g) * 0.1 for s in ((4, 3, 7, 7), (8, 4, 3, 3), (16, 8, 1, 1)))
        y = F.relu(F.group_norm(F.conv2d(x, w1, stride=2, padding=3), 2))
        y = F.conv2d(F.relu(F.conv2d(y, w2, padding=1)), w3)
        boxes = torch.tensor([[0, 2.0, 3.0, 30.0, 40.0], [1, 10.0, 5.0, 70.0, 60.0]])
        pooled = roi_align(y, boxes, (6, 6), 1 / 2, 0, aligned=True)
        out = F.linear(pooled.flatten(1), torch.randn(5, pooled[0].numel(), generator=g) * 0.01)
        out.square().sum().backward()
        keep = nms(torch.rand(50, 2, generator=g).repeat(1, 2) * 60 + torch.tensor([0, 0, 8, 8]),
                   torch.rand(50, generator=g), 0.5)
        digest = hashlib.sha256(torch.__version__.encode())
        for t in (y, pooled, out, x.grad, keep):
            digest.update(t.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]
    finally:
        torch.set_num_threads(threads)


def path(name: str, what: str) -> str:
    """tests/golden/<name>_<what>: ``init.pth``, ``model_final.pth``, ``golden.pt``."""
    return os.path.join(GOLDEN, f"{name}_{what}")


def config(name: str):
    return load_config(os.path.join(GOLDEN, f"{name}.yaml"))


def build(name: str):
    """``(cfg, model, load report)``: the model of ``<name>.yaml`` holding the stored initial weights
    (every tensor of the file used, every model tensor loaded), so that an init that depends on the
    order modules are built in does not matter."""
    cfg = config(name)
    torch.manual_seed(INIT_SEED)
    model = build_model(cfg)
    report = load_weights(model, path(name, "init.pth"))
    if not report.complete or report.dropped:
        raise AssertionError(f"{name}: initial weights do not fit: missing {report.missing}, unexpected "
                             f"{report.unexpected}, shape mismatch {report.shape_mismatch}, dropped {report.dropped}")
    return cfg, model, report


def train(model, batches: list[list[dict]]) -> tuple[list[dict[str, torch.Tensor]], torch.optim.Optimizer]:
    """``ITERATIONS`` plain SGD steps (batch i % len(batches)); the losses of each step."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0, weight_decay=WEIGHT_DECAY)
    seed_all(TRAIN_SEED)  # the anchor / proposal samplers draw from torch's global RNG
    history = []
    for it in range(ITERATIONS):
        losses = model(batches[it % len(batches)])
        total = sum(losses[k] for k in sorted(losses))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: v.detach().clone() for k, v in losses.items()})
    return history, optimizer


def eval_outputs(model, inputs: list[dict]) -> dict[str, list[dict]]:
    """Eval-mode outputs for ``inputs`` in one call and one image at a time."""
    model.eval()
    with torch.no_grad():
        return {"batched": model(inputs), "single": [model([x])[0] for x in inputs]}


def predictor_outputs(cfg, weights: str, images: list[torch.Tensor]) -> list[dict]:
    """``Predictor(cfg, weights)`` on (H, W, 3) uint8 BGR images, as tensors (and class names)."""
    predictor = Predictor(cfg, weights)
    out = []
    for im in images:
        r = predictor(im.numpy())
        out.append({"boxes": torch.from_numpy(r["boxes"]), "scores": torch.from_numpy(r["scores"]),
                    "labels": torch.from_numpy(r["labels"]), "classes": list(r["classes"])})
    return out
