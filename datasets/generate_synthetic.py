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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from detection.data.synthetic import SyntheticSpec, ensure_synthetic  # noqa: E402


def main(argv=None) -> int:
    defaults = SyntheticSpec()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="data root (DATASETS.ROOT)")
    p.add_argument("--kind", choices=("det", "loc", "both"), default="det",
                   help="det: detection set (synthetic_train/val); loc: localization set (synthetic_loc_train/val)")
    p.add_argument("--num-train", type=int, default=defaults.num_train)
    p.add_argument("--num-val", type=int, default=defaults.num_val)
    p.add_argument("--image-size", type=int, default=defaults.image_size, help="longer side in pixels")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--format", choices=("jpg", "png"), default=defaults.image_format)
    args = p.parse_args(argv)
    for kind in (("det", "loc") if args.kind == "both" else (args.kind,)):
        spec = SyntheticSpec(kind, args.num_train, args.num_val, args.image_size, args.seed, args.format)
        start = time.time()
        folder = ensure_synthetic(os.path.abspath(args.root), spec)
        print(f"{kind}: {folder} ({time.time() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
