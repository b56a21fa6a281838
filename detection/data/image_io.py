"""Image decoding with OpenCV.

``read_image(path, format)`` always returns ``np.uint8`` of shape (H, W, 3) in the requested channel
order, whatever the file holds:

* EXIF orientation is applied (OpenCV does so for every flag except IMREAD_UNCHANGED, which is why
  we read with IMREAD_ANYDEPTH | IMREAD_ANYCOLOR instead), so H, W are the *displayed* size, as in
  Detectron2 (which applies ``ImageOps.exif_transpose``).
* grayscale is replicated to 3 channels; an alpha channel is dropped (as PIL's ``convert("RGB")``).
* 16-bit images are scaled to 8-bit (value * 255 / 65535, rounded); float images are taken as 0..1.
* a missing, unreadable or undecodable file raises ``ImageReadError`` naming the file.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

__all__ = ["ImageReadError", "read_image", "to_uint8_3ch"]

_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


class ImageReadError(OSError):
    """An image file is missing, unreadable or corrupt (the message names the file)."""


def to_uint8_3ch(img: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded array (H,W), (H,W,1), (H,W,3) or (H,W,4), of any depth -> uint8 (H,W,3) BGR."""
    if img.dtype == np.uint16:
        img = ((img.astype(np.float32) * (255.0 / 65535.0)) + 0.5).astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        img = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 4:
        img = img[:, :, :3]
    elif channels != 3:
        raise ValueError(f"unsupported channel count {channels}")
    return np.ascontiguousarray(img)


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """Decode ``path`` to uint8 (H, W, 3) in ``format`` channel order ("BGR" or "RGB")."""
    if format not in ("BGR", "RGB"):
        raise ValueError(f"image format must be BGR or RGB, got {format!r}")
    if not os.path.isfile(path):
        raise ImageReadError(f"image file not found: {path}")
    try:
        img = cv2.imread(path, _FLAGS)
    except cv2.error as e:  # OpenCV raises for some malformed headers instead of returning None
        raise ImageReadError(f"cannot decode image {path}: {e}") from None
    if img is None or img.size == 0:
        raise ImageReadError(f"cannot decode image {path} (corrupt, truncated or not an image)")
    try:
        img = to_uint8_3ch(img)
    except ValueError as e:
        raise ImageReadError(f"cannot convert image {path}: {e}") from None
    if format == "RGB":
        img = np.ascontiguousarray(img[:, :, ::-1])
    return img
