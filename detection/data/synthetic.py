"""Built-in synthetic datasets (no download), written as COCO-format json + images.

Two kinds, each with a train and a val split, generated deterministically from a seed:

* ``det``: 0-5 objects per image (about 8% of images have none) of six classes that differ by
  geometry (circle, square, triangle, cross, ring, star; colour is random and carries no class
  information), small/medium/large in COCO's area sense relative to the image size (most are
  medium or large at 256 px), rotated and slightly stretched, overlapping and occluding each other,
  on varied backgrounds (gradients, smooth noise, stripes) with clutter (lines and irregular blobs
  that are not objects) and mild pixel noise.
* ``loc``: ImageNet-LOC style: one dominant labelled object per image (sometimes a second, smaller
  one of the same class), for the localization mode.

Annotations match the pixels drawn: each object is a binary mask (no anti-aliasing), later objects
occlude earlier ones, an object with less than 40% of its mask visible is removed (and not drawn),
and the bbox is the tight bound of the *visible* mask pixels in continuous coordinates (pixels
x0..x1 -> [x0, x1 + 1)); ``area`` is the visible pixel count. Every image has its own RNG seeded by
(seed, kind, split, index), so an image does not depend on how many others are generated.

Layout of one generated set (the folder name encodes every parameter, so changing a config value
generates a new set instead of silently reusing a different one)::

    <root>/synthetic/<kind>_seed<S>_n<train>-<val>_px<size>_<fmt>/
        annotations/train.json  annotations/val.json  images/train/000001.jpg ...  meta.json
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from detection.utils.io import write_json

from .coco import coco_annotation, load_coco_json, save_coco_json
from .info import DatasetInfo

__all__ = ["SHAPES", "SyntheticSpec", "spec_from_cfg", "render_image", "generate",
           "ensure_synthetic", "load_synthetic", "synthetic_info"]

logger = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")
MIN_VISIBLE = 0.4   # objects occluded by more than 60% are removed
_SPLITS = {"train": 0, "val": 1}
_KINDS = {"det": 0, "loc": 1}
_SHIFT = 4          # cv2 sub-pixel bits for polygon/ellipse vertices


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of one synthetic set; ``image_size`` is the longer side in pixels."""

    kind: str = "det"
    num_train: int = 200
    num_val: int = 50
    image_size: int = 256
    seed: int = 0
    image_format: str = "jpg"

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"synthetic kind must be one of {list(_KINDS)}, got {self.kind!r}")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"synthetic image_format must be jpg or png, got {self.image_format!r}")
        if self.image_size < 64:
            raise ValueError(f"synthetic image_size must be at least 64, got {self.image_size}")

    @property
    def dirname(self) -> str:
        return (f"{self.kind}_seed{self.seed}_n{self.num_train}-{self.num_val}"
                f"_px{self.image_size}_{self.image_format}")


def spec_from_cfg(cfg, kind: str) -> SyntheticSpec:
    s = cfg.DATASETS.SYNTHETIC
    return SyntheticSpec(kind, s.NUM_TRAIN, s.NUM_VAL, s.IMAGE_SIZE, s.SEED, s.IMAGE_FORMAT)


# ----------------------------------------------------------------------------------------- drawing
def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices of a shape with circumradius ~1, centred at 0, as (n, 2) x, y."""
    if shape == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) / np.sqrt(2)
    if shape == "triangle":
        a = np.deg2rad([90, 210, 330])
        return np.stack([np.cos(a), -np.sin(a)], 1)
    if shape == "cross":
        t = 0.32
        return np.array([[t, 1], [t, t], [1, t], [1, -t], [t, -t], [t, -1],
                         [-t, -1], [-t, -t], [-1, -t], [-1, t], [-t, t], [-t, 1]], np.float64)
    if shape == "star":
        a = np.deg2rad(90 + 36 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), -r * np.sin(a)], 1)
    raise ValueError(shape)


def _shape_mask(shape: str, hw: tuple[int, int], cx: float, cy: float, radius: float,
                stretch: float, angle: float) -> np.ndarray:
    """Boolean (H, W) mask of one filled shape (no anti-aliasing, so the mask is exactly the pixels drawn)."""
    canvas = np.zeros(hw, np.uint8)
    sx, sy = radius * stretch, radius / stretch
    if shape in ("circle", "ring"):
        centre = (int(round(cx * 2 ** _SHIFT)), int(round(cy * 2 ** _SHIFT)))
        axes = (int(round(sx * 2 ** _SHIFT)), int(round(sy * 2 ** _SHIFT)))
        cv2.ellipse(canvas, centre, axes, np.rad2deg(angle), 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        if shape == "ring":
            inner = (int(axes[0] * 0.55), int(axes[1] * 0.55))
            cv2.ellipse(canvas, centre, inner, np.rad2deg(angle), 0, 360, 0, -1, cv2.LINE_8, _SHIFT)
    else:
        p = _unit_polygon(shape) * [sx, sy]
        c, s = np.cos(angle), np.sin(angle)
        p = p @ np.array([[c, s], [-s, c]]) + [cx, cy]
        cv2.fillPoly(canvas, [np.round(p * 2 ** _SHIFT).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return canvas.astype(bool)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 (H, W, 3): a linear gradient, smooth noise or stripes, each from random colours."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    kind = rng.integers(3)
    if kind == 1:  # smooth noise: a tiny random image upsampled
        low = rng.uniform(0, 255, (int(rng.integers(2, 10)), int(rng.integers(2, 10)), 3)).astype(np.float32)
        return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255)
    theta = rng.uniform(0, 2 * np.pi)
    xs = np.arange(w, dtype=np.float32) * np.float32(np.cos(theta) / max(h, w))
    ys = np.arange(h, dtype=np.float32) * np.float32(np.sin(theta) / max(h, w))
    proj = xs[None, :] + ys[:, None]
    if kind == 0:  # gradient
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    else:          # stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 12) * proj)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.float32)


def _clutter(rng: np.random.Generator, img: np.ndarray, scale: float) -> None:
    """Distractors that are not objects: random lines and irregular blobs, drawn in place."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 7))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, rng.uniform(0, 255, 3).tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 4))):  # amoeba-like: many vertices, so no clean corners
        r = rng.uniform(4, 16) * scale
        a = np.sort(rng.uniform(0, 2 * np.pi, 14))
        rr = r * rng.uniform(0.55, 1.0, 14)
        c = rng.uniform(r, [w - r, h - r])
        pts = np.stack([c[0] + rr * np.cos(a), c[1] + rr * np.sin(a)], 1)
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], rng.uniform(0, 255, 3).tolist(), cv2.LINE_AA)


def _sample_objects(rng: np.random.Generator, kind: str, h: int, w: int, scale: float) -> list[dict]:
    """Class, size and pose of each object, in drawing order (later ones occlude earlier ones)."""
    short = min(h, w)
    objs = []
    if kind == "det":
        n = 0 if rng.random() < 0.08 else int(rng.integers(1, 6))
        for _ in range(n):
            bucket = rng.choice(3, p=[0.2, 0.45, 0.35])  # small / medium / large
            lo, hi = [(10 * scale, 28 * scale), (36 * scale, 90 * scale), (100 * scale, 0.85 * short)][bucket]
            objs.append({"label": int(rng.integers(len(SHAPES))), "diameter": rng.uniform(lo, max(lo, hi))})
    else:
        label = int(rng.integers(len(SHAPES)))
        objs.append({"label": label, "diameter": rng.uniform(0.45, 0.9) * short})
        if rng.random() < 0.25:
            objs.append({"label": label, "diameter": rng.uniform(0.25, 0.45) * short})
    for o in objs:
        r = o["diameter"] / 2
        o["centre"] = (rng.uniform(r, w - r), rng.uniform(r, h - r))
        o["stretch"] = float(np.sqrt(rng.uniform(0.75, 1.33)))
        o["angle"] = float(rng.uniform(0, 2 * np.pi))
    return objs


def render_image(spec: SyntheticSpec, split: str, index: int) -> tuple[np.ndarray, list[dict]]:
    """Render image ``index`` of ``split``: (uint8 (H, W, 3), objects).

    Each object: {"label": int (index into SHAPES), "box": [x1, y1, x2, y2] (ints, continuous coords,
    tight bound of the visible mask), "area": visible pixel count, "mask": visible bool (H, W),
    "color": the fill colour before pixel noise}.
    """
    rng = np.random.default_rng([spec.seed, _KINDS[spec.kind], _SPLITS[split], index])
    size = spec.image_size
    short = int(round(size * rng.uniform(0.7, 1.0)))
    h, w = (short, size) if rng.random() < 0.6 else (size, short)  # mostly landscape, some portrait
    scale = size / 256.0

    img = _background(rng, h, w)
    _clutter(rng, img, scale)
    objs = _sample_objects(rng, spec.kind, h, w, scale)
    for o in objs:
        o["full"] = _shape_mask(SHAPES[o["label"]], (h, w), *o["centre"], o["diameter"] / 2, o["stretch"], o["angle"])

    # Owner of each pixel (-1 = background); objects too occluded are removed and the rest recomposed,
    # which can only make the remaining ones more visible, so one pass suffices.
    def compose(objects):
        owner = np.full((h, w), -1, np.int32)
        for k, o in enumerate(objects):
            owner[o["full"]] = k
        return owner

    owner = compose(objs)
    objs = [o for k, o in enumerate(objs) if (owner == k).sum() >= MIN_VISIBLE * max(o["full"].sum(), 1)]
    owner = compose(objs)

    out = []
    for k, o in enumerate(objs):
        visible = owner == k
        ys, xs = np.nonzero(visible)
        if len(xs) == 0:
            continue
        # pick the candidate colour farthest from what is under the object now
        under = img[visible].mean(axis=0)
        candidates = rng.uniform(0, 255, (8, 3))
        color = candidates[np.abs(candidates - under).sum(axis=1).argmax()]
        img[visible] = color
        out.append({"label": o["label"], "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                    "area": int(len(xs)), "mask": visible, "color": color})
    # mild sensor-like noise: difference of two 3-bit uniforms (triangular on -7..7, std ~3.2), far
    # cheaper than a float normal draw
    r = rng.integers(0, 256, img.shape, dtype=np.uint8)
    img += (r & 7).astype(np.float32) - ((r >> 3) & 7).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), out


# -------------------------------------------------------------------------------------- generation
def _write_split(spec: SyntheticSpec, out_dir: str, split: str, count: int) -> None:
    os.makedirs(os.path.join(out_dir, "images", split), exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if spec.image_format == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    images, annotations = [], []
    for i in range(count):
        img, objs = render_image(spec, split, i)
        rel = f"{split}/{i + 1:06d}.{spec.image_format}"
        if not cv2.imwrite(os.path.join(out_dir, "images", rel), img, params):
            raise OSError(f"cannot write {os.path.join(out_dir, 'images', rel)}")
        images.append({"id": i + 1, "file_name": rel, "height": img.shape[0], "width": img.shape[1]})
        for o in objs:
            annotations.append(coco_annotation(len(annotations) + 1, i + 1, o["label"] + 1, o["box"], area=o["area"]))
    save_coco_json(os.path.join(out_dir, "annotations", f"{split}.json"), images, annotations,
                   [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(SHAPES)],
                   {"description": f"synthetic {spec.kind} {split}", **asdict(spec)})


def generate(spec: SyntheticSpec, out_dir: str) -> str:
    """Write both splits of ``spec`` into ``out_dir`` (created; existing files overwritten)."""
    for split, count in (("train", spec.num_train), ("val", spec.num_val)):
        _write_split(spec, out_dir, split, count)
    # meta.json last: its presence marks a complete set (see ensure_synthetic)
    write_json(os.path.join(out_dir, "meta.json"), {"spec": asdict(spec), "classes": list(SHAPES)}, indent=1)
    return out_dir


def ensure_synthetic(root: str, spec: SyntheticSpec) -> str:
    """The folder of ``spec`` under ``root/synthetic``, generated first if absent.

    Safe when several processes race: each generates into its own temporary folder and renames it
    into place; a rename that finds the folder already there means another process won, and the
    temporary copy is deleted (the sets are identical, being deterministic).
    """
    parent = os.path.join(root, "synthetic")
    final = os.path.join(parent, spec.dirname)
    if os.path.isfile(os.path.join(final, "meta.json")):
        return final
    os.makedirs(parent, exist_ok=True)
    logger.info("generating the synthetic %s set (%d train + %d val images) into %s",
                spec.kind, spec.num_train, spec.num_val, final)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{spec.dirname}-", dir=parent)
    try:
        generate(spec, tmp)
        os.rename(tmp, final)
    except OSError:
        if not os.path.isfile(os.path.join(final, "meta.json")):
            raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def synthetic_info(root: str, spec: SyntheticSpec, split: str, dataset_name: str):
    """DatasetInfo of one split (generating the set first if absent, so json_file exists)."""
    folder = ensure_synthetic(root, spec)
    return DatasetInfo(dataset_name, list(SHAPES), list(range(1, len(SHAPES) + 1)),
                       "loc" if spec.kind == "loc" else "coco",
                       json_file=os.path.join(folder, "annotations", f"{split}.json"),
                       image_root=os.path.join(folder, "images"))


def load_synthetic(root: str, spec: SyntheticSpec, split: str, dataset_name: str):
    """(records, DatasetInfo) of one split, generating the set on first use."""
    folder = ensure_synthetic(root, spec)
    return load_coco_json(os.path.join(folder, "annotations", f"{split}.json"), os.path.join(folder, "images"),
                          dataset_name, evaluator_type="loc" if spec.kind == "loc" else "coco")
