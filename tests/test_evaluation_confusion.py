"""Confusion matrix (issue #14's definition) and precision/recall/F1 against score, on
hand-made scenes with hand-computed values."""

import numpy as np
import pytest

from detection.evaluation.confusion import confusion_matrix, greedy_match
from detection.evaluation.thresholds import best_f1, f1_curve, f1_curves
from detection.evaluation.voc_eval import voc_eval_arrays
from flat_arrays import det_arrays, gt_arrays


CAT, DOG = 0, 1


def _scene():
    gt = gt_arrays([
        (1, CAT, [0, 0, 10, 10], False),     # A: found by d1
        (1, DOG, [20, 0, 30, 10], False),    # B: taken by d2 (a cat detection)
        (1, CAT, [40, 0, 50, 10], False),    # C: missed
        (1, DOG, [60, 0, 80, 20], True),     # crowd
    ])
    dt = det_arrays([
        (1, CAT, [0, 0, 10, 10], 0.9),       # d1: true positive
        (1, CAT, [20, 0, 30, 10], 0.8),      # d2: on a dog -> cell (dog, cat)
        (1, DOG, [0, 0, 10, 10], 0.7),       # d3: A taken already, nothing else -> background row
        (1, DOG, [62, 2, 78, 18], 0.6),      # d4: on the crowd box (IoU 256/400) -> ignored
        (1, CAT, [100, 100, 110, 110], 0.2),  # d5: under the threshold -> not counted
    ])
    return gt, dt


def test_confusion_matrix_counts_each_case_of_the_definition():
    gt, dt = _scene()
    m = confusion_matrix(gt, dt, 2, score_thresh=0.5)
    # rows gt (cat, dog, background), columns predicted (cat, dog, background)
    assert m.tolist() == [[1, 0, 1],
                          [1, 0, 0],
                          [0, 1, 0]]


def test_confusion_matrix_per_class_thresholds_drop_low_detections():
    gt, dt = _scene()
    m = confusion_matrix(gt, dt, 2, score_thresh=[0.85, 0.5])  # d2 (cat 0.8) is dropped: B missed
    assert m.tolist() == [[1, 0, 1],
                          [0, 0, 1],
                          [0, 1, 0]]


def test_greedy_match_takes_the_best_unmatched_box_of_any_class():
    # cat box A and dog box B overlap (IoU 100/120). d1 fits B exactly, d2 fits A exactly.
    gt = gt_arrays([(5, CAT, [0, 0, 10, 10], False), (5, DOG, [0, 0, 10, 12], False)])
    dt = det_arrays([(5, CAT, [0, 0, 10, 12], 0.9), (5, DOG, [0, 0, 10, 10], 0.8), (5, DOG, [0, 0, 10, 11], 0.7)])
    det_gt, ignored = greedy_match(gt, dt, np.ones(3, dtype=bool))
    assert det_gt.tolist() == [1, 0, -1]  # d3: both boxes taken -> no match
    assert not ignored.any()
    m = confusion_matrix(gt, dt, 2, 0.0)
    assert m.tolist() == [[0, 1, 0], [1, 0, 0], [0, 1, 0]]


def test_f1_curve_hand_computed():
    # 3 gt; detections TP, FP, TP, FP in score order
    c = f1_curve([0.9, 0.8, 0.7, 0.6], [True, False, True, False], 3)
    assert c["score"].tolist() == [0.9, 0.8, 0.7, 0.6]
    np.testing.assert_allclose(c["precision"], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(c["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(c["f1"], [1 / 2, 2 / 5, 2 / 3, 4 / 7])
    b = best_f1(c)
    assert b["f1"] == pytest.approx(2 / 3) and b["score_thresh"] == 0.7
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(2 / 3)


def test_f1_curve_tied_scores_are_one_threshold():
    c = f1_curve([0.9, 0.9, 0.5], [False, True, True], 2)
    assert c["score"].tolist() == [0.9, 0.5]
    np.testing.assert_allclose(c["precision"], [1 / 2, 2 / 3])
    np.testing.assert_allclose(c["recall"], [1 / 2, 1])


def test_best_f1_is_none_without_ground_truth_or_true_positive():
    assert best_f1(f1_curve([0.9], [False], 0))["score_thresh"] is None
    assert best_f1(f1_curve([0.9], [False], 2))["f1"] is None
    assert best_f1(f1_curve([], [], 2))["f1"] is None


def test_overall_curve_pools_the_classes():
    # class 0: 1 gt, detection 0.9 TP; class 1: 2 gt, detections 0.8 FP, 0.7 TP
    gt = gt_arrays([(1, 0, [0, 0, 10, 10], False), (1, 1, [20, 0, 30, 10], False), (2, 1, [0, 0, 10, 10], False)])
    dt = det_arrays([(1, 0, [0, 0, 10, 10], 0.9), (1, 1, [50, 50, 60, 60], 0.8), (2, 1, [0, 0, 10, 10], 0.7)])
    voc = voc_eval_arrays(gt.boxes, gt.labels, gt.image, dt.boxes, dt.scores, dt.labels, dt.image, 2)
    per_class, overall = f1_curves(voc)
    assert best_f1(per_class[0])["score_thresh"] == 0.9 and best_f1(per_class[0])["f1"] == 1.0
    # class 1 at 0.7: P 1/2, R 1/2 -> F1 1/2
    assert best_f1(per_class[1])["f1"] == pytest.approx(0.5)
    # pooled, 3 gt: 0.9 -> P 1, R 1/3 (F1 1/2); 0.8 -> P 1/2, R 1/3 (2/5); 0.7 -> P 2/3, R 2/3 (2/3)
    np.testing.assert_allclose(overall["f1"], [1 / 2, 2 / 5, 2 / 3])
    assert best_f1(overall)["score_thresh"] == 0.7
