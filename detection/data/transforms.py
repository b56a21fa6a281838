"""Geometric and photometric transforms, as albumentations transforms.

Boxes go through albumentations as ``pascal_voc`` (xyxy pixels, continuous coordinates, the same
convention as our records). Internally albumentations keeps boxes normalised by the image size in
float32, so resize does not move them, a flip maps x1' = W - x2 and a crop shifts them; results are
exact up to float32 rounding. Boxes are clipped to the image after every step and boxes narrower or
shorter than ``MIN_BOX_SIDE`` pixels are dropped (the caller counts them through the ``box_index``
label field).

Randomness: a pipeline draws every random decision from ONE numpy Generator + python Random pair,
reset per image by ``reseed(compose, seed)``; so an image's augmentation is a function of its seed only.
(Compose.set_random_seed would give each transform its own identically seeded generator, making the
flip decision correlated with the resize choice.)
"""
from __future__ import annotations

import os
import random

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise queries PyPI on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from albumentations.augmentations.crops.transforms import BaseCrop  # noqa: E402

__all__ = ["MIN_BOX_SIDE", "INTERPOLATIONS", "resize_shortest_edge_size", "resize_image",
           "ResizeShortestEdge", "SquareCrop", "center_crop_origin", "reseed",
           "build_train_augmentation", "build_test_augmentation",
           "build_extra_scales_transform"]

MIN_BOX_SIDE = 1e-5  # Detectron2's filter_empty_instances threshold: only truly degenerate boxes go
INTERPOLATIONS = ("bilinear", "pil_bilinear")


def resize_shortest_edge_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """(newh, neww) of Detectron2's ResizeShortestEdge.get_output_shape, bit for bit.

    ``short`` <= 0 means no resize (as in Detectron2 with MIN_SIZE_TEST = 0).
    """
    if short <= 0:
        return h, w
    scale = short * 1.0 / min(h, w)
    if h < w:
        newh, neww = short, scale * w
    else:
        newh, neww = scale * h, short
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def resize_image(img: np.ndarray, size: tuple[int, int], interp: str = "bilinear") -> np.ndarray:
    """Resize uint8 (H, W, C) to ``size`` = (newh, neww).

    "bilinear": cv2.INTER_LINEAR. "pil_bilinear": PIL's Image.resize(BILINEAR) on the uint8 array,
    exactly what Detectron2's ResizeTransform does (PIL filters with a support that grows with the
    downscale factor, so it differs from OpenCV's bilinear when shrinking).
    """
    newh, neww = size
    if (newh, neww) == img.shape[:2]:
        return img
    if interp == "bilinear":
        return cv2.resize(img, (neww, newh), interpolation=cv2.INTER_LINEAR)
    if interp == "pil_bilinear":
        return np.asarray(Image.fromarray(img).resize((neww, newh), Image.BILINEAR))
    raise ValueError(f"INPUT.RESIZE_INTERP must be one of {INTERPOLATIONS}, got {interp!r}")


class ResizeShortestEdge(A.DualTransform):
    """Resize so the shorter side is one of ``short_edges`` (picked at random) and the longer side
    at most ``max_size``, by Detectron2's rounding rule. Boxes (normalised) need no change."""

    def __init__(self, short_edges, max_size: int, interp: str = "bilinear", p: float = 1.0):
        super().__init__(p=p)
        if interp not in INTERPOLATIONS:
            raise ValueError(f"INPUT.RESIZE_INTERP must be one of {INTERPOLATIONS}, got {interp!r}")
        self.short_edges = [int(s) for s in (short_edges if isinstance(short_edges, (list, tuple)) else [short_edges])]
        self.max_size = int(max_size)
        self.interp = interp

    def get_params_dependent_on_data(self, params, data):
        h, w = params["shape"][:2]
        short = self.short_edges[0] if len(self.short_edges) == 1 else self.py_random.choice(self.short_edges)
        return {"new_size": resize_shortest_edge_size(h, w, short, self.max_size)}

    def apply(self, img, new_size=None, **params):
        return resize_image(img, new_size, self.interp)

    def apply_to_bboxes(self, bboxes, **params):
        return bboxes

    def get_transform_init_args_names(self):
        return ("short_edges", "max_size", "interp")


def center_crop_origin(h: int, w: int, size: int) -> tuple[int, int]:
    """Top-left (x0, y0) of the centred ``size`` square crop of an (h, w) image (clamped to the image)."""
    return max(0, (w - size) // 2), max(0, (h - size) // 2)


class SquareCrop(BaseCrop):
    """A ``size`` x ``size`` crop, at a random position or centred. An image smaller than ``size``
    along a side keeps that whole side (no padding: the model pads anyway)."""

    def __init__(self, size: int, center: bool = False, p: float = 1.0):
        super().__init__(p=p)
        self.size, self.center = int(size), bool(center)

    def get_params_dependent_on_data(self, params, data):
        h, w = params["shape"][:2]
        if self.center:
            x0, y0 = center_crop_origin(h, w, self.size)
        else:
            x0 = self.py_random.randint(0, max(0, w - self.size))
            y0 = self.py_random.randint(0, max(0, h - self.size))
        return {"crop_coords": (x0, y0, min(w, x0 + self.size), min(h, y0 + self.size))}

    def get_transform_init_args_names(self):
        return ("size", "center")


def _compose(transforms) -> A.Compose:
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["box_index"], clip=True,
                               min_width=MIN_BOX_SIDE, min_height=MIN_BOX_SIDE, filter_invalid_bboxes=True)
    return A.Compose(transforms, bbox_params=bbox_params)


def reseed(compose: A.Compose, seed: int) -> None:
    """Make the next call of ``compose`` a deterministic function of ``seed`` (one shared stream)."""
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))


def build_train_augmentation(cfg, loc: bool = False) -> A.Compose:
    """Training pipeline, on RGB uint8 images.

    Detection: ResizeShortestEdge(MIN_SIZE_TRAIN choice, MAX_SIZE_TRAIN) -> flip (RANDOM_FLIP)
    -> photometric (PHOTOMETRIC). Localization: the same resize (set MIN_SIZE_TRAIN to the scale
    range, e.g. [256..480]) -> random CROP_SIZE square crop -> flip -> photometric.
    """
    inp = cfg.INPUT
    t = [ResizeShortestEdge(inp.MIN_SIZE_TRAIN, inp.MAX_SIZE_TRAIN, inp.RESIZE_INTERP)]
    if loc:
        t.append(SquareCrop(inp.CROP_SIZE, center=False))
    if inp.RANDOM_FLIP:
        t.append(A.HorizontalFlip(p=0.5))
    if inp.PHOTOMETRIC:
        # brightness/contrast/saturation in [0.8, 1.2], small hue shift; needs RGB input (hence RGB here)
        t.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.8))
    return _compose(t)


def build_test_augmentation(cfg, loc: bool = False) -> A.Compose:
    """Test pipeline (deterministic). Detection: ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST).
    Localization: resize the shorter side to LOC_TEST_SIZES[0] (longer side <= MAX_SIZE_TEST), then
    for LOC_TEST_MODE "1-crop" a centred CROP_SIZE crop; "dense" keeps the whole image (further
    LOC_TEST_SIZES of a dense test: ``build_extra_scales_transform``; 1-crop takes exactly one size)."""
    inp = cfg.INPUT
    if not loc:
        return _compose([ResizeShortestEdge(inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, inp.RESIZE_INTERP)])
    if inp.LOC_TEST_MODE not in ("1-crop", "dense"):
        raise ValueError(f"INPUT.LOC_TEST_MODE must be 1-crop or dense, got {inp.LOC_TEST_MODE!r}")
    if inp.LOC_TEST_MODE == "1-crop" and len(inp.LOC_TEST_SIZES) != 1:
        raise ValueError(f"INPUT.LOC_TEST_SIZES {list(inp.LOC_TEST_SIZES)}: the 1-crop test takes one size "
                         "(the centre crop of one resized image); give one, or use INPUT.LOC_TEST_MODE dense "
                         "to test the whole image at several sizes")
    t = [ResizeShortestEdge(inp.LOC_TEST_SIZES[0], inp.MAX_SIZE_TEST, inp.RESIZE_INTERP)]
    if inp.LOC_TEST_MODE == "1-crop":
        t.append(SquareCrop(inp.CROP_SIZE, center=True))
    return _compose(t)


def build_extra_scales_transform(cfg, loc: bool = False):
    """``image ndarray (H, W, C) uint8 -> [transformed ndarrays]``: for the dense localization test,
    the whole image resized to each of LOC_TEST_SIZES[1:] by the rule and interpolation of the first
    size (``build_test_augmentation``); an empty list for anything else. Channel order is preserved."""
    inp = cfg.INPUT
    sizes = [int(s) for s in inp.LOC_TEST_SIZES[1:]] if loc and inp.LOC_TEST_MODE == "dense" else []

    def transform(image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        return [resize_image(image, resize_shortest_edge_size(h, w, s, int(inp.MAX_SIZE_TEST)), inp.RESIZE_INTERP)
                for s in sizes]

    return transform
