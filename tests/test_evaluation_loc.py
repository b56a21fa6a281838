"""ImageNet-style localization errors on hand-made images."""

import json

import numpy as np
import pytest
import torch

from detection.evaluation import LocalizationEvaluator, localization_verdict

K = 10
GOOD = [10.0, 10.0, 50.0, 50.0]  # the gt box below
BAD = [60.0, 60.0, 90.0, 90.0]  # IoU 0 with it


def dense(boxes_by_class, default=BAD):
    b = torch.tensor([default] * K)
    for c, box in boxes_by_class.items():
        b[c] = torch.tensor(box)
    return b


def image(gt_class, ranking, boxes_by_class, gt_box=GOOD):
    """(ground-truth boxes and labels, model output) of one image."""
    gt = {"boxes": torch.tensor([gt_box]), "labels": torch.tensor([gt_class])}
    return gt, {"topk_labels": torch.tensor(ranking), "boxes_per_class": dense(boxes_by_class)}


def test_hand_made_cases():
    cases = {
        # 1: right class first, good box -> everything right
        1: image(3, [3, 1, 2, 4, 5], {3: GOOD}),
        # 2: right class first, bad box -> classification right, localization wrong
        2: image(3, [3, 1, 2, 4, 5], {3: BAD}),
        # 3: wrong classes only (the true class's box is good: only loc_err_gt is right)
        3: image(3, [0, 1, 2, 4, 5], {3: GOOD, 0: GOOD}),
        # 4: true class at rank 3 with a good box -> top-5 right, top-1 wrong
        4: image(3, [0, 1, 3, 4, 5], {3: GOOD}),
    }
    records = [{"image_id": i, **gt} for i, (gt, _) in cases.items()]
    ev = LocalizationEvaluator(records, output_dir=None, verbose=False)
    ev.process(list(cases), [out for _, out in cases.values()])
    m = ev.evaluate()
    # per image (gt_ok, loc1, loc5, cls1, cls5):
    #   1: T T T T T   2: F F F T T   3: T F F F F   4: T F T F T
    assert m["num_images"] == 4
    assert m["loc_err_gt"] == pytest.approx(100 * 1 / 4)    # only image 2
    assert m["loc_err_top1"] == pytest.approx(100 * 3 / 4)  # only image 1 right
    assert m["loc_err_top5"] == pytest.approx(100 * 2 / 4)  # images 1 and 4 right
    assert m["cls_err_top1"] == pytest.approx(100 * 2 / 4)  # images 3 and 4 wrong
    assert m["cls_err_top5"] == pytest.approx(100 * 1 / 4)  # image 3 wrong


def test_verdict_details():
    # IoU exactly 0.5 counts: gt [0,0,10,10], box [0,0,10,5]
    v = localization_verdict([[0, 0, 10, 10]], [2], [2], {2: [0, 0, 10, 5]})
    assert v[:5] == (True, True, True, True, True)
    v = localization_verdict([[0, 0, 10, 10]], [2], [2], {2: [0, 0, 10, 4.9]})
    assert v[:5] == (False, False, False, True, True)
    # several gt boxes of the class: one good match is enough
    v = localization_verdict([[100, 100, 120, 120], [0, 0, 10, 10]], [2, 2], [2], {2: [0, 0, 10, 10]})
    assert v[1]
    # a box matching a gt box of ANOTHER class does not count
    v = localization_verdict([[100, 100, 120, 120], [0, 0, 10, 10]], [2, 5], [2], {2: [0, 0, 10, 10]})
    assert v[:5] == (False, False, False, True, True)
    # dict without the true class's box: a miss, counted
    v = localization_verdict([[0, 0, 10, 10]], [2], [1, 2], {1: [0, 0, 10, 10]})
    assert v[:5] == (False, False, False, False, True) and v[5] == 1
    # only the first k of the ranking count
    v = localization_verdict([[0, 0, 10, 10]], [7], [0, 1, 2, 3, 4, 7], dense({7: [0, 0, 10, 10]}), topk=5)
    assert v[:5] == (True, False, False, False, False)


def test_scores_instead_of_ranking_and_bf16_outputs(tmp_path):
    records = [{"image_id": 11, "boxes": np.array([GOOD]), "labels": np.array([4])},
               {"image_id": 12, "boxes": np.array([GOOD]), "labels": np.array([6])},
               {"image_id": 13, "boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}]  # no box: skipped
    ev = LocalizationEvaluator(records, output_dir=str(tmp_path / "out"), verbose=False)
    s1 = torch.zeros(K)
    s1[4] = 5.0  # class 4 first
    s2 = torch.arange(K, dtype=torch.float32)  # ranking 9, 8, 7, 6, 5: class 6 at rank 4
    outs = [{"scores": s1.bfloat16(), "boxes_per_class": dense({4: GOOD}).bfloat16()},
            {"scores": s2, "boxes_per_class": dense({6: GOOD})}, {"scores": s2, "boxes_per_class": dense({})}]
    ev.process(torch.tensor([11, 12, 13]), outs)
    ev.process([11], outs[:1])  # repeated image counts once
    m = ev.evaluate()
    assert m["num_images"] == 2 and m["num_images_skipped"] == 1
    assert (m["loc_err_gt"], m["loc_err_top1"], m["loc_err_top5"]) == (0.0, 50.0, 0.0)
    assert (m["cls_err_top1"], m["cls_err_top5"]) == (50.0, 0.0)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for k in ["loc_err_gt", "loc_err_top1", "loc_err_top5", "cls_err_top1", "cls_err_top5"]:
        assert saved[k] == m[k]


class _Info:
    """Stand-in for detection.data.DatasetInfo (only what build_evaluator reads)."""

    def __init__(self, kind, json_file=None):
        self.name, self.evaluator_type, self.json_file = "toy", kind, json_file
        self.class_names = [f"c{c}" for c in range(K)]
        self.category_ids = list(range(1, K + 1))

    def coco_json(self, records, out_dir):
        return self.json_file


def test_build_evaluator_loc_uses_records(tmp_path):
    from detection.evaluation import DetectionEvaluator, build_evaluator

    records = [{"image_id": 7, "boxes": np.array([GOOD], np.float32), "labels": np.array([2]),
                "ignore": np.array([False])}]
    ev = build_evaluator(_Info("loc"), records, str(tmp_path))
    assert isinstance(ev, LocalizationEvaluator)
    ev.verbose = False
    ev.process([7], [{"topk_labels": [1, 2, 3, 4, 5], "boxes_per_class": {1: BAD, 2: GOOD, 3: BAD, 4: BAD, 5: BAD}}])
    m = ev.evaluate()
    assert (m["loc_err_gt"], m["loc_err_top1"], m["loc_err_top5"], m["cls_err_top1"], m["cls_err_top5"]) == (
        0.0, 100.0, 0.0, 100.0, 0.0)
    det = build_evaluator(_Info("voc", json_file="gt.json"), records, str(tmp_path))
    assert isinstance(det, DetectionEvaluator) and det.json_file == "gt.json"
    with pytest.raises(ValueError, match="unknown evaluator_type"):
        build_evaluator(_Info("seg"), records, str(tmp_path))
