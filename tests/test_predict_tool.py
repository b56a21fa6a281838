"""tools/predict.py end to end on a tiny detector: folders, lists, videos, COCO results, names, counts."""
from __future__ import annotations

import io
import json
import logging
import os

import cv2
import numpy as np
import pytest

from detection.engine.predictor import Predictor
from detection.evaluation.coco_eval import outputs_to_coco_results
from detection.utils.progress import Progress
from tiny import tiny_checkpoint
from tool_scripts import load_tool


predict = load_tool("predict")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _image(seed, h=72, w=96):
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def _write(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), image)


def test_same_named_files_of_two_folders_get_distinct_outputs_and_inputs_stay(weights, tmp_path):
    src = tmp_path / "src"
    _write(src / "a" / "x.png", _image(0))
    _write(src / "b" / "x.png", _image(1))
    before = {p: open(src / p, "rb").read() for p in ("a/x.png", "b/x.png")}
    out = tmp_path / "out"
    summary = predict.main(["--weights", weights, "--input", str(src), "--recursive", "--output", str(out),
                            "--score-thresh", "0"])
    assert summary == {"processed": 2, "images": 2, "videos": 0, "frames": 0, "skipped": 0}
    assert cv2.imread(str(out / "a" / "x.png")).shape == (72, 96, 3)
    assert cv2.imread(str(out / "b" / "x.png")).shape == (72, 96, 3)
    lines = [json.loads(s) for s in (out / "detections.jsonl").read_text().splitlines()]
    assert [r["file"] for r in lines] == ["a/x.png", "b/x.png"]
    # the listed detections are the Predictor's
    expected = Predictor.from_checkpoint(weights)(cv2.imread(str(src / "a" / "x.png")))
    got = lines[0]["detections"]
    assert len(got) == len(expected["boxes"]) > 0
    np.testing.assert_allclose([d["box"] for d in got], expected["boxes"], atol=0.006)
    assert [d["class"] for d in got] == expected["classes"]
    assert {p: open(src / p, "rb").read() for p in before} == before
    # without --recursive the top folder has no images: nothing processed
    assert predict.main(["--weights", weights, "--input", str(src), "--output", str(tmp_path / "o2")])["processed"] == 0


def test_refuses_an_output_folder_that_would_overwrite_an_input(weights, tmp_path):
    _write(tmp_path / "x.jpg", _image(0))
    data = open(tmp_path / "x.jpg", "rb").read()
    with pytest.raises(ValueError, match="overwrite the input"):
        predict.main(["--weights", weights, "--input", str(tmp_path / "x.jpg"), "--output", str(tmp_path)])
    assert open(tmp_path / "x.jpg", "rb").read() == data


def test_list_file_video_and_unreadable_files_are_counted(weights, tmp_path):
    _write(tmp_path / "imgs" / "1.jpg", _image(0))
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    frames = [_image(10 + i, 48, 64) for i in range(5)]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 7.0, (64, 48))
    for f in frames:
        writer.write(f)
    writer.release()
    listing = tmp_path / "inputs.txt"
    listing.write_text("imgs/1.jpg\nimgs/broken.jpg\n# a comment\nclip.avi\nmissing.jpg\n")
    out = tmp_path / "out"
    summary = predict.main(["--weights", weights, "--input", str(listing), "--output", str(out), "--score-thresh", "0",
                            "TEST.IMS_PER_BATCH", "2"])
    assert summary == {"processed": 2, "images": 1, "videos": 1, "frames": 5, "skipped": 2}
    cap = cv2.VideoCapture(str(out / "clip.avi.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    rows = [json.loads(s) for s in (out / "clip.avi.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3, 4]
    # frame 2 as OpenCV decodes it, through the Predictor: the same detections
    reader = cv2.VideoCapture(str(video))
    for _ in range(3):
        ok, frame = reader.read()
    expected = Predictor.from_checkpoint(weights)(frame)
    np.testing.assert_allclose([d["box"] for d in rows[2]["detections"]], expected["boxes"], atol=0.006)
    # --max-frames stops early; --no-draw writes no video
    summary = predict.main(["--weights", weights, "--input", str(video), "--output", str(tmp_path / "o2"),
                            "--max-frames", "2", "--no-draw"])
    assert summary["frames"] == 2 and not (tmp_path / "o2" / "clip.avi.mp4").exists()


def test_coco_results_use_the_numbers_in_file_names_and_evaluate(weights, tmp_path):
    names = ["000003.jpg", "000011.jpg"]
    for i, n in enumerate(names):
        _write(tmp_path / "val" / n, _image(i))
    dt = tmp_path / "res" / "results.json"
    predict.main(["--weights", weights, "--input", str(tmp_path / "val"), "--output", str(tmp_path / "out"),
                  "--save-coco", str(dt), "--no-draw"])
    results = json.loads(dt.read_text())
    assert json.loads((tmp_path / "res" / "results.image_ids.json").read_text()) == {"000003.jpg": 3, "000011.jpg": 11}
    predictor = Predictor.from_checkpoint(weights)
    expected = [r for i, n in zip((3, 11), names)
                for r in outputs_to_coco_results(i, predictor(cv2.imread(str(tmp_path / "val" / n))), range(1, 7))]
    assert [(r["image_id"], r["category_id"]) for r in results] == [(r["image_id"], r["category_id"]) for r in expected]
    np.testing.assert_allclose([r["bbox"] for r in results], [r["bbox"] for r in expected], atol=0.011)
    # a ground truth with those ids: tools/eval.py --gt --dt accepts the file
    gt = {"images": [{"id": i, "file_name": n, "height": 72, "width": 96} for i, n in zip((3, 11), names)],
          "annotations": [{"id": 1, "image_id": 3, "category_id": 2, "bbox": [10, 10, 30, 20], "area": 600,
                           "iscrowd": 0}],
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 7)]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    metrics = load_tool("eval").main(["--gt", str(tmp_path / "gt.json"), "--dt", str(dt), "--no-plot",
                                      "--output", str(tmp_path / "eval")])
    assert metrics["num_detections"] == len(results) and 0 <= metrics["AP50"] <= 100


def test_image_ids_fall_back_to_path_order_when_a_name_is_not_a_number():
    assert predict.image_ids(["a/7.jpg", "b/x.jpg"]) == {"a/7.jpg": 1, "b/x.jpg": 2}
    assert predict.image_ids(["a/7.jpg", "b/7.png"]) == {"a/7.jpg": 1, "b/7.png": 2}  # not distinct
    assert predict.image_ids(["v.mp4#0", "v.mp4#1"]) == {"v.mp4#0": 1, "v.mp4#1": 2}


def test_progress_logs_lines_with_a_rate_when_not_on_a_terminal(caplog):
    stream = io.StringIO()  # not a tty
    with caplog.at_level(logging.INFO, logger="detection"):
        with Progress(4, "work", unit="img", log_period_s=0.0, stream=stream) as p:
            for _ in range(4):
                p.update()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("work:")]
    assert lines[0].startswith("work: 1/4 img,") and "img/s" in lines[0] and "eta" in lines[0]
    assert lines[-1].startswith("work: 4/4 img,") and len(lines) == 5  # one per update, one at the end
    assert stream.getvalue() == ""  # no bar drawn into a non-terminal
