"""Drawing detections on an image (OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np


def color_for(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label * 7919 + 17)  # a stable colour per class
    return tuple(int(c) for c in rng.integers(40, 230, size=3))


def draw_detections(image_bgr: np.ndarray, detections: list[dict]) -> np.ndarray:
    """Boxes with "class score" captions; ``detections`` as written by tools/demo.py."""
    out = image_bgr.copy()
    thick = max(1, round(min(out.shape[:2]) / 300))
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d["box"])
        color = color_for(d["label"])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        text = f"{d['class']} {d['score']:.2f}"
        scale = 0.4 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - 4 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
