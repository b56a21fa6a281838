"""pycocotools glue shared by the data and evaluation code."""
from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools ``COCO`` indexed over an already loaded COCO-format dict (not copied);
    pycocotools' progress prints are swallowed."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
