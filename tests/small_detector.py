"""Shared test helper: a small C4 detector (config and build) and a synthetic scene of coloured boxes
on noise, for the RPN and whole-model tests."""
import torch

from detection.config import load_config
from detection.modeling import build_model

# A tiny ResNet-18 C4 detector: basic blocks with 16/32/64/128 channels (STEM_OUT_CHANNELS 16), so that
# training on CPU takes well under 0.1 s per iteration (16 RoIs of 6x6 per image through res5).
SMALL = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.RESNETS.GN_GROUPS", "8",
    "MODEL.RESNETS.FREEZE_AT", "0",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[32, 64, 128]",
    "MODEL.ROI_HEADS.NUM_CLASSES", "3",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION", "0.5",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "300",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "300",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "6",
    "MODEL.PIXEL_MEAN", "[128.0, 128.0, 128.0]",
    "MODEL.PIXEL_STD", "[64.0, 64.0, 64.0]",
]


def small_cfg(*opts):
    return load_config(None, SMALL + list(opts))


def small_model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(small_cfg(*opts))


BOXES = torch.tensor([[20.0, 30.0, 70.0, 90.0], [90.0, 20.0, 150.0, 60.0], [85.0, 95.0, 140.0, 145.0]])
LABELS = torch.tensor([0, 1, 2])
COLORS = torch.tensor([[255.0, 0.0, 0.0], [0.0, 255.0, 0.0], [0.0, 0.0, 255.0]])


def scene(h=160, w=160, boxes=BOXES, labels=LABELS, seed=0):
    """Noise with filled rectangles, one colour per class."""
    img = 128 + 40 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(seed))
    for b, c in zip(boxes.long(), labels):
        img[:, b[1]:b[3], b[0]:b[2]] = COLORS[c][:, None, None]
    return img.clamp(0, 255)


def train_inputs(seed=0):
    return [{"image": scene(seed=seed), "boxes": BOXES.clone(), "labels": LABELS.clone()}]
