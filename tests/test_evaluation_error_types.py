"""TIDE-style error types: a hand-made scene where each type occurs once, with the VOC AP
gains of fixing each type computed by hand."""

import numpy as np
import pytest

from detection.evaluation.error_types import BKG, BOTH, CLS, DUP, IGNORED, LOC, TP, classify_detections, error_breakdown
from flat_arrays import det_arrays, gt_arrays

CAT, DOG = 0, 1


def _sq(x):
    return [x, 0, x + 10, 10]


def _scene():
    gt = gt_arrays([
        (1, CAT, _sq(0), False),    # G1 found by d1
        (1, DOG, _sq(100), False),  # G2 found by d3
        (1, CAT, _sq(200), False),  # G3 target of the localization error d4
        (1, DOG, _sq(300), False),  # G4 missed
        (1, CAT, _sq(400), False),  # G5 target of the classification error d5
        (1, DOG, _sq(600), False),  # G6 found by d8
        (1, CAT, _sq(700), False),  # G7 found by d9
    ])
    dt = det_arrays([
        (1, CAT, _sq(0), 0.95),                      # d1 true positive
        (1, CAT, _sq(0), 0.90),                      # d2 duplicate of d1
        (1, DOG, _sq(100), 0.85),                    # d3 true positive
        (1, CAT, _sq(205), 0.80),                    # d4 localization: IoU 50/150 with G3
        (1, DOG, _sq(400), 0.75),                    # d5 classification: a dog box on cat G5
        (1, DOG, _sq(5), 0.70),                      # d6 both: IoU 1/3 with cat G1, no dog near
        (1, CAT, [500, 500, 510, 510], 0.65),        # d7 background
        (1, DOG, _sq(600), 0.50),                    # d8 true positive
        (1, CAT, _sq(700), 0.50),                    # d9 true positive
    ])
    return gt, dt


def test_each_error_type_is_found_once():
    gt, dt = _scene()
    outcome, target, tp_gt, missed = classify_detections(gt, dt)
    assert outcome.tolist() == [TP, DUP, TP, LOC, CLS, BOTH, BKG, TP, TP]
    assert target.tolist() == [0, -1, 1, 2, 4, -1, -1, 5, 6]
    assert missed.tolist() == [False, False, False, True, False, False, False]
    b = error_breakdown(gt, dt, 2)
    assert b["counts"] == {t: 1 for t in ("classification", "localization", "both", "duplicate", "background",
                                          "missed")}
    assert b["per_class"][CAT]["counts"] == {"classification": 0, "localization": 1, "both": 0, "duplicate": 1,
                                             "background": 1, "missed": 0}
    assert b["per_class"][DOG]["counts"] == {"classification": 1, "localization": 0, "both": 1, "duplicate": 0,
                                             "background": 0, "missed": 1}


def test_ap50_gained_by_fixing_each_type_alone_hand_computed():
    # base VOC area-rule AP: cat (4 gt; TP FP FP FP TP) = 1/4 + 1/4 * 2/5 = 7/20;
    # dog (3 gt; TP FP FP TP) = 1/3 + 1/3 * 1/2 = 1/2
    gt, dt = _scene()
    b = error_breakdown(gt, dt, 2)
    cat = {
        "classification": 1 / 2 - 7 / 20,   # d5 becomes a cat TP: TP FP FP TP FP TP -> 1/4 + 1/4 * 1/2 + 1/4 * 1/2
        "localization": 17 / 30 - 7 / 20,   # d4 on G3: TP FP TP FP TP -> 1/4 + 1/4 * 2/3 + 1/4 * 3/5
        "both": 0.0,
        "duplicate": 3 / 8 - 7 / 20,        # d2 removed: TP FP FP TP -> 1/4 + 1/4 * 1/2
        "background": 3 / 8 - 7 / 20,       # d7 removed: the same
        "missed": 0.0,
    }
    dog = {
        "classification": 5 / 9 - 1 / 2,    # d5 leaves the dogs: TP FP TP -> 1/3 + 1/3 * 2/3
        "localization": 0.0,
        "both": 5 / 9 - 1 / 2,              # d6 removed: the same
        "duplicate": 0.0,
        "background": 0.0,
        "missed": 3 / 4 - 1 / 2,            # G4 removed, 2 gt: TP FP FP TP -> 1/2 + 1/2 * 1/2
    }
    for t in cat:
        assert b["per_class"][CAT]["AP50_gain"][t] == pytest.approx(cat[t] * 100, abs=1e-9), t
        assert b["per_class"][DOG]["AP50_gain"][t] == pytest.approx(dog[t] * 100, abs=1e-9), t
        assert b["AP50_gain"][t] == pytest.approx((cat[t] + dog[t]) / 2 * 100, abs=1e-9), t


def test_localization_comes_before_classification_and_crowd_is_ignored():
    gt = gt_arrays([(1, CAT, _sq(0), False), (1, DOG, _sq(3), False), (1, DOG, _sq(100), True)])
    dt = det_arrays([(1, CAT, _sq(3), 0.9),     # cat IoU 70/130 >= 0.5: a true positive
              (1, CAT, _sq(6), 0.8),     # cat IoU 40/160 = 1/4, dog IoU 70/130 >= 0.5: localization first
              (1, DOG, _sq(100), 0.7)])  # on the crowd box: ignored
    outcome, target, _, missed = classify_detections(gt, dt)
    assert outcome.tolist() == [TP, LOC, IGNORED]
    assert target.tolist() == [0, 0, -1]
    assert missed.tolist() == [False, True, False]  # the dog: no TP, no cls/loc error aims at it


def test_fixing_onto_a_found_box_removes_the_detection():
    # cat boxes A (found at 0.95) and B (found at 0.5); a dog detection on A at 0.9. Relabelled
    # to cat it would be a duplicate FP between the two TPs (cat AP 1/2 + 1/2 * 2/3); removed,
    # cat AP stays 1.
    gt = gt_arrays([(1, CAT, _sq(0), False), (1, CAT, _sq(100), False)])
    dt = det_arrays([(1, CAT, _sq(0), 0.95), (1, DOG, _sq(0), 0.9), (1, CAT, _sq(100), 0.5)])
    b = error_breakdown(gt, dt, 2)
    assert b["counts"]["classification"] == 1
    assert b["per_class"][CAT]["AP50_gain"]["classification"] == pytest.approx(0.0)
    assert np.isnan(b["per_class"][DOG]["AP50_gain"]["classification"])  # no dog ground truth
