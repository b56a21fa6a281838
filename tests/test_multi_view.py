"""Test-time augmentation and tiled inference: views made by the mapper, mapped back, cut boxes
dropped, merged per class (torchvision batched_nms, box voting), through the Predictor and evaluate()."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from detection.data.test_views import ImageViews, tile_regions, tile_starts
from detection.engine.predictor import Predictor
from detection.modeling.meta_arch.multi_view import MultiViewDetector
from tiny import tiny_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_tiles_cover_the_image_evenly_with_at_least_the_overlap():
    assert tile_starts(1000, 320, 0.25) == [0, 227, 453, 680]  # linspace(0, 680, ceil(680 / 240) + 1)
    assert tile_starts(300, 320, 0.25) == [0]
    assert tile_starts(640, 320, 0.0) == [0, 320]
    regions = tile_regions(500, 1000, 320, 0.25)
    assert len(regions) == 4 * 2 and regions[0] == (0, 0, 320, 320) and regions[-1] == (680, 180, 1000, 500)
    starts = tile_starts(2345, 512, 0.3)
    assert starts[0] == 0 and starts[-1] + 512 == 2345
    assert min(a + 512 - b for a, b in zip(starts, starts[1:])) >= 0.3 * 512


def test_views_are_the_regions_resized_and_flipped():
    image = _image(100, 200)
    views = ImageViews([50], 1000, flips=True, tile_size=120, tile_overlap=0.5, full_image=True)(image)
    assert [(v["region"], v["flip"], v["tile"]) for v in views][:4] == [
        ((0, 0, 200, 100), False, False), ((0, 0, 200, 100), True, False),
        ((0, 0, 120, 100), False, True), ((0, 0, 120, 100), True, True)]
    assert views[0]["image"].shape == (50, 100, 3)
    np.testing.assert_array_equal(views[1]["image"], views[0]["image"][:, ::-1])
    assert views[2]["image"].shape == (50, 60, 3)


def test_one_size_without_flip_is_the_plain_model(weights, single_thread):
    im = _image(100, 150)
    plain = Predictor.from_checkpoint(weights)(im)
    tta = Predictor.from_checkpoint(weights, {"TEST.AUG.ENABLED": True, "TEST.AUG.MIN_SIZES": [96],
                                              "TEST.AUG.MAX_SIZE": 128, "TEST.AUG.FLIP": False})(im)
    assert len(plain["boxes"]) > 0
    for k in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(tta[k], plain[k])


def test_flip_views_are_unflipped_and_merged_by_per_class_nms(weights, single_thread):
    im = _image(100, 150, seed=1)
    plain = Predictor.from_checkpoint(weights)
    a, b = plain(im), plain(np.ascontiguousarray(im[:, ::-1]))
    b_boxes = b["boxes"].copy()
    b_boxes[:, [0, 2]] = 150 - b["boxes"][:, [2, 0]]
    boxes = torch.from_numpy(np.concatenate([a["boxes"], b_boxes]))
    scores = torch.from_numpy(np.concatenate([a["scores"], b["scores"]]))
    labels = torch.from_numpy(np.concatenate([a["labels"], b["labels"]]))
    keep = batched_nms(boxes, scores, labels, 0.5)[:100]
    tta = Predictor.from_checkpoint(weights, {"TEST.AUG.ENABLED": True, "TEST.AUG.MIN_SIZES": [96],
                                              "TEST.AUG.MAX_SIZE": 128, "TEST.AUG.FLIP": True})(im)
    np.testing.assert_allclose(tta["boxes"], boxes[keep].numpy(), atol=1e-4)
    np.testing.assert_array_equal(tta["labels"], labels[keep].numpy())


def test_vote_averages_the_same_class_boxes_a_kept_box_suppressed():
    merge = MultiViewDetector(torch.nn.Identity(), nms_thresh=0.5, merge="vote")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.6, 0.5, 0.3])
    labels = torch.tensor([1, 1, 2, 1])
    out = merge.merge_detections(boxes, scores, labels)
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.4, 0, 10.4, 10], [0, 0, 10, 10], [50, 50, 60, 60]]))
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.5, 0.3]))
    assert out["labels"].tolist() == [1, 2, 1]
    nms = MultiViewDetector(torch.nn.Identity(), nms_thresh=0.5, merge="nms").merge_detections(boxes, scores, labels)
    torch.testing.assert_close(nms["boxes"], boxes[[0, 2, 3]])


def test_a_box_cut_by_a_tile_border_goes_when_another_tile_sees_it_whole():
    m = MultiViewDetector(torch.nn.Identity(), border=0.02)
    regions = torch.tensor([[0, 0, 120, 100], [80, 0, 200, 100], [0, 0, 200, 100]], dtype=torch.float32)
    tiles = torch.tensor([True, True, False])
    boxes = torch.tensor([[100, 10, 120, 30],   # tile 0, cut at x = 120, whole in tile 1: dropped
                          [100, 10, 130, 30],   # tile 1, whole there: kept
                          [10, 10, 120, 30],    # tile 0, cut, but tile 1 does not hold it whole: kept
                          [100, 10, 120, 30],   # the whole image's: never cut
                          [0, 0, 40, 100]], dtype=torch.float32)  # tile 0 at the image's own borders: kept
    view_of = torch.tensor([0, 1, 0, 2, 0])
    drop = m.cut_and_seen_whole_elsewhere(boxes, view_of, regions, tiles, (100, 200))
    assert drop.tolist() == [True, False, False, False, False]


def test_tiles_without_overlap_merge_the_two_halves(weights, single_thread):
    im = _image(96, 192, seed=2)
    plain = Predictor.from_checkpoint(weights)
    left, right = plain(np.ascontiguousarray(im[:, :96])), plain(np.ascontiguousarray(im[:, 96:]))
    boxes = torch.from_numpy(np.concatenate([left["boxes"], right["boxes"] + np.float32([96, 0, 96, 0])]))
    scores = torch.from_numpy(np.concatenate([left["scores"], right["scores"]]))
    labels = torch.from_numpy(np.concatenate([left["labels"], right["labels"]]))
    keep = batched_nms(boxes, scores, labels, 0.5)[:100]
    tiled = Predictor.from_checkpoint(weights, {"TEST.TILE.SIZE": 96, "TEST.TILE.OVERLAP": 0.0,
                                                "TEST.TILE.FULL_IMAGE": False, "TEST.IMS_PER_BATCH": 2})(im)
    np.testing.assert_allclose(tiled["boxes"], boxes[keep].numpy(), atol=1e-3)
    np.testing.assert_array_equal(tiled["labels"], labels[keep].numpy())


def test_evaluation_runs_the_views_through_the_same_mapper_and_model(tmp_path):
    from detection.config import load_config
    from detection.engine.inference import evaluate
    from detection.modeling import build_model
    from tiny import tiny_opts
    import os

    quickstart = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")
    cfg = load_config(quickstart, tiny_opts(tmp_path / "data", tmp_path / "out", 1, **{
        "TEST.TILE.SIZE": 64, "TEST.AUG.ENABLED": True, "TEST.AUG.MIN_SIZES": "[64, 96]", "TEST.AUG.MAX_SIZE": 128}))
    metrics = evaluate(cfg, build_model(cfg))["synthetic_val"]
    assert metrics["num_images"] == 4 and metrics["num_detections"] > 0
    with pytest.raises(ValueError, match="TEST.AUG.MERGE"):
        from detection.modeling import build_test_model

        cfg.TEST.AUG.MERGE = "mean"
        build_test_model(cfg, build_model(cfg))
