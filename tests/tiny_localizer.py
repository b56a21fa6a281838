"""Shared test helper: a tiny PCR localizer config, and a localization record with a random image."""
import cv2
import numpy as np

from detection.config import load_config
from detection.data.records import make_record

K = 3


def tiny_cfg(*opts):
    return load_config(None, [
        "MODEL.META_ARCHITECTURE", "PCRLocalizer", "MODEL.WEIGHTS", "",
        "MODEL.PIXEL_MEAN", "[110.0, 110.0, 110.0]", "MODEL.PIXEL_STD", "[60.0, 60.0, 60.0]",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.GN_GROUPS", "4",
        "MODEL.RESNETS.FREEZE_AT", "0", "MODEL.RESNETS.STRIDE_IN_1X1", "False",
        "MODEL.RESNETS.STEM_OUT_CHANNELS", "8", "MODEL.PCR.HEAD_CHANNELS", "16",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[16, 24, 32, 48]", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[1.0]",
        "MODEL.PCR.NUM_CLASSES", str(K), *opts])


# the multi-scale dense test, at most 200 px
DENSE = ("INPUT.LOC_TEST_MODE", "dense", "INPUT.MAX_SIZE_TEST", "200")


def loc_record(tmp_path, h=90, w=150):
    """A random 90x150 PNG and its record."""
    path = str(tmp_path / "loc.png")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return make_record(path, 1, h, w, [[10, 20, 60, 70]], [2], [False])
