"""Export: the traced detector gives eager PyTorch's detections on images of other sizes than the
one it was traced on (TorchScript in PyTorch, ONNX in onnxruntime and OpenVINO), through tools/export.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detection.data import DatasetMapper
from detection.engine.export import export_model, load_exported, match_detections, parity, synthetic_images
from detection.modeling import build_model
from detection.modeling.export import ExportableDetector
from detection.utils.seed import seed_all
from tiny import tiny_checkpoint, tiny_test_config
from tool_scripts import load_tool


@pytest.fixture(scope="module")
def detector():
    cfg = tiny_test_config("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05")
    seed_all(0)
    return build_model(cfg).eval(), DatasetMapper(cfg, is_train=False)


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_match_detections_pairs_by_label_and_box_whatever_the_order():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]], np.float32)
    ref = (boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 1]))
    got = (boxes[[2, 0, 1]] + np.float32(2e-4), np.array([0.7, 0.9, 0.80005], np.float32), np.array([1, 1, 2]))
    m = match_detections(ref, got)
    assert m["matched"] == 3 and m["max_box_diff"] == pytest.approx(2e-4, abs=1e-6)
    assert m["max_score_diff"] == pytest.approx(5e-5, abs=1e-6)
    m = match_detections(ref, (got[0], got[1], np.array([1, 1, 3])))  # a label differs: that pair is not matched
    assert m["matched"] == 2


def test_torchscript_export_matches_eager_on_other_image_sizes(detector, tmp_path, single_thread):
    model, mapper = detector
    files = export_model(model, mapper.map_image(_rgb(90, 120, 0)), str(tmp_path), ["torchscript"])
    images = [_rgb(200, 150, 1), _rgb(64, 64, 2), _rgb(100, 300, 3)]  # portrait, tiny, wide: other padded sizes
    report = parity(model, mapper, load_exported(files["torchscript"]), images)
    assert report["ok"], report
    assert report["ref"] > 50 and report["max_box_diff"] <= 1e-3


def test_onnx_export_runs_in_onnxruntime_and_matches_eager(detector, tmp_path, single_thread):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model, mapper = detector
    files = export_model(model, mapper.map_image(_rgb(90, 120, 0)), str(tmp_path), ["onnx"])
    report = parity(model, mapper, load_exported(files["onnx"]), [_rgb(200, 150, 1), _rgb(100, 300, 3)])
    assert report["ok"], report
    assert report["ref"] > 50


def test_onnx_export_runs_in_openvino_and_matches_eager(detector, tmp_path, single_thread):
    """The same ONNX file compiled by OpenVINO for its CPU device, in f32: eager's detections on
    images of other sizes than the traced one (dynamic shapes)."""
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    model, mapper = detector
    files = export_model(model, mapper.map_image(_rgb(90, 120, 0)), str(tmp_path), ["onnx"])
    run = load_exported(files["onnx"], threads=1, runtime="openvino", precision="f32")
    report = parity(model, mapper, run, [_rgb(200, 150, 1), _rgb(100, 300, 3)])
    assert report["ok"], report
    assert report["ref"] > 50
    with pytest.raises(ValueError, match="runtime 'openvino' cannot run"):
        load_exported(str(tmp_path / "model.ts"), runtime="openvino")
    with pytest.raises(ValueError, match="precision must be one of"):
        load_exported(files["onnx"], runtime="openvino", precision="int4")


def test_normalized_input_variant_gives_the_uint8_variant_results(detector):
    model, mapper = detector
    sample = mapper.map_image(_rgb(90, 120, 4))
    size = torch.tensor([sample["height"], sample["width"]])
    normalized = (sample["image"].float() - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        a = ExportableDetector(model)(sample["image"], size)
        b = ExportableDetector(model, normalized_input=True)(normalized, size)
        eager = model([sample])[0]
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert match_detections([t.numpy() for t in (eager["boxes"], eager["scores"], eager["labels"])],
                            [t.numpy() for t in a])["matched"] == len(eager["boxes"])


def test_export_tool_writes_the_model_its_description_and_a_passing_parity_report(tmp_path):
    weights = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "export"
    result = load_tool("export").main(["--weights", weights, "--format", "torchscript", "--output", str(out),
                                   "--parity-images", "2", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"])
    assert result["parity"]["torchscript"]["ok"]
    info = json.loads((out / "export.json").read_text())
    assert info["files"] == {"torchscript": "model.ts"} and info["class_names"] == list("abcdef")
    assert info["resize"] == {"min_size": 96, "max_size": 128, "interpolation": "bilinear"}
    assert info["parity"]["torchscript"]["ok"] is True
    # the normalised-input variant passes its parity check too
    result = load_tool("export").main(["--weights", weights, "--format", "torchscript", "--output", str(tmp_path / "n"),
                                       "--parity-images", "1", "--normalized-input"])
    assert result["parity"]["torchscript"]["ok"] and result["parity"]["torchscript"]["ref"] > 0
    # the exported file alone, on a synthetic image resized as export.json says
    run = load_exported(str(out / "model.ts"))
    image = synthetic_images(1)[0]
    boxes, scores, labels = run(DatasetMapper(tiny_test_config(), is_train=False).map_image(image)["image"],
                                torch.tensor(image.shape[:2]))
    assert len(boxes) == len(scores) == len(labels) > 0
    assert (boxes[:, 2] <= image.shape[1]).all() and (boxes[:, 3] <= image.shape[0]).all()
