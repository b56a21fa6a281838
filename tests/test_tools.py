"""The tools end to end on tiny synthetic data, through their entry points."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import pytest

from detection.config import load_config
from detection.data import get_dataset, get_dataset_info
from detection.engine.inference import evaluate
from detection.modeling import build_model

from tiny import tiny_opts
from tool_scripts import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tools")
    out = tmp / "out"
    load_tool("train_net").main(["--config", QUICKSTART, *tiny_opts(tmp / "data", out, 4)])
    return tmp, out


def test_train_writes_checkpoints_logs_curves_and_evaluation(trained):
    tmp, out = trained
    for name in ("model_0000002.pth", "model_final.pth", "last_checkpoint", "metrics.jsonl", "config.yaml",
                 "curves.png", "log.txt"):
        assert (out / name).is_file(), name
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iteration"] for r in rows if "total_loss" in r]
    assert iters == [1, 2, 3, 4]
    assert all(r["total_loss"] == pytest.approx(sum(v for k, v in r.items() if k.startswith("loss_")))
               for r in rows if "total_loss" in r)
    evals = [r for r in rows if "AP50" in r]
    assert len(evals) == 1 and evals[0]["iteration"] == 4
    metrics = json.loads((out / "eval" / "synthetic_val" / "metrics.json").read_text())
    for key in ("AP50", "AP", "AP75", "APs", "APm", "APl", "VOC07_mAP50", "VOC_mAP50", "per_class_AP50",
                "best_f1", "best_f1_score_thresh", "per_class_best_f1", "errors", "per_class_errors"):
        assert key in metrics, key
    for name in ("index.html", "confusion_matrix.json", "confusion_matrix.png", "f1_curves.png", "errors.png",
                 "error_breakdown.json", "worst/contact_sheet.jpg"):
        assert (out / "eval" / "synthetic_val" / name).is_file(), name


def test_resume_continues_from_the_last_iteration(trained):
    tmp, out = trained
    load_tool("train_net").main(["--config", QUICKSTART, "--resume", *tiny_opts(tmp / "data", out, 6)])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iteration"] for r in rows if "total_loss" in r]
    assert iters == [1, 2, 3, 4, 5, 6]  # no iteration repeated, none skipped


def test_eval_and_results_file_mode_agree(trained, tmp_path):
    tmp, out = trained
    opts = tiny_opts(tmp / "data", tmp_path / "eval_out", 4)
    results = load_tool("eval").main(["--config", QUICKSTART, "--weights", str(out / "model_final.pth"), *opts])
    metrics = results["synthetic_val"]
    eval_dir = tmp_path / "eval_out" / "eval" / "synthetic_val"
    on_disk = json.loads((eval_dir / "metrics.json").read_text())
    assert on_disk["AP50"] == pytest.approx(metrics["AP50"])
    gt = json.loads((eval_dir / "detections.json").read_text())  # COCO results format
    assert all({"image_id", "category_id", "bbox", "score"} <= set(d) for d in gt)
    # The same detections evaluated from the files alone give the same numbers.
    from detection.data import get_dataset_info
    from detection.config import load_config

    info = get_dataset_info(load_config(QUICKSTART, opts), "synthetic_val")
    again = load_tool("eval").main(["--gt", info.json_file, "--dt", str(eval_dir / "detections.json"),
                                "--output", str(tmp_path / "files")])
    assert again["AP50"] == pytest.approx(metrics["AP50"], abs=1e-6)


def test_demo_writes_drawn_images_and_json(trained, tmp_path):
    tmp, out = trained
    opts = tiny_opts(tmp / "data", tmp_path / "demo_out", 4)
    from detection.config import load_config
    from detection.data import get_dataset_info

    info = get_dataset_info(load_config(QUICKSTART, opts), "synthetic_val")
    images = os.path.join(info.image_root, "val")
    written = load_tool("demo").main(["--config", QUICKSTART, "--weights", str(out / "model_final.pth"),
                                  "--input", images, "--output", str(tmp_path / "demo"), "--score-thresh", "0.0",
                                  *opts])
    assert len(written) == len([f for f in os.listdir(images)])
    import cv2

    for path in written:
        dets = json.loads(open(path).read())
        image = cv2.imread(path[: -len(".json")])  # the drawn copy: the input's name, in the output folder
        assert image is not None
        h, w = image.shape[:2]
        for d in dets:
            assert set(d) == {"box", "score", "label", "class"}
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h  # original-image pixels
            assert d["class"] == info.class_names[d["label"]]


def test_a_detector_on_a_localization_dataset_is_a_clear_error(tmp_path):
    """The model decides detection vs localization; a mismatched test set stops before inference."""
    cfg = load_config("configs/quickstart.yaml", tiny_opts(tmp_path / "data", tmp_path / "out") + [
        "DATASETS.TEST", "['synthetic_loc_val']", "DATASETS.SYNTHETIC.NUM_VAL", "2"])
    with pytest.raises(ValueError, match=r"'synthetic_loc_val' is a localization dataset but the model "
                                         r"\(FasterRCNN\) is a detection model"):
        evaluate(cfg, build_model(cfg))
def test_demo_score_thresh_best_reads_the_saved_evaluation(trained, tmp_path):
    tmp, out = trained
    weights = tmp_path / "run" / "model_final.pth"
    (tmp_path / "run" / "eval" / "some_set").mkdir(parents=True)
    shutil.copy(out / "model_final.pth", weights)
    (tmp_path / "run" / "eval" / "some_set" / "metrics.json").write_text(json.dumps({"best_f1_score_thresh": 0.07}))
    opts = tiny_opts(tmp / "data", tmp_path / "demo_out", 4)
    demo = load_tool("demo")
    assert demo.best_score_thresh(str(weights), str(tmp_path / "nothing")) == 0.07
    assert demo.best_score_thresh(str(tmp_path / "elsewhere" / "w.pth"), str(tmp_path / "nothing")) == 0.5
    images = os.path.join(get_dataset_info(load_config(QUICKSTART, opts), "synthetic_val").image_root, "val")
    written = demo.main(["--config", QUICKSTART, "--weights", str(weights), "--input", images,
                         "--output", str(tmp_path / "demo"), "--score-thresh", "best", *opts])
    scores = [d["score"] for path in written for d in json.loads(open(path).read())]
    assert all(s >= 0.07 for s in scores)


def test_visualize_data_draws_the_ground_truth_plain_and_augmented(trained, tmp_path):
    tmp, _ = trained
    opts = tiny_opts(tmp / "data", tmp_path / "o", 4)
    vis = load_tool("visualize")
    plain = vis.main(["data", "--config", QUICKSTART, "--output", str(tmp_path / "plain"), *opts])
    augmented = vis.main(["data", "--config", QUICKSTART, "--augmented", "--output", str(tmp_path / "aug"), *opts])
    cfg = load_config(QUICKSTART, opts)
    records, _ = get_dataset("synthetic_train", cfg, is_train=False)
    # augmented: the images training sees (empty ones filtered out)
    assert len(plain) == 8 and len(augmented) == len(get_dataset("synthetic_train", cfg, is_train=True)[0])
    rec = next(r for r in records if len(r["boxes"]))
    drawn = cv2.imread(str(tmp_path / "plain" / f"{rec['image_id']}.jpg"))
    original = cv2.imread(rec["file_name"])
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = (int(round(v)) for v in rec["boxes"][0])
    # the box outline is drawn: its left edge differs from the original image there
    assert abs(drawn[y1:y2, x1].astype(int) - original[y1:y2, x1].astype(int)).mean() > 20
    assert (tmp_path / "aug" / "contact_sheet.jpg").is_file()


def test_visualize_results_draws_worst_images_first(trained, tmp_path):
    tmp, out = trained
    opts = tiny_opts(tmp / "data", out, 4)
    drawn = load_tool("visualize").main(["results", "--config", QUICKSTART, "--output", str(tmp_path / "res"),
                                     "--score-thresh", "0.0", "--num", "3", *opts])
    assert len(drawn) == 4  # every val image
    errors = [d["errors"] for d in drawn]
    assert errors == sorted(errors, reverse=True)
    assert [d["file"] for d in drawn][0].startswith("001_")
    for d in drawn:
        assert (tmp_path / "res" / d["file"]).is_file()
    assert (tmp_path / "res" / "contact_sheet.jpg").is_file()


def test_a_bad_input_ends_with_its_message_and_status_2_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  BASE_LR: 0.1\nSOLVER:\n  MAX_ITER: 10\n")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config", str(bad)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "DETECTION_TRACEBACK": ""})
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "error: " in run.stderr and str(bad) in run.stderr and "SOLVER" in run.stderr
