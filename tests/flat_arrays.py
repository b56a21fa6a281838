"""Hand-made ground truth and detections as the evaluation's flat arrays (tests' shorthand)."""

import numpy as np

from detection.evaluation.voc_eval import DetArrays, GtArrays


def gt_arrays(rows) -> GtArrays:
    """rows: (image id, label, [x1, y1, x2, y2], crowd)"""
    return GtArrays(np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4),
                    np.array([r[1] for r in rows], dtype=np.int64), np.array([r[0] for r in rows], dtype=np.int64),
                    np.array([r[3] for r in rows], dtype=bool))


def det_arrays(rows) -> DetArrays:
    """rows: (image id, label, [x1, y1, x2, y2], score)"""
    return DetArrays(np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4),
                     np.array([r[3] for r in rows], dtype=np.float64), np.array([r[1] for r in rows], dtype=np.int64),
                     np.array([r[0] for r in rows], dtype=np.int64))
