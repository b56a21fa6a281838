"""DetectionEvaluator / evaluate_files against pycocotools run directly in the test, and
tools/eval.py's results-file mode."""

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tool_scripts import load_tool

from detection.evaluation import DetectionEvaluator, evaluate_files

CAT_IDS = [3, 7, 12, 40]  # original, non-contiguous ids; 40 has no ground truth
NAMES = ["cat", "dog", "car", "kite"]


def make_gt(seed, n_img=15, crowd_p=0.1):
    rng = np.random.default_rng(seed)
    images = [{"id": 100 + i, "width": 320, "height": 240, "file_name": f"{i}.jpg"} for i in range(n_img)]
    anns = []
    for img in images:
        for _ in range(rng.integers(0, 6)):
            w, h = rng.uniform(6, 120, 2)
            x, y = rng.uniform(0, 320 - w), rng.uniform(0, 240 - h)
            anns.append({
                "id": len(anns) + 1, "image_id": img["id"], "category_id": int(rng.choice(CAT_IDS[:3])),
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                "iscrowd": int(rng.random() < crowd_p),
            })
    cats = [{"id": c, "name": n} for c, n in zip(CAT_IDS, NAMES)]
    return {"images": images, "categories": cats, "annotations": anns}


def make_outputs(gt, seed):
    """Per image: jittered copies of gt boxes (some with a wrong class) plus background boxes.
    Coordinates are given with 2 decimals in xywh and scores with 5, so the evaluator's
    rounding is exact and the reference can use the same numbers."""
    rng = np.random.default_rng(seed + 1000)
    outputs, reference = {}, []
    for img in gt["images"]:
        xywh, labels = [], []
        for a in gt["annotations"]:
            if a["image_id"] != img["id"]:
                continue
            for _ in range(rng.integers(0, 3)):
                xywh.append(np.asarray(a["bbox"]) + rng.normal(0, 4, 4))
                lab = CAT_IDS.index(a["category_id"])
                labels.append(lab if rng.random() < 0.8 else int(rng.integers(0, 4)))
        for _ in range(rng.integers(0, 8)):
            w, h = rng.uniform(5, 100, 2)
            xywh.append([rng.uniform(0, 250), rng.uniform(0, 180), w, h])
            labels.append(int(rng.integers(0, 4)))
        xywh = np.round(np.asarray(xywh, dtype=np.float64).reshape(-1, 4), 2)
        xywh[:, 2:] = np.maximum(xywh[:, 2:], 1.0)
        scores = np.round(rng.random(len(xywh)), 5)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        outputs[img["id"]] = {
            "boxes": torch.tensor(xyxy, dtype=torch.float64),
            "scores": torch.tensor(scores, dtype=torch.float64),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        for b, s, l in zip(xywh, scores, labels):
            reference.append({"image_id": img["id"], "category_id": CAT_IDS[l], "bbox": [float(v) for v in b],
                              "score": float(s)})
    return outputs, reference


def reference_cocoeval(gt, results):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        E = COCOeval(coco, dt, "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E


def run_evaluator(gt, outputs, tmp_path, batch=4, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ev = DetectionEvaluator(str(path), NAMES, CAT_IDS, output_dir=str(tmp_path / "out"), verbose=False, **kw)
    ids = sorted(outputs)
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        ev.process(torch.tensor(chunk), [outputs[k] for k in chunk])
    return ev, ev.evaluate()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap50_equals_pycocotools_exactly(seed, tmp_path):
    gt = make_gt(seed)
    outputs, reference = make_outputs(gt, seed)
    _, m = run_evaluator(gt, outputs, tmp_path, plot=(seed == 0))
    E = reference_cocoeval(gt, reference)
    assert m["AP50"] == E.stats[1] * 100  # exact, not approx
    assert m["AP"] == E.stats[0] * 100 and m["AP75"] == E.stats[2] * 100
    for name, idx in [("APs", 3), ("APm", 4), ("APl", 5)]:
        v = E.stats[idx]
        assert (math.isnan(m[name]) and v == -1) or m[name] == v * 100
    # per-class AP50 = mean of COCOeval's precision[iou=.5, :, k, area=all, maxDets=100] (> -1)
    prec = E.eval["precision"]
    assert list(E.params.catIds) == CAT_IDS
    for k, name in enumerate(NAMES):
        s = prec[0, :, k, 0, 2]
        s = s[s > -1]
        if s.size:
            assert m["per_class_AP50"][name] == pytest.approx(np.mean(s) * 100, abs=1e-12)
        else:
            assert math.isnan(m["per_class_AP50"][name])
    assert math.isnan(m["per_class_AP50"]["kite"])  # no ground truth -> NaN, not 0
    # files
    out = tmp_path / "out"
    saved = json.loads((out / "metrics.json").read_text())
    for key in ["AP50", "AP", "AP75", "APs", "APm", "APl", "VOC07_mAP50", "VOC_mAP50", "per_class_AP50", "per_class_VOC"]:
        assert key in saved
    assert saved["per_class_AP50"]["kite"] is None  # NaN is written as null (strict json)
    assert saved["AP50"] == m["AP50"]
    dets = json.loads((out / "detections.json").read_text())
    assert len(dets) == len(reference) == m["num_detections"]
    assert {d["category_id"] for d in dets} <= set(CAT_IDS)
    key = lambda d: (d["image_id"], d["category_id"], d["score"], tuple(d["bbox"]))
    assert sorted(map(key, dets)) == sorted(map(key, reference))
    if seed == 0:
        assert (out / "per_class_AP50.png").stat().st_size > 1000
        assert (out / "pr_curves.png").stat().st_size > 1000
    # VOC means: nanmean over classes with gt
    voc = [m["per_class_VOC"][n]["AP50"] for n in NAMES]
    assert m["VOC_mAP50"] == pytest.approx(np.nanmean(voc))
    assert math.isnan(voc[3])


def test_results_file_reevaluates_to_the_same_metrics(tmp_path):
    gt = make_gt(5)
    outputs, _ = make_outputs(gt, 5)
    # float32 boxes with many decimals: the evaluator rounds, then evaluates the rounded values
    for o in outputs.values():
        o["boxes"] = (o["boxes"] + 0.123456).float()
        o["scores"] = o["scores"].float() * 0.999
    _, m = run_evaluator(gt, outputs, tmp_path, plot=False)
    m2 = evaluate_files(tmp_path / "gt.json", tmp_path / "out" / "detections.json", str(tmp_path / "re"),
                        plot=False, verbose=False)
    for k in ["AP", "AP50", "AP75", "VOC07_mAP50", "VOC_mAP50"]:
        assert m[k] == m2[k]
    assert m["per_class_AP50"] == pytest.approx(m2["per_class_AP50"], nan_ok=True)


def test_detection_on_crowd_box_changes_nothing(tmp_path):
    gt = make_gt(3, crowd_p=0.0)
    gt["annotations"].append({"id": 999, "image_id": 100, "category_id": 3, "bbox": [200.0, 150.0, 60.0, 50.0],
                              "area": 3000.0, "iscrowd": 1})
    outputs, _ = make_outputs(gt, 3)
    for o in outputs.values():  # keep detections away from the crowd box
        o["boxes"][:, [0, 2]] = o["boxes"][:, [0, 2]].clamp(max=150)
    _, base = run_evaluator(gt, outputs, tmp_path / "a", plot=False)
    o = outputs[100]
    outputs[100] = {
        "boxes": torch.cat([o["boxes"], torch.tensor([[200.0, 150.0, 260.0, 200.0]], dtype=o["boxes"].dtype)]),
        "scores": torch.cat([o["scores"], torch.tensor([0.99], dtype=o["scores"].dtype)]),
        "labels": torch.cat([o["labels"], torch.tensor([0])]),
    }
    _, m = run_evaluator(gt, outputs, tmp_path / "b", plot=False)
    for k in ["AP", "AP50", "AP75", "VOC07_mAP50", "VOC_mAP50"]:
        assert m[k] == base[k], k
    assert m["per_class_VOC"]["cat"]["num_gt"] == base["per_class_VOC"]["cat"]["num_gt"]
    # control: without the crowd box the same detection is a false positive at score 0.99
    gt["annotations"].pop()
    _, fp = run_evaluator(gt, outputs, tmp_path / "c", plot=False)
    assert fp["AP50"] < m["AP50"] and fp["VOC_mAP50"] < m["VOC_mAP50"]


def test_no_detections_gives_zero_not_a_crash(tmp_path):
    gt = make_gt(4)
    empty = {img["id"]: {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
             for img in gt["images"]}
    _, m = run_evaluator(gt, empty, tmp_path, plot=True)
    assert m["AP50"] == 0.0 and m["AP"] == 0.0 and m["VOC07_mAP50"] == 0.0 and m["VOC_mAP50"] == 0.0
    assert m["per_class_AP50"]["cat"] == 0.0 and math.isnan(m["per_class_AP50"]["kite"])
    assert m["num_detections"] == 0
    assert json.loads((tmp_path / "out" / "detections.json").read_text()) == []
    # and from a results file
    (tmp_path / "empty.json").write_text("[]")
    m2 = evaluate_files(tmp_path / "gt.json", tmp_path / "empty.json", None, verbose=False)
    assert m2["AP50"] == 0.0


def test_evaluation_covers_the_processed_images_once(tmp_path):
    gt = make_gt(6)
    outputs, reference = make_outputs(gt, 6)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ev = DetectionEvaluator(str(path), NAMES, CAT_IDS, verbose=False)
    ids = sorted(outputs)[:10]
    ev.process(ids, [outputs[i] for i in ids])
    ev.process(ids[:3], [outputs[i] for i in ids[:3]])  # repeats (sampler padding) count once
    m = ev.evaluate()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        E = COCOeval(coco, coco.loadRes([r for r in reference if r["image_id"] in ids]), "bbox")
        E.params.imgIds = ids
        E.evaluate(), E.accumulate(), E.summarize()
    assert m["num_images"] == 10
    assert m["AP50"] == E.stats[1] * 100
    ev.reset()
    assert ev.evaluate() == {}


def test_unknown_processed_image_is_an_error(tmp_path):
    gt = make_gt(0)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ev = DetectionEvaluator(str(path), NAMES, CAT_IDS, verbose=False)
    ev.process([123456], [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}])
    with pytest.raises(ValueError, match="123456"):
        ev.evaluate()


def test_ann_id_zero_is_still_matched(tmp_path):
    # COCOeval treats a matched gt id of 0 as "unmatched"; the loader renumbers such ids
    gt = {"images": [{"id": 0}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20],
                                                  "score": 0.5}]))
    m = evaluate_files(tmp_path / "gt.json", tmp_path / "dt.json", None, verbose=False)
    assert m["AP50"] == pytest.approx(100.0) and m["VOC_mAP50"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------ the CLI


def test_evaluate_files_end_to_end(tmp_path, capsys):
    gt = make_gt(7)
    _, reference = make_outputs(gt, 7)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(reference))
    m = evaluate_files(str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), str(tmp_path / "out"), plot=False)
    E = reference_cocoeval(gt, reference)
    assert m["AP50"] == E.stats[1] * 100
    assert list(m["per_class_AP50"]) == NAMES  # names from the gt categories, in id order
    text = capsys.readouterr().out
    assert text.index("mAP@0.5") < text.index("COCO  AP") < text.index("VOC07") < text.index("kite")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["AP50"] == m["AP50"]
    assert (tmp_path / "out" / "report.txt").exists()
    # tools/eval.py: files next to --dt by default, no plots with --no-plot
    eval_tool = load_tool("eval")
    again = eval_tool.main(["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), "--no-plot"])
    assert again["AP50"] == m["AP50"]
    assert json.loads((tmp_path / "metrics.json").read_text())["AP50"] == m["AP50"]
    assert not (tmp_path / "pr_curves.png").exists()
    # --output, or the OUTPUT_DIR override (the one override results-file mode honours)
    for args in (["--output", str(tmp_path / "o1")], ["OUTPUT_DIR", str(tmp_path / "o2")]):
        eval_tool.main(["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), *args])
    for d in ("o1", "o2"):
        assert json.loads((tmp_path / d / "metrics.json").read_text())["AP50"] == m["AP50"]
        assert (tmp_path / d / "pr_curves.png").stat().st_size > 0


def _exit_status_and_message(capsys, argv):
    with pytest.raises(SystemExit) as e:
        load_tool("eval").main(argv)
    return e.value.code, capsys.readouterr().err


def test_eval_results_file_mode_rejects_overrides_it_cannot_honour(tmp_path, capsys):
    gt = make_gt(7)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(make_outputs(gt, 7)[1]))
    files = ["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]
    code, err = _exit_status_and_message(capsys, [*files, "TEST.IMS_PER_BATCH", "4", "OUTPUT_DIR", str(tmp_path)])
    assert code == 2 and "TEST.IMS_PER_BATCH" in err and "OUTPUT_DIR" in err
    code, err = _exit_status_and_message(capsys, [*files, "--weights", "w.pth"])
    assert code == 2 and "--weights" in err
    code, err = _exit_status_and_message(capsys, [*files, "--output", str(tmp_path / "a"), "OUTPUT_DIR", "b"])
    assert code == 2 and "disagree" in err
    code, err = _exit_status_and_message(capsys, ["--gt", str(tmp_path / "gt.json")])
    assert code == 2 and "--gt and --dt go together" in err
    assert not (tmp_path / "metrics.json").exists()  # nothing was evaluated


def test_evaluate_files_errors_name_the_problem(tmp_path, capsys):
    gt = make_gt(8)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 100, "category_id": 3,\n "bbox": [1, 2, 3, 4] "score": 0.5}]')
    with pytest.raises(ValueError, match=r"bad\.json.*line 2, column 23"):
        evaluate_files(tmp_path / "gt.json", bad, None, verbose=False)
    badgt = tmp_path / "badgt.json"
    badgt.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"badgt\.json.*line 1"):
        evaluate_files(badgt, bad, None, verbose=False)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([
        {"image_id": 100, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 555, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5},
        {"image_id": 101, "category_id": 99, "bbox": [1, 2, 3, 4], "score": 0.5},
    ]))
    with pytest.raises(ValueError, match=r"image ids not in the ground truth: 555.*category ids not in the ground truth: 99"):
        evaluate_files(tmp_path / "gt.json", unknown, None, verbose=False)
    nobox = tmp_path / "nobox.json"
    nobox.write_text(json.dumps([{"image_id": 100, "category_id": 3, "score": 0.5}]))
    with pytest.raises(ValueError, match=r"entry #0 \(image_id 100\): has no 'bbox'"):
        evaluate_files(tmp_path / "gt.json", nobox, None, verbose=False)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        evaluate_files(tmp_path / "gt.json", tmp_path / "nope.json", None, verbose=False)
    code, err = _exit_status_and_message(capsys, ["--gt", str(tmp_path / "gt.json"), "--dt", str(unknown)])
    assert code == 2 and "unknown.json" in err and "555" in err
    code, err = _exit_status_and_message(capsys, ["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "nope")])
    assert code == 2 and "nope" in err


# ------------------------------------------------------------------ two processes (gloo)


def _dist_worker(rank, world, init_file, gt_path, out_dir, seed):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        gt = json.loads(open(gt_path).read())
        outputs, _ = make_outputs(gt, seed)
        ids = sorted(outputs)
        # interleaved shards as DistributedSampler makes them, the last one padded with a repeat
        mine = ids[rank::world] + ([ids[0]] if rank == world - 1 else [])
        ev = DetectionEvaluator(gt_path, NAMES, CAT_IDS, output_dir=out_dir if rank == 0 else None,
                                plot=False, verbose=False)
        ev.process(mine, [outputs[i] for i in mine])
        m = ev.evaluate()
        if rank != 0:
            assert m == {}
    finally:
        dist.destroy_process_group()


def test_distributed_gather_counts_every_image_once(tmp_path):
    import torch.multiprocessing as mp

    gt = make_gt(9)
    outputs, reference = make_outputs(gt, 9)
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    # fork: the children need not import torch again (no CUDA is initialised in the tests)
    mp.start_processes(_dist_worker, args=(2, str(tmp_path / "init"), str(gt_path), str(tmp_path / "dist"), 9),
                       nprocs=2, start_method="fork")
    m = json.loads((tmp_path / "dist" / "metrics.json").read_text())
    E = reference_cocoeval(gt, reference)
    assert m["num_images"] == len(gt["images"]) and m["num_detections"] == len(reference)
    assert m["AP50"] == E.stats[1] * 100


def test_ground_truth_without_boxes_gives_nan_and_null(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
                                                  "annotations": []}))
    (tmp_path / "dt.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                                                  "score": 0.3}]))
    m = evaluate_files(tmp_path / "gt.json", tmp_path / "dt.json", str(tmp_path / "o"), plot=False, verbose=False)
    assert math.isnan(m["AP50"]) and math.isnan(m["VOC_mAP50"]) and math.isnan(m["per_class_AP50"]["a"])
    saved = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert saved["AP50"] is None and saved["VOC07_mAP50"] is None
