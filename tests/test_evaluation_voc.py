"""PASCAL VOC AP: hand-computed cases, the difficult rule, and a loop port of VOCdevkit."""

import math

import numpy as np
import pytest

from detection.evaluation.voc_eval import voc_ap, voc_eval_arrays, voc_eval_coco


def _box(x, y, s=10.0):
    return [x, y, x + s, y + s]


# ---------------------------------------------------------------- the AP rules on a PR curve


def test_voc_ap_rules_hand_computed():
    # 3 gt, 4 detections in score order: TP, FP, TP, FP
    # cumTP 1 1 2 2, cumFP 0 1 1 2
    rec = np.array([1, 1, 2, 2]) / 3.0  # 1/3 1/3 2/3 2/3
    prec = np.array([1 / 1, 1 / 2, 2 / 3, 2 / 4])
    # area rule: mrec = [0, 1/3, 1/3, 2/3, 2/3, 1], mpre = [0, 1, 1/2, 2/3, 1/2, 0]
    # envelope (right-to-left max): [1, 1, 2/3, 2/3, 1/2, 0]
    # recall steps: 0->1/3 at p=1, 1/3->2/3 at p=2/3, 2/3->1 at p=0
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9
    assert voc_ap(rec, prec) == pytest.approx(5 / 9, abs=1e-12)
    # 11-point: t = 0, .1, .2, .3 -> max prec at rec >= t = 1 (rec 1/3 >= .3)
    #           t = .4, .5, .6 -> max(2/3, 1/2) = 2/3 ; t = .7 ... 1 -> 0
    # AP = (4 * 1 + 3 * 2/3 + 4 * 0) / 11 = 6/11
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(6 / 11, abs=1e-12)


def test_voc_ap_perfect_and_empty():
    rec = np.array([0.5, 1.0])
    prec = np.array([1.0, 1.0])
    assert voc_ap(rec, prec) == pytest.approx(1.0)
    assert voc_ap(rec, prec, True) == pytest.approx(1.0)
    assert voc_ap([], []) == 0.0
    assert voc_ap([], [], True) == 0.0


def test_voc07_recall_exactly_a_tenth_reaches_the_threshold():
    # 10 gt, 3 TPs then stop: recall 0.1, 0.2, 0.3 (= 3/10 exactly), precision 1.
    # t = 0, .1, .2, .3 -> 1 ; t >= .4 -> 0  => 4/11 (np.arange(0, 1.1, .1) would give 3/11)
    rec = np.array([1, 2, 3]) / 10.0
    prec = np.ones(3)
    assert voc_ap(rec, prec, True) == pytest.approx(4 / 11, abs=1e-12)
    # area: 0.3 * 1
    assert voc_ap(rec, prec) == pytest.approx(0.3, abs=1e-12)


# ------------------------------------------------------- matching on boxes (hand-made scenes)


def _scene():
    """image 1: gt A, B; image 2: gt C (class 0). Detections (scores desc):
    d1 on A (TP), d2 on nothing (FP), d3 on C (TP), d4 on A again (duplicate -> FP)."""
    gt_boxes = [_box(0, 0), _box(50, 50), _box(0, 0)]
    gt_labels = [0, 0, 0]
    gt_image = [1, 1, 2]
    det_boxes = [_box(0, 0), _box(100, 100), _box(1, 0), _box(0, 1)]
    det_scores = [0.9, 0.8, 0.7, 0.6]
    det_labels = [0, 0, 0, 0]
    det_image = [1, 1, 2, 1]
    return gt_boxes, gt_labels, gt_image, det_boxes, det_scores, det_labels, det_image


def test_voc_eval_hand_case_matches_the_pr_arithmetic():
    gb, gl, gi, db, ds, dl, di = _scene()
    (r,) = voc_eval_arrays(gb, gl, gi, db, ds, dl, di, num_classes=1)
    np.testing.assert_allclose(r["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(r["precision"], [1, 1 / 2, 2 / 3, 1 / 2])
    assert r["ap"] == pytest.approx(5 / 9, abs=1e-12)
    assert r["ap07"] == pytest.approx(6 / 11, abs=1e-12)
    assert (r["num_gt"], r["num_det"], r["num_tp"]) == (3, 4, 2)


def test_voc_eval_input_order_does_not_matter():
    gb, gl, gi, db, ds, dl, di = _scene()
    perm = [3, 1, 0, 2]
    (r,) = voc_eval_arrays(gb, gl, gi, np.asarray(db)[perm], np.asarray(ds)[perm], np.asarray(dl)[perm],
                           np.asarray(di)[perm], num_classes=1)
    assert r["ap"] == pytest.approx(5 / 9, abs=1e-12)


def test_difficult_boxes_are_ignored():
    gb, gl, gi, db, ds, dl, di = _scene()
    (base,) = voc_eval_arrays(gb, gl, gi, db, ds, dl, di, num_classes=1)
    # add a difficult box in image 2 and a detection on it, scored in the middle of the list
    gb2, gl2, gi2 = gb + [_box(200, 200)], gl + [0], gi + [2]
    diff = [False, False, False, True]
    db2, ds2, dl2, di2 = db + [_box(201, 200)], ds + [0.75], dl + [0], di + [2]
    (r,) = voc_eval_arrays(gb2, gl2, gi2, db2, ds2, dl2, di2, num_classes=1, gt_difficult=diff)
    assert r["num_gt"] == 3  # the difficult box does not count in npos
    assert r["num_tp"] == 2 and r["num_det"] == 5
    assert r["ap"] == base["ap"] and r["ap07"] == base["ap07"]
    np.testing.assert_array_equal(r["recall"], base["recall"])
    # an undetected difficult box costs nothing either
    (r2,) = voc_eval_arrays(gb2, gl2, gi2, db, ds, dl, di, num_classes=1, gt_difficult=diff)
    assert r2["ap"] == base["ap"]
    # ... whereas the same box not difficult is a miss: recall 2/4 at most
    (r3,) = voc_eval_arrays(gb2, gl2, gi2, db, ds, dl, di, num_classes=1)
    assert r3["num_gt"] == 4 and r3["recall"][-1] == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_and_continuous():
    # gt [0,0,10,10]; det [0,0,10,5]: IoU = 50/100 = 0.5 exactly (continuous, no +1) -> TP
    (r,) = voc_eval_arrays([[0, 0, 10, 10]], [0], [1], [[0, 0, 10, 5]], [1.0], [0], [1], num_classes=1)
    assert r["num_tp"] == 1 and r["ap"] == pytest.approx(1.0)
    # with VOC's +1 convention it would be 11*6/(11*11) = 0.545; a box at IoU 0.49 is a FP
    (r,) = voc_eval_arrays([[0, 0, 10, 10]], [0], [1], [[0, 0, 10, 4.9]], [1.0], [0], [1], num_classes=1)
    assert r["num_tp"] == 0 and r["ap"] == 0.0


def test_classes_are_separate_and_missing_gt_is_nan():
    gt_boxes = [_box(0, 0), _box(50, 50)]
    gt_labels = [0, 1]
    # class-1 detection on the class-0 box: FP for class 1 (and no help for class 0)
    res = voc_eval_arrays(gt_boxes, gt_labels, [1, 1], [_box(0, 0), _box(0, 0)], [0.9, 0.8], [1, 2], [1, 1],
                          num_classes=3)
    assert res[0]["ap"] == 0.0 and res[0]["num_det"] == 0
    assert res[1]["ap"] == 0.0 and res[1]["num_tp"] == 0
    assert math.isnan(res[2]["ap"]) and math.isnan(res[2]["ap07"])  # no gt of class 2


def test_duplicate_does_not_fall_back_to_second_best_box():
    # two overlapping gts G1=[0,0,10,10], G2=[2,0,12,10]; d1 == G1 (TP on G1); d2 == G1 too:
    # its best box is G1 (taken) -> FP, although IoU(d2, G2) = 80/120 >= 0.5 (VOCdevkit rule)
    (r,) = voc_eval_arrays([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0], [1, 1], [[0, 0, 10, 10], [0, 0, 10, 10]],
                           [0.9, 0.8], [0, 0], [1, 1], num_classes=1)
    assert r["num_tp"] == 1
    np.testing.assert_allclose(r["precision"], [1.0, 0.5])


# ------------------------------------------------ against a loop port of VOCdevkit's voc_eval


def _reference_voc(gt_boxes, gt_labels, gt_image, gt_diff, det_boxes, det_scores, det_labels, det_image, c):
    """Literal port of VOCevaldet.m / py-faster-rcnn voc_eval (continuous IoU, >=, stable sort)."""
    recs = {}
    for b, l, i, d in zip(gt_boxes, gt_labels, gt_image, gt_diff):
        if l != c:
            continue
        r = recs.setdefault(i, {"bbox": [], "difficult": [], "det": []})
        r["bbox"].append(b)
        r["difficult"].append(d)
        r["det"].append(False)
    npos = sum(1 for l, d in zip(gt_labels, gt_diff) if l == c and not d)
    idx = [k for k in range(len(det_labels)) if det_labels[k] == c]
    idx = sorted(idx, key=lambda k: -det_scores[k])  # python sort is stable
    tp, fp = [], []
    for k in idx:
        R = recs.get(det_image[k])
        bb = det_boxes[k]
        ovmax, jmax = -np.inf, -1
        if R is not None:
            for j, g in enumerate(R["bbox"]):
                iw = min(bb[2], g[2]) - max(bb[0], g[0])
                ih = min(bb[3], g[3]) - max(bb[1], g[1])
                if iw > 0 and ih > 0:
                    inter = iw * ih
                    ua = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                    ov = inter / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if R["difficult"][jmax]:
                continue
            if not R["det"][jmax]:
                tp.append(1), fp.append(0)
                R["det"][jmax] = True
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    if npos == 0:
        return float("nan"), float("nan")
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    # 07 rule written out with the same thresholds k/10
    ap07 = sum((np.max(prec[rec >= t]) if np.any(rec >= t) else 0.0) for t in np.arange(11) / 10.0) / 11.0
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap, ap07


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorised_matching_equals_the_loop_reference(seed):
    rng = np.random.default_rng(seed)
    K, n_img = 3, 12
    gt_boxes, gt_labels, gt_image, gt_diff = [], [], [], []
    for i in range(n_img):
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(8, 30, 2)
            gt_boxes.append([x, y, x + w, y + h])
            gt_labels.append(int(rng.integers(0, K)))
            gt_image.append(i)
            gt_diff.append(bool(rng.random() < 0.15))
    det_boxes, det_scores, det_labels, det_image = [], [], [], []
    for b, l, i in zip(gt_boxes, gt_labels, gt_image):
        for _ in range(rng.integers(0, 3)):  # jittered copies -> TPs, duplicates, misses
            det_boxes.append(list(np.asarray(b) + rng.normal(0, 3, 4)))
            det_labels.append(l if rng.random() < 0.85 else int(rng.integers(0, K)))
            det_image.append(i)
    for _ in range(40):  # background
        x, y = rng.uniform(0, 80, 2)
        det_boxes.append([x, y, x + 15, y + 15])
        det_labels.append(int(rng.integers(0, K)))
        det_image.append(int(rng.integers(0, n_img)))
    det_scores = list(np.round(rng.random(len(det_boxes)), 2))  # ties on purpose
    res = voc_eval_arrays(gt_boxes, gt_labels, gt_image, det_boxes, det_scores, det_labels, det_image,
                          num_classes=K, gt_difficult=gt_diff)
    for c in range(K):
        ap, ap07 = _reference_voc(gt_boxes, gt_labels, gt_image, gt_diff, det_boxes, det_scores, det_labels,
                                  det_image, c)
        assert res[c]["ap"] == pytest.approx(ap, abs=1e-12, nan_ok=True)
        assert res[c]["ap07"] == pytest.approx(ap07, abs=1e-12, nan_ok=True)


def test_voc_eval_coco_reads_iscrowd_as_difficult():
    gt = {
        "images": [{"id": 5}],
        "categories": [{"id": 11, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 11, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 11, "bbox": [50, 50, 10, 10], "iscrowd": 1},
        ],
    }
    results = [
        {"image_id": 5, "category_id": 11, "bbox": [50, 50, 10, 10], "score": 0.9},  # on the difficult box
        {"image_id": 5, "category_id": 11, "bbox": [0, 0, 10, 10], "score": 0.8},
    ]
    (r,) = voc_eval_coco(gt, results, [11])
    assert r["num_gt"] == 1 and r["num_tp"] == 1 and r["ap"] == pytest.approx(1.0)


def test_no_ground_truth_at_all_is_nan_not_a_crash():
    res = voc_eval_arrays(np.zeros((0, 4)), [], [], [_box(0, 0)], [0.5], [0], [1], num_classes=2)
    assert all(math.isnan(r["ap"]) and math.isnan(r["ap07"]) for r in res)
    assert res[0]["num_det"] == 1 and res[0]["num_tp"] == 0
