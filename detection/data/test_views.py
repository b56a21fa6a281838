"""Several views of one test image: test-time augmentation (sizes, flips) and tiles.

A view is a part of the original image (its ``region``, the whole image or a tile), resized by the
test rule and perhaps flipped left-right. The detector runs on each view as on an image of the
region's size; ``detection.modeling.meta_arch.multi_view`` maps the detections back into the whole
image and merges them.
"""
from __future__ import annotations

import math

import numpy as np

from .transforms import resize_image, resize_shortest_edge_size


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``: evenly spread, neighbours
    sharing at least ``overlap`` of a tile, the first at 0 and the last ending at ``length``."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / step) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - tile, n)})


def tile_regions(h: int, w: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of the tiles of an (h, w) image, row by row."""
    return [(x, y, min(x + tile, w), min(y + tile, h))
            for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]


class ImageViews:
    """``image (H, W, C) uint8 -> [view]``, each view a dict:

    - ``image``: the region resized (shorter side ``size``, longer at most ``max_size``), flipped if ``flip``;
    - ``region``: (x0, y0, x1, y1) in original-image pixels;
    - ``flip``: whether it was flipped left-right;
    - ``tile``: whether the region is a tile (False: the whole image).

    Views: for each size of ``sizes`` and each flip (``flips``), the whole image (without tiles, or
    with ``full_image``) and, with ``tile_size`` > 0, every tile of ``tile_size`` original pixels.
    """

    def __init__(self, sizes: list[int], max_size: int, flips: bool = False, tile_size: int = 0,
                 tile_overlap: float = 0.25, full_image: bool = True, interp: str = "bilinear"):
        if not sizes:
            raise ValueError("test views need at least one size")
        if not 0.0 <= tile_overlap < 1.0:
            raise ValueError(f"TEST.TILE.OVERLAP must be in [0, 1); got {tile_overlap}")
        if tile_size < 0:
            raise ValueError(f"TEST.TILE.SIZE must be >= 0 (0 = no tiles); got {tile_size}")
        self.sizes, self.max_size = [int(s) for s in sizes], int(max_size)
        self.flips = (False, True) if flips else (False,)
        self.tile_size, self.tile_overlap, self.full_image = int(tile_size), float(tile_overlap), full_image
        self.interp = interp

    def regions(self, h: int, w: int) -> list[tuple[tuple[int, int, int, int], bool]]:
        """(region, is a tile) of every view of one size and flip."""
        if not self.tile_size:
            return [((0, 0, w, h), False)]
        # an image that fits in one tile has no tiles: it is its own (whole) view
        tiles = [r for r in tile_regions(h, w, self.tile_size, self.tile_overlap) if r != (0, 0, w, h)]
        whole = [((0, 0, w, h), False)] if self.full_image or not tiles else []
        return whole + [(r, True) for r in tiles]

    def __call__(self, image: np.ndarray) -> list[dict]:
        h, w = image.shape[:2]
        views = []
        for size in self.sizes:
            for region, is_tile in self.regions(h, w):
                x0, y0, x1, y1 = region
                crop = image[y0:y1, x0:x1]
                resized = resize_image(crop, resize_shortest_edge_size(y1 - y0, x1 - x0, size, self.max_size),
                                       self.interp)
                for flip in self.flips:
                    views.append({"image": np.ascontiguousarray(resized[:, ::-1]) if flip else resized,
                                  "region": region, "flip": flip, "tile": is_tile})
        return views


def build_test_views(cfg) -> ImageViews | None:
    """The detector's test views from TEST.AUG and TEST.TILE; None when neither is on (one view,
    the mapper's own image)."""
    aug, tile = cfg.TEST.AUG, cfg.TEST.TILE
    if not aug.ENABLED and tile.SIZE <= 0:
        return None
    if aug.ENABLED:
        sizes, max_size, flips = list(aug.MIN_SIZES), aug.MAX_SIZE, aug.FLIP
        if not sizes:
            raise ValueError("TEST.AUG.MIN_SIZES is empty; list the test sizes (shorter sides)")
    else:
        sizes, max_size, flips = [cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST, False
    return ImageViews(sizes, max_size, flips, tile.SIZE, tile.OVERLAP, tile.FULL_IMAGE, cfg.INPUT.RESIZE_INTERP)
