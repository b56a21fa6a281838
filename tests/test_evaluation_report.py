"""The explanations written with every evaluation: metrics.json keys, confusion_matrix.json,
plots, worst images, and index.html (parsed, and loaded in a real headless Chromium)."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from detection.evaluation import evaluate_files
from detection.evaluation.thresholds import saved_best_f1_threshold

EVIL = '<b>"cat" & \'co\'</b>'  # a class name that must be escaped everywhere


def _coco_files(tmp_path, cat_name="cat"):
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 120, "height": 120}],
          "categories": [{"id": 3, "name": cat_name}, {"id": 7, "name": "dog"}],
          "annotations": [
              {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 0},
              {"id": 2, "image_id": 1, "category_id": 7, "bbox": [20, 0, 10, 10], "iscrowd": 0},
              {"id": 3, "image_id": 1, "category_id": 3, "bbox": [40, 0, 10, 10], "iscrowd": 0}]}
    dt = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 3, "bbox": [20, 0, 10, 10], "score": 0.8},
          {"image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 10], "score": 0.7}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "gt.json", tmp_path / "dt.json"


def test_results_file_evaluation_writes_confusion_and_best_f1(tmp_path):
    gt, dt = _coco_files(tmp_path)
    out = tmp_path / "eval"
    metrics = evaluate_files(gt, dt, out, plot=False, verbose=False)
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("AP50", "AP", "AP75", "VOC07_mAP50", "VOC_mAP50", "per_class_AP50", "per_class_AP", "per_class_VOC",
                "num_images", "num_detections", "best_f1", "best_f1_score_thresh", "per_class_best_f1", "errors",
                "per_class_errors"):
        assert key in on_disk
    # cat: 2 gt, 0.9 TP, 0.8 FP -> best F1 at 0.9: P 1, R 1/2 -> 2/3; dog: no TP -> None
    assert on_disk["per_class_best_f1"]["cat"]["best_f1"] == pytest.approx(200 / 3)
    assert on_disk["per_class_best_f1"]["cat"]["best_f1_score_thresh"] == 0.9
    assert on_disk["per_class_best_f1"]["dog"]["best_f1"] is None
    # pooled, 3 gt: 0.9 is also the best (F1 1/2)
    assert metrics["best_f1"] == pytest.approx(50.0) and metrics["best_f1_score_thresh"] == 0.9
    cm = json.loads((out / "confusion_matrix.json").read_text())
    assert cm["class_names"] == ["cat", "dog", "background"]
    # thresholds: cat 0.9 (its best F1), dog 0.9 (no best of its own: the overall one)
    assert cm["score_thresh"] == {"cat": 0.9, "dog": 0.9}
    assert cm["counts"] == [[1, 0, 1], [0, 0, 1], [0, 0, 0]]
    # the error types over all detections: d2 (cat on the dog) classification, d3 (dog on the
    # found cat) classification as well; the last cat box missed
    assert on_disk["errors"]["counts"] == {"classification": 2, "localization": 0, "both": 0, "duplicate": 0,
                                           "background": 0, "missed": 1}


def test_score_thresh_option_sets_the_confusion_threshold(tmp_path):
    gt, dt = _coco_files(tmp_path)
    evaluate_files(gt, dt, tmp_path / "eval", plot=False, verbose=False, score_thresh=0.5)
    cm = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())
    assert cm["counts"] == [[1, 0, 1], [1, 0, 0], [0, 1, 0]]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A results-file evaluation with plots, its image on disk, a class name needing escapes."""
    tmp = tmp_path_factory.mktemp("report")
    cv2.imwrite(str(tmp / "a.jpg"), np.full((120, 120, 3), 90, dtype=np.uint8))
    gt, dt = _coco_files(tmp, cat_name=EVIL)
    evaluate_files(gt, dt, tmp / "eval", plot=True, verbose=False)
    return tmp / "eval"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_files_are_written(report_dir):
    for name in ("index.html", "metrics.json", "confusion_matrix.json", "confusion_matrix.png", "f1_curves.png",
                 "errors.png", "pr_curves.png", "error_breakdown.json", "worst/contact_sheet.jpg", "worst/001_1.jpg"):
        assert (report_dir / name).is_file(), name


def test_html_is_self_contained_and_escaped(report_dir):
    page = _Page()
    page.feed((report_dir / "index.html").read_text(encoding="utf-8"))
    tags = [t for t, _ in page.tags]
    # only our inline script; no external script, stylesheet or font
    assert tags.count("script") == 1 and all("src" not in a for t, a in page.tags if t == "script")
    assert "link" not in tags
    # the escaped class name comes back as text, never as a <b> element
    assert "b" not in tags and any(EVIL in t for t in page.text)
    # the per-class table: one header row and one row per class
    tables = [a.get("id") for t, a in page.tags if t == "table"]
    assert "per-class" in tables and "errors" in tables
    rows = tags.count("tr")
    assert rows >= 2 + 1 + 6 + 1  # per-class (header + 2), errors (header + 6), headline
    # every image is a relative file of the folder
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert {"f1_curves.png", "confusion_matrix.png", "errors.png", "worst/contact_sheet.jpg"} <= set(srcs)
    for s in srcs:
        assert "://" not in s and not s.startswith("/")
        assert (report_dir / s).is_file(), s


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run_chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
           "--window-size=1280,2400", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(_chromium() is None,
                    reason="no chromium on PATH (.ci/run installs it as root: apt-get install chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(report_dir, tmp_path):
    url = (report_dir / "index.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    r = _run_chromium(url, f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-2000:]
    print(f"report screenshot: {shot}")
    assert _console_lines(r.stderr) == []
    dom = _run_chromium(url, "--dump-dom")
    assert 'id="per-class"' in dom.stdout and dom.stdout.count("<tr") >= 10
    assert 'src="worst/contact_sheet.jpg"' in dom.stdout and 'src="confusion_matrix.png"' in dom.stdout
    assert _console_lines(dom.stderr) == []


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH")
def test_headless_chromium_log_shows_a_script_error(tmp_path):
    # the check above would catch a broken page: a script error shows in the log
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>no_such_function();</script></body></html>")
    r = _run_chromium(page.as_uri(), "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in _console_lines(r.stderr))


def test_saved_best_f1_threshold_prefers_the_first_folder_that_has_one(tmp_path):
    """The weights' own folder wins over OUTPUT_DIR, even when OUTPUT_DIR's evaluation is newer."""
    for folder, thresh in (("weights_dir", 0.3), ("output_dir", 0.7)):
        (tmp_path / folder / "eval" / "val").mkdir(parents=True)
        (tmp_path / folder / "eval" / "val" / "metrics.json").write_text(json.dumps({"best_f1_score_thresh": thresh}))
    first, second = str(tmp_path / "weights_dir"), str(tmp_path / "output_dir")
    assert saved_best_f1_threshold([first, second])[0] == 0.3
    assert saved_best_f1_threshold([str(tmp_path / "nothing"), second])[0] == 0.7
    assert saved_best_f1_threshold([str(tmp_path / "nothing")]) is None
