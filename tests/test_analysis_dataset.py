"""tools/analyze.py dataset: class counts, resized box sizes and anchor coverage against brute force."""
import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detection.analysis.dataset import coverage_shares, dataset_report, suggest_anchors
from detection.config import load_config
from detection.data.records import make_record

from tiny import QUICKSTART, tiny_opts
from tool_scripts import load_tool

# Two image sizes; test resize 64 / 100: 100x150 -> 64x96 (scale 0.64), 40x40 -> 64x64 (scale 1.6).
RECORDS = [
    make_record("a.jpg", 1, 100, 150, [[10, 10, 60, 40], [0, 50, 150, 100], [90, 5, 100, 95]], [0, 1, 1],
                [False, False, False]),
    make_record("b.jpg", 2, 40, 40, [[5, 5, 15, 15], [20, 0, 40, 40]], [2, 0], [False, True]),
    make_record("c.jpg", 3, 100, 150, [[30, 30, 70, 70], [25, 25, 50, 50]], [0, 0], [False, False]),
]
OPTS = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "100", "MODEL.ANCHOR_GENERATOR.SIZES", "[8, 16, 32]",
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[0.5, 1.0, 2.0]", "MODEL.ANCHOR_GENERATOR.OFFSET", "0.5",
        "MODEL.SIZE_DIVISIBILITY", "32"]


def brute_force_best_iou(record, cfg):
    """Every anchor written out: cell (i, j) centre ((j + offset) * 16, (i + offset) * 16) on the padded
    image's grid, kept if its centre is inside the resized image."""
    a = cfg.MODEL.ANCHOR_GENERATOR
    h, w = record["height"], record["width"]
    scale = cfg.INPUT.MIN_SIZE_TEST / min(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    ph, pw = math.ceil(nh / 32) * 32, math.ceil(nw / 32) * 32
    anchors = []
    for i in range(ph // 16):
        for j in range(pw // 16):
            cx, cy = (j + a.OFFSET) * 16, (i + a.OFFSET) * 16
            if cx >= nw or cy >= nh:
                continue
            for s in a.SIZES:
                for r in a.ASPECT_RATIOS:
                    aw = math.sqrt(s * s / r)
                    ah = r * aw
                    anchors.append([cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2])
    boxes = torch.tensor(record["boxes"][~record["ignore"]], dtype=torch.float64)
    boxes = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=torch.float64)
    return box_iou(boxes, torch.tensor(anchors, dtype=torch.float64)).max(dim=1).values


def test_anchor_coverage_matches_brute_force_box_iou():
    cfg = load_config(None, OPTS)
    report = dataset_report(RECORDS, ["x", "y", "z"], cfg, "hand")
    best = torch.cat([brute_force_best_iou(r, cfg) for r in RECORDS]).float()
    assert len(best) == 6  # the ignore box is not a target
    assert best[-1] == pytest.approx(1.0)  # resized to [16, 16, 32, 32]: the 16-px anchor of cell (1, 1)
    expected = coverage_shares(best, [0.3, 0.7])
    got = report["anchors"]["configured"]["coverage"]
    for key in ("positive", "between", "below"):
        assert got[key] == pytest.approx(expected[key]), key
    assert 0 < expected["positive"] < 1 and expected["below"] > 0  # the case has every kind of box
    assert got["median_best_iou"] == pytest.approx(float(best.median()), abs=1e-5)
    assert sum(report["histograms"]["best_anchor_iou"]["counts"]) == 6


def test_class_counts_and_sizes_after_the_test_resize():
    report = dataset_report(RECORDS, ["x", "y", "z"], load_config(None, OPTS), "hand")
    assert [(c["images"], c["boxes"], c["ignored"]) for c in report["classes"]] == [(2, 3, 1), (1, 2, 0), (1, 1, 0)]
    assert report["num_boxes"] == 6 and report["num_ignored"] == 1 and report["images_without_boxes"] == 0
    # widths: 50, 150, 10, 40, 25 px * 0.64; 10 px * 1.6
    assert report["quantiles"]["width"][0] == pytest.approx(6.4) and report["quantiles"]["width"][-1] == pytest.approx(96)


def test_suggested_anchors_are_quantiles_of_size_and_aspect():
    side = np.array([10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    aspect = np.array([0.5] * 4 + [1.0] * 2 + [2.0] * 4)
    sizes, ratios = suggest_anchors(side, aspect, 2, 3)
    assert sizes == [int(round(np.quantile(side, 0.25))), int(round(np.quantile(side, 0.75)))]
    assert ratios == [0.5, 1.0, 2.0]


def test_analyze_dataset_command_writes_table_json_and_png(tmp_path, capsys):
    tool = load_tool("analyze")
    opts = tiny_opts(tmp_path / "data", tmp_path / "out", 2)
    res = tool.main(["dataset", "--config", QUICKSTART, "--output",
                     str(tmp_path / "a"), *opts])
    assert (tmp_path / "a" / "dataset.json").is_file() and (tmp_path / "a" / "dataset.png").is_file()
    out = capsys.readouterr().out
    assert "MODEL.ANCHOR_GENERATOR.SIZES [" in out and "synthetic_train: 8 images" in out
    assert sum(c["boxes"] for c in res["classes"]) == res["num_boxes"] > 0
