"""Image decoding with OpenCV.

``read_image(path, format)`` always returns ``np.uint8`` of shape (H, W, 3) in the requested channel
order, whatever the file holds:

* EXIF orientation is applied (OpenCV does so for every flag except IMREAD_UNCHANGED, which is why
  we read with IMREAD_ANYDEPTH | IMREAD_ANYCOLOR instead), so H, W are the *displayed* size, as in
  Detectron2 (which applies ``ImageOps.exif_transpose``).
* grayscale is replicated to 3 channels; an alpha channel is dropped (as PIL's ``convert("RGB")``).
* 16-bit images are scaled to 8-bit (value * 255 / 65535, rounded); float images are taken as 0..1.
* a missing, unreadable or undecodable file raises ``ImageReadError`` naming the file. So does a
  truncated JPEG or PNG (which libjpeg would otherwise decode with its lower part grey, with only
  a warning on stderr): a file that does not end with the format's end marker (JPEG EOI, PNG IEND)
  is decoded by Pillow, which raises on missing data, and refused if it does (data appended after
  the end marker, as in some camera files, is accepted).
* an image whose header claims more than ``max_image_pixels()`` pixels (100M by default; the
  environment variable ``DETECTION_MAX_IMAGE_PIXELS`` changes it, Pillow refuses above 179M in
  any case) raises ``ImageReadError`` before anything is decoded: a decompression bomb (a small
  file that decodes to gigabytes) cannot exhaust memory.
"""
from __future__ import annotations

import io
import os
import warnings

import cv2
import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTS", "ImageReadError", "read_image", "to_uint8_3ch", "max_image_pixels", "MAX_PIXELS_ENV"]

# The file endings read as images where a folder is listed (the demo, YOLO splits).
IMAGE_EXTS = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp")

_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR

MAX_PIXELS_ENV = "DETECTION_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000

# (signature at the start, what a complete file ends with)
_END_MARKERS = {"JPEG": (b"\xff\xd8", b"\xff\xd9"),
                "PNG": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82")}


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


def max_image_pixels() -> int:
    """The largest width * height ``read_image`` decodes: $DETECTION_MAX_IMAGE_PIXELS or 100M."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return int(value) if value else DEFAULT_MAX_PIXELS
    except ValueError:
        raise ValueError(f"${MAX_PIXELS_ENV} must be an integer number of pixels, got {value!r}") from None


def _check_header_and_end(data: bytes, path: str) -> None:
    """Refuse an image whose header claims too many pixels, or a truncated JPEG/PNG (see the module
    docstring). Files Pillow does not know are left to OpenCV."""
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"image {path} refused: {e}") from None
    except Exception:  # not a format Pillow knows (or a header it cannot parse): OpenCV decides
        return
    width, height = im.size
    if width * height > limit:
        raise ImageReadError(f"image {path} refused: its header says {width} x {height} = {width * height} pixels, "
                             f"more than the limit of {limit} (${MAX_PIXELS_ENV}); a corrupt file or a "
                             f"decompression bomb")
    start, end = _END_MARKERS.get(im.format, (None, None))
    if start is None or not data.startswith(start) or data.rstrip(b"\0").endswith(end):
        return
    try:  # no end marker: data after it (fine), or a truncated file (Pillow raises)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on broken data
        raise ImageReadError(f"image {path} is truncated or corrupt: {e}") from None


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """Decode ``path`` to uint8 (H, W, 3) in ``format`` channel order ("BGR" or "RGB")."""
    if format not in ("BGR", "RGB"):
        raise ValueError(f"image format must be BGR or RGB, got {format!r}")
    if not os.path.isfile(path):
        raise ImageReadError(f"image file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    _check_header_and_end(data, path)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS)
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
