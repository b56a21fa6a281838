"""Drawing boxes on images, and contact sheets (OpenCV, BGR uint8 images)."""
from __future__ import annotations

import cv2
import numpy as np


def color_for(label: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(label * 7919 + 17)  # a stable colour per class
    return tuple(int(c) for c in rng.integers(40, 230, size=3))


def draw_boxes(image_bgr: np.ndarray, boxes, captions: list[str], colors: list[tuple[int, int, int]],
               thickness: list[int] | None = None) -> np.ndarray:
    """A copy of the image with ``boxes`` ((N, 4) xyxy pixels of this image) drawn, each with
    its colour (BGR) and, when not empty, its caption on a filled label."""
    out = image_bgr.copy()
    base_thick = max(1, round(min(out.shape[:2]) / 300))
    for k, (box, text, color) in enumerate(zip(boxes, captions, colors)):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        thick = base_thick if thickness is None else thickness[k]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        if not text:
            continue
        scale = 0.4 * base_thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - 4 >= 0 else y1 + th + 2
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 2), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def draw_detections(image_bgr: np.ndarray, detections: list[dict]) -> np.ndarray:
    """Boxes with "class score" captions; ``detections`` as written by tools/demo.py."""
    return draw_boxes(image_bgr, [d["box"] for d in detections],
                      [f"{d['class']} {d['score']:.2f}" for d in detections],
                      [color_for(d["label"]) for d in detections])


def contact_sheet(images: list[np.ndarray], captions: list[str], cell: int = 256, cols: int = 4) -> np.ndarray:
    """The images scaled to fit ``cell`` x ``cell`` squares, ``cols`` per row, each captioned."""
    rows = max(1, -(-len(images) // cols))
    sheet = np.full((rows * (cell + 18), cols * cell, 3), 255, dtype=np.uint8)
    for k, (img, text) in enumerate(zip(images, captions)):
        h, w = img.shape[:2]
        s = cell / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        y, x = r * (cell + 18), c * cell
        sheet[y:y + small.shape[0], x:x + small.shape[1]] = small
        cv2.putText(sheet, text, (x + 2, y + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
