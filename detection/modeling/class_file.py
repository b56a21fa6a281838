"""The localizer's optional class file: image-level class predictions made elsewhere."""
from __future__ import annotations

import json


def load_class_file(path: str) -> dict[int, list[int]]:
    """Read ``{image_id: [class indices, best first]}`` (json keys are strings)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"MODEL.PCR.CLASS_FILE {path}: cannot read it as json ({e})") from None
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
