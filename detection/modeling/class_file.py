"""The localizer's optional class file: image-level class predictions made elsewhere."""
from __future__ import annotations

from detection.utils.io import read_json


def load_class_file(path: str) -> dict[int, list[int]]:
    """Read ``{image_id: [class indices, best first]}`` (json keys are strings)."""
    data = read_json(path, "MODEL.PCR.CLASS_FILE")
    if not isinstance(data, dict):
        raise ValueError(f"MODEL.PCR.CLASS_FILE {path}: expected a json object {{image_id: [classes]}}")
    out = {}
    for k, v in data.items():
        try:
            out[int(k)] = [int(c) for c in v]
        except (TypeError, ValueError):
            raise ValueError(f"MODEL.PCR.CLASS_FILE {path}: image {k!r}: expected an integer image id and a "
                             f"list of integer class indices, got {str(v)[:80]}") from None
    return out
