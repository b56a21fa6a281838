#!/usr/bin/env python
"""A test set of large images with small objects, for tiled inference (README, "Tiled inference").

    python datasets/make_large_synthetic.py --output datasets/large_synthetic [--num 10] [--seed 0]
    python tools/eval.py --weights output/quickstart/model_final.pth \\
        DATASETS.TEST "['coco:datasets/large_synthetic/annotations.json:datasets/large_synthetic/images']" \\
        TEST.TILE.SIZE 320

Each image is a canvas of 1500 to 2500 px a side (smooth random background, pixel noise) with the
objects of synthetic val images (another seed than the training set's) pasted at their own size,
apart from each other: the quickstart's objects (10 to ~220 px) on images 6 to 10 times larger than
the ones it was trained on. The annotations are COCO json with the synthetic set's categories.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection.data.synthetic import SHAPES, SyntheticSpec, render_image  # noqa: E402


def canvas(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random background: a coarse colour grid upsampled, plus pixel noise."""
    coarse = rng.uniform(40, 215, size=(max(2, h // 250), max(2, w // 250), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 4, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image(index: int, seed: int, objects_per_image: int) -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng([seed, index])
    h, w = (int(v) for v in rng.integers(1500, 2501, size=2))
    img = canvas(rng, h, w)
    spec = SyntheticSpec(num_val=10 ** 6, seed=1000 + seed)
    placed: list[list[int]] = []
    source = index * 1000
    while len(placed) < objects_per_image and source < index * 1000 + 200:
        src, objs = render_image(spec, "val", source)
        source += 1
        for o in objs:
            x1, y1, x2, y2 = o["box"]
            bw, bh = x2 - x1, y2 - y1
            for _ in range(20):  # a free spot, 8 px apart from every placed box
                px, py = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                if all(px + bw + 8 <= a or a2 + 8 <= px or py + bh + 8 <= b or b2 + 8 <= py
                       for a, b, a2, b2 in (p[:4] for p in placed)):
                    break
            else:
                continue
            mask = o["mask"][y1:y2, x1:x2]
            img[py:py + bh, px:px + bw][mask] = src[y1:y2, x1:x2][mask]
            placed.append([px, py, px + bw, py + bh, o["label"], int(mask.sum())])
            if len(placed) == objects_per_image:
                break
    return img, [{"box": p[:4], "label": p[4], "area": p[5]} for p in placed]


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="datasets/large_synthetic")
    p.add_argument("--num", type=int, default=10, help="images")
    p.add_argument("--objects", type=int, default=40, help="objects per image")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.makedirs(os.path.join(args.output, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(args.num):
        img, objs = make_image(i, args.seed, args.objects)
        name = f"{i + 1:06d}.jpg"
        cv2.imwrite(os.path.join(args.output, "images", name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append({"id": i + 1, "file_name": name, "height": img.shape[0], "width": img.shape[1]})
        for o in objs:
            x1, y1, x2, y2 = o["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": o["label"] + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": o["area"], "iscrowd": 0})
    path = os.path.join(args.output, "annotations.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": k + 1, "name": n} for k, n in enumerate(SHAPES)]}, f)
    print(f"{len(images)} images, {len(annotations)} objects -> {args.output}")
    return path


if __name__ == "__main__":
    main()
