"""Golden files pinning the detector's and the localizer's behaviour, bit for bit (tests/test_relayout_parity.py).

For the tiny models of detector.yaml / localizer.yaml, single-threaded: the losses of 3 SGD steps from a stored
initial state on stored batches, the trained weights (a model_final.pth as tools/train_net.py writes it), the test
outputs on stored inputs (batched and one at a time; localizer: dense, multi-scale dense, 1-crop) and the Predictor's.
Regenerate ONLY from a commit whose behaviour is the reference: ``PYTHONPATH=. python tests/golden/make_golden.py``.
Bit-identical means the same torch build: a change of the torch pin in constraints.txt needs the files regenerated
(from the same reference commit, with the new torch).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np
import torch

from detection.data.synthetic import SHAPES, SyntheticSpec, render_image
from detection.data.transforms import center_crop_origin, resize_image, resize_shortest_edge_size
from detection.engine.checkpointer import Checkpointer
from detection.modeling import build_model
from procedure import (GOLDEN, INIT_SEED, ITERATIONS, MODELS, build, config,  # tests/golden/procedure.py
                       eval_outputs, numerics_fingerprint, path, predictor_outputs, train)


# ------------------------------------------------------------------------------------------- inputs
def _render(kind: str, split: str, index: int, size: int) -> tuple[np.ndarray, list[dict]]:
    """A synthetic image as BGR (H, W, 3) uint8 (the configs' INPUT.FORMAT) and its objects."""
    image, objects = render_image(SyntheticSpec(kind=kind, image_size=size, seed=7), split, index)
    return np.ascontiguousarray(image[:, :, ::-1]), objects


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _train_sample(kind: str, index: int, drop_boxes: bool = False) -> dict:
    image, objects = _render(kind, "train", index, 96)
    boxes = torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([o["label"] for o in objects], dtype=torch.int64)
    if drop_boxes:  # an image whose crop lost every box
        boxes, labels = boxes[:0], labels[:0]
    return {"image": _chw(image), "boxes": boxes, "labels": labels, "height": image.shape[0],
            "width": image.shape[1], "image_id": 100 + index}


def train_batches(kind: str) -> list[list[dict]]:
    """Two batches of two 96-px images of different sizes; the second holds an image with no box."""
    return [[_train_sample(kind, 0), _train_sample(kind, 1)], [_train_sample(kind, 2), _train_sample(kind, 3, True)]]


def _scaled(image: torch.Tensor, image_id: int, height: int | None, width: int | None) -> dict:
    x = {"image": image, "image_id": image_id}
    if height is not None:
        x["height"], x["width"] = height, width
    return x


def detector_inputs(batches: list[list[dict]]) -> list[dict]:
    """The training images (views: no bytes added to the files) as resized inputs whose original
    size differs from theirs (2x, per axis, smaller, absent); 0 and 3 pad to the same size and
    share a forward pass in the batched call, 2 and 4 are a 64x80 corner of a third image."""
    a, b = batches[0][0]["image"], batches[0][1]["image"]
    c = batches[1][0]["image"][:, :64, :80]
    h, w = a.shape[-2:]
    return [_scaled(a, 1, 2 * h, 2 * w), _scaled(b, 2, 150, 140), _scaled(c, 3, None, None),
            _scaled(a, 4, h + 37, w - 11), _scaled(c, 5, 50, 70)]


def localizer_inputs(cfg, batches: list[list[dict]]) -> dict[str, list[dict]]:
    """The localization mapper's test inputs, with three training images as the originals:
    ``dense`` (the whole image at LOC_TEST_SIZES[0]), ``multiscale`` (plus ``extra_scales`` at the
    other sizes) and ``one_crop`` (the centre CROP_SIZE crop of the resized image, a view, with
    ``crop_origin``/``resized_size``)."""
    short, sizes, max_size, crop = (cfg.INPUT.LOC_TEST_SIZES[0], cfg.INPUT.LOC_TEST_SIZES[1:],
                                    cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.CROP_SIZE)
    dense, multiscale, one_crop = [], [], []
    for i, x in enumerate((batches[0][0], batches[0][1], batches[1][0])):
        original = x["image"].permute(1, 2, 0).numpy()
        h, w = original.shape[:2]
        resized = _chw(resize_image(original, resize_shortest_edge_size(h, w, short, max_size)))
        sample = {"image": resized, "height": h, "width": w, "image_id": 10 + i}
        dense.append(sample)
        extra = [_chw(resize_image(original, resize_shortest_edge_size(h, w, s, max_size))) for s in sizes]
        multiscale.append({**sample, "extra_scales": extra})
        rh, rw = resized.shape[-2:]
        x0, y0 = center_crop_origin(rh, rw, crop)
        one_crop.append({"image": resized[:, y0:y0 + crop, x0:x0 + crop], "height": h, "width": w,
                         "image_id": 10 + i, "crop_origin": (x0, y0), "resized_size": (rh, rw)})
    return {"dense": dense, "multiscale": multiscale, "one_crop": one_crop}


def predictor_images(batches: list[list[dict]]) -> list[torch.Tensor]:
    """(H, W, 3) uint8 BGR views of two training images, which the test transform resizes."""
    return [batches[0][1]["image"].permute(1, 2, 0), batches[1][1]["image"].permute(1, 2, 0)]


# ------------------------------------------------------------------------------------------- writing
def save_checkpoint(model, optimizer, cfg, dest: str) -> None:
    """What tools/train_net.py leaves as OUTPUT_DIR/model_final.pth (Trainer.save), written to ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        written = Checkpointer(tmp, model, optimizer).save(
            "model_final", ITERATIONS, config=cfg.dump(), class_names=list(SHAPES),
            category_ids=list(range(1, len(SHAPES) + 1)))
        shutil.copyfile(written, dest)


def make(name: str) -> None:
    cfg = config(name)
    torch.manual_seed(INIT_SEED)
    torch.save({"model": build_model(cfg).state_dict()}, path(name, "init.pth"))
    cfg, model, _ = build(name)
    kind = "det" if name == "detector" else "loc"
    batches = train_batches(kind)
    losses, optimizer = train(model, batches)
    save_checkpoint(model, optimizer, cfg, path(name, "model_final.pth"))
    inputs = {"whole": detector_inputs(batches)} if name == "detector" else localizer_inputs(cfg, batches)
    images = predictor_images(batches)
    torch.save({"train_batches": batches, "losses": losses, "test_inputs": inputs,
                "test_outputs": {k: eval_outputs(model, v) for k, v in inputs.items()},
                "predictor_images": images,
                "predictor_outputs": predictor_outputs(cfg, path(name, "model_final.pth"), images)},
               path(name, "golden.pt"))


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    with open(os.path.join(GOLDEN, "numerics.txt"), "w", encoding="utf-8") as f:
        f.write(numerics_fingerprint() + "\n")
    for name in argv or MODELS:
        make(name)
        print(name, {f: os.path.getsize(path(name, f)) for f in ("init.pth", "model_final.pth", "golden.pt")})


if __name__ == "__main__":
    main(sys.argv[1:])
