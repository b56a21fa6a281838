#!/usr/bin/env python
"""Write the built-in synthetic dataset(s) (no download needed).

    python datasets/generate_synthetic.py --root datasets                      # det set, defaults
    python datasets/generate_synthetic.py --root datasets --kind loc --num-train 1000
    python datasets/generate_synthetic.py --root /tmp/x --kind both --image-size 320 --seed 3

The set lands in <root>/synthetic/<kind>_seed<S>_n<train>-<val>_px<size>_<fmt>/, exactly where
``get_dataset("synthetic_train", cfg, ...)`` looks for it with the matching DATASETS.SYNTHETIC.*
values (DATASETS.ROOT = <root>), so training finds it without generating again.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from detection.data.synthetic import SyntheticSpec, ensure_synthetic
from detection.engine.launch import HelpFormatter


def main(argv=None) -> int:
    defaults = SyntheticSpec()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--root", required=True, metavar="DIR", help="data root (DATASETS.ROOT)")
    p.add_argument("--kind", choices=("det", "loc", "both"), default="det",
                   help="det: detection set (synthetic_train/val); loc: localization set (synthetic_loc_train/val)")
    p.add_argument("--num-train", type=int, default=defaults.num_train, metavar="N",
                   help="training images (DATASETS.SYNTHETIC.NUM_TRAIN)")
    p.add_argument("--num-val", type=int, default=defaults.num_val, metavar="N",
                   help="validation images (DATASETS.SYNTHETIC.NUM_VAL)")
    p.add_argument("--image-size", type=int, default=defaults.image_size, metavar="PX",
                   help="longer side in pixels (DATASETS.SYNTHETIC.IMAGE_SIZE)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="generator seed (DATASETS.SYNTHETIC.SEED)")
    p.add_argument("--format", choices=("jpg", "png"), default=defaults.image_format,
                   help="image file format (DATASETS.SYNTHETIC.IMAGE_FORMAT)")
    args = p.parse_args(argv)
    for kind in (("det", "loc") if args.kind == "both" else (args.kind,)):
        spec = SyntheticSpec(kind, args.num_train, args.num_val, args.image_size, args.seed, args.format)
        start = time.time()
        folder = ensure_synthetic(os.path.abspath(args.root), spec)
        print(f"{kind}: {folder} ({time.time() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
