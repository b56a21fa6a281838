"""Inference from Python: a checkpoint (or config + weights) -> images -> boxes, scores, labels.

    predictor = Predictor.from_checkpoint("output/quickstart/model_final.pth")
    out = predictor(cv2.imread("image.jpg"))          # or a list of images: one result per image
    out["boxes"], out["scores"], out["classes"]
"""
from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import yaml

from detection.checkpoint import Checkpoint, convert_checkpoint, load_checkpoint, load_weights, read_raw
from detection.config import config_from_dict, merge_from_list
from detection.data import DatasetMapper, get_dataset_info
from detection.modeling import build_model, build_test_model

from .classes import resolve_classes


def override_list(overrides: Mapping | Sequence[str] | None) -> list[str]:
    """``{"MODEL.DEVICE": "cpu"}`` or ``["MODEL.DEVICE", "cpu"]`` -> KEY VALUE strings as the tools take
    them (a non-string dict value is written as its Python literal)."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [t for k, v in overrides.items() for t in (str(k), v if isinstance(v, str) else repr(v))]
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a dict or a KEY VALUE list, not the string {overrides!r}")
    return [str(t) for t in overrides]


def read_trained_checkpoint(path: str) -> tuple[dict, Checkpoint]:
    """(the config dict, the converted weights) of a checkpoint written by tools/train_net.py.

    Raises ``CheckpointError`` (``read_raw``) for a missing or unreadable file and ``ValueError`` for
    a file that carries no config (torchvision, caffe2 and Detectron2 files hold weights only)."""
    path = os.fspath(path)
    obj = read_raw(path)  # missing, corrupt or unsafe: a CheckpointError naming the file
    config = obj.get("config", obj.get("cfg")) if isinstance(obj, Mapping) else None
    if isinstance(config, str):
        try:
            config = yaml.safe_load(config)
        except yaml.YAMLError as e:
            raise ValueError(f"checkpoint {path}: its config is not valid YAML: {e}") from None
    if not isinstance(config, Mapping):
        raise ValueError(
            f"checkpoint {path} carries no config (only checkpoints written by tools/train_net.py do; torchvision, "
            f"caffe2 and Detectron2 files hold weights only): pass one, "
            f"Predictor.from_checkpoint({path!r}, cfg=load_config('configs/....yaml')), or use Predictor(cfg, weights)")
    return dict(config), convert_checkpoint(obj, path)


class Predictor:
    """``Predictor(cfg)(image)`` with ``image`` an (H, W, 3) uint8 array in ``image_format``
    (OpenCV's BGR by default), or a list of them. Returns, per image, numpy arrays in the original
    image's pixels: ``{"boxes": (D, 4) xyxy, "scores": (D,), "labels": (D,), "classes": [names]}``:
    detections, or for a localizer the top-5 classes with one box each.

    The image goes through the evaluator's test mapping (``DatasetMapper``) and model
    (``build_test_model``: test-time augmentation and tiles when the config asks), so the Predictor
    sees exactly what evaluation sees: for a localizer, INPUT.LOC_TEST_MODE decides between the
    centre crop ("1-crop") and the whole image at every size of INPUT.LOC_TEST_SIZES ("dense").
    A list runs TEST.IMS_PER_BATCH images per forward pass (the model batches those that pad to the
    same size), with the same results as one image at a time.
    """

    def __init__(self, cfg, weights: str | Checkpoint | None = None):
        path = weights if weights is not None else cfg.MODEL.WEIGHTS
        checkpoint = path if isinstance(path, Checkpoint) else None
        # The class names: the checkpoint's, else those of the dataset the count came from.
        cfg, names = resolve_classes(cfg, weights=checkpoint.info.path if checkpoint else path, fallback_dataset=True)
        self.cfg = cfg
        model = build_model(cfg).eval()
        self.metadata = {}
        if checkpoint is not None:
            self.metadata = load_checkpoint(model, checkpoint, cfg=cfg).info.metadata
        elif path:
            self.metadata = load_weights(model, path, cfg=cfg).info.metadata
        self.detector = model  # the model itself (what export and benchmarks take)
        self.model = build_test_model(cfg, model).eval()  # what inference runs
        self.localization = model.task == "localization"
        self.class_names = self.metadata.get("class_names") or names or self._dataset_class_names()
        self.mapper = DatasetMapper(cfg, is_train=False, loc=self.localization)
        self.batch_size = max(1, int(cfg.TEST.IMS_PER_BATCH))

    @classmethod
    def from_checkpoint(cls, path: str, overrides: Mapping | Sequence[str] | None = None, *, cfg=None) -> Predictor:
        """A Predictor from a checkpoint of tools/train_net.py alone: it carries its config and class
        names. ``overrides``: ``{"MODEL.DEVICE": "cuda"}`` or ``["MODEL.DEVICE", "cuda", ...]`` as
        the tools' KEY VALUE pairs. A foreign checkpoint (torchvision, caffe2, Detectron2) needs
        ``cfg``; with ``cfg`` given, the checkpoint's own config is not used."""
        opts = override_list(overrides)
        if cfg is not None:
            cfg = copy.deepcopy(cfg)
            merge_from_list(cfg, opts)
            return cls(cfg, os.fspath(path))
        config, checkpoint = read_trained_checkpoint(path)
        cfg = config_from_dict(config, opts, where=f"the config inside checkpoint {path}")
        cfg.MODEL.WEIGHTS = os.fspath(path)
        return cls(cfg, checkpoint)

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

    def _sample(self, image: np.ndarray, image_format: str) -> dict:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"Predictor expects an (H, W, 3) uint8 image; got {shape} {getattr(image, 'dtype', '')}")
        return self.mapper.map_image(image if image_format == "RGB" else image[:, :, ::-1])

    def _result(self, out: dict) -> dict:
        labels = out["labels"].cpu().numpy()
        return {"boxes": out["boxes"].cpu().numpy(), "scores": out["scores"].cpu().numpy(), "labels": labels,
                "classes": [self.class_names[i] for i in labels]}

    @torch.no_grad()
    def __call__(self, images: np.ndarray | Sequence[np.ndarray], image_format: str = "BGR") -> dict | list[dict]:
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR; got {image_format!r}")
        single = isinstance(images, np.ndarray)
        images = [images] if single else list(images)
        results = []
        for i in range(0, len(images), self.batch_size):
            batch = [self._sample(im, image_format) for im in images[i:i + self.batch_size]]
            results += [self._result(out) for out in self.model(batch)]
        return results[0] if single else results
