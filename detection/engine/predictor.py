"""Inference from Python: config + weights -> image array -> boxes, scores, labels."""
from __future__ import annotations

import numpy as np
import torch

from detection.checkpoint import load_weights
from detection.data import DatasetMapper, get_dataset_info
from detection.modeling import build_model

from .classes import resolve_classes


class Predictor:
    """``Predictor(cfg)(image)`` with ``image`` an (H, W, 3) uint8 array in ``image_format``
    (OpenCV's BGR by default). Returns numpy arrays in the original image's pixels:
    ``{"boxes": (D, 4) xyxy, "scores": (D,), "labels": (D,), "classes": [names]}``: detections, or
    for a localizer the top-5 classes with one box each.

    The image goes through the evaluator's test mapping (``DatasetMapper``), so the Predictor sees
    exactly what evaluation sees: for a localizer, INPUT.LOC_TEST_MODE decides between the centre
    crop ("1-crop") and the whole image at every size of INPUT.LOC_TEST_SIZES ("dense").
    """

    def __init__(self, cfg, weights: str | None = None):
        path = weights if weights is not None else cfg.MODEL.WEIGHTS
        # The class names: the checkpoint's, else those of the dataset the count came from.
        cfg, names = resolve_classes(cfg, weights=path, fallback_dataset=True)
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        self.metadata = load_weights(self.model, path, cfg=cfg).info.metadata if path else {}
        self.localization = self.model.task == "localization"
        self.class_names = self.metadata.get("class_names") or names or self._dataset_class_names()
        self.mapper = DatasetMapper(cfg, is_train=False, loc=self.localization)

    def _dataset_class_names(self) -> list[str]:
        """Weights without class names and an explicit count: the names of the first configured
        dataset with that many classes, else numbered classes."""
        k = self.model.num_classes
        for name in [*self.cfg.DATASETS.TRAIN[:1], *self.cfg.DATASETS.TEST[:1]]:
            try:
                names = list(get_dataset_info(self.cfg, name).class_names)
            except (OSError, ValueError, KeyError):  # not on this machine
                continue
            if len(names) == k:
                return names
        return [f"class_{i}" for i in range(k)]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_format: str = "BGR") -> dict:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Predictor expects an (H, W, 3) uint8 image; got {image.shape} {image.dtype}")
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR; got {image_format!r}")
        rgb = image if image_format == "RGB" else image[:, :, ::-1]
        out = self.model([self.mapper.map_image(rgb)])[0]
        labels = out["labels"].cpu().numpy()
        return {"boxes": out["boxes"].cpu().numpy(), "scores": out["scores"].cpu().numpy(), "labels": labels,
                "classes": [self.class_names[i] for i in labels]}
