"""Single-image inference from Python: config + weights -> image array -> boxes, scores, labels."""
from __future__ import annotations

import numpy as np
import torch

from detection.checkpoint import load_weights
from detection.modeling import build_model

from .classes import resolve_classes


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


class Predictor:
    """``Predictor(cfg)(image)`` with ``image`` an (H, W, 3) uint8 array in ``image_format``
    (OpenCV's BGR by default). Returns numpy arrays in the original image's pixels:
    ``{"boxes": (D, 4) xyxy, "scores": (D,), "labels": (D,), "classes": [names]}``: detections, or
    in the localization mode the top-5 classes with one box each (the whole image tested densely, at
    every size of INPUT.LOC_TEST_SIZES).
    """

    def __init__(self, cfg, weights: str | None = None):
        import copy

        from detection.data import build_extra_scales_transform, build_test_transform  # the evaluator's resize

        self.localization = cfg.MODEL.META_ARCHITECTURE == "PCRLocalizer"
        if self.localization and cfg.INPUT.LOC_TEST_MODE != "dense":
            # A demo shows the whole image: test it densely rather than on a centre crop.
            cfg = copy.deepcopy(cfg)
            cfg.INPUT.LOC_TEST_MODE = "dense"
        cfg = resolve_classes(cfg, weights=cfg.MODEL.WEIGHTS if weights is None else weights, fallback_dataset=True)[0]
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        path = weights if weights is not None else cfg.MODEL.WEIGHTS
        self.metadata = {}
        if path:
            self.metadata = load_weights(self.model, path, cfg=cfg).info.metadata
        self.class_names = self.metadata.get("class_names") or self._dataset_class_names()
        self.transform = build_test_transform(cfg, loc=self.localization)
        self.extra_scales = build_extra_scales_transform(cfg, loc=self.localization)

    def _dataset_class_names(self) -> list[str]:
        k = self.cfg.MODEL.PCR.NUM_CLASSES if self.localization else self.cfg.MODEL.ROI_HEADS.NUM_CLASSES
        try:
            from detection.data import get_dataset_info
            names = list(get_dataset_info(self.cfg, self.cfg.DATASETS.TEST[0]).class_names)
            if len(names) == k:
                return names
        except Exception:  # no dataset on this machine: numbered classes are still useful
            pass
        return [f"class_{i}" for i in range(k)]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, image_format: str = "BGR") -> dict:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"Predictor expects an (H, W, 3) uint8 image; got {image.shape} {image.dtype}")
        if image_format != self.cfg.INPUT.FORMAT:
            image = image[:, :, ::-1]
        h, w = image.shape[:2]
        sample = {"image": _chw(self.transform(image)), "height": h, "width": w}
        extra = self.extra_scales(image)
        if extra:
            sample["extra_scales"] = [_chw(im) for im in extra]
        out = self.model([sample])[0]
        labels = out["labels"].cpu().numpy()
        return {"boxes": out["boxes"].cpu().numpy(), "scores": out["scores"].cpu().numpy(), "labels": labels,
                "classes": [self.class_names[i] for i in labels]}
