"""Transforms and the mapper: the resize rule, exact flips, boxes that stay on the objects through
resize/flip/crop, interpolation modes, output format, and the counting of dropped boxes."""
import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detection.config.config import load_config
from detection.data import (DatasetMapper, data_stats, resize_image,
                            resize_shortest_edge_size)
from detection.data.records import make_record
from detection.modeling.box_ops import to_original


def make_cfg(*opts):
    return load_config(None, list(opts))


def brief_formula(h, w, short, max_size):
    scale = short / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    newh, neww = h * scale, w * scale
    return int(newh + 0.5), int(neww + 0.5)


@pytest.mark.parametrize("h, w, short, max_size, expected", [
    (480, 640, 800, 1333, (800, 1067)),
    (640, 480, 800, 1333, (1067, 800)),
    (500, 375, 600, 1000, (800, 600)),
    (300, 1000, 800, 1333, (400, 1333)),     # max-size cap
    (1000, 300, 800, 1333, (1333, 400)),
    (427, 640, 800, 1333, (800, 1199)),
    (800, 800, 800, 1333, (800, 800)),
    (333, 500, 256, 320, (213, 320)),        # cap, with rounding
])
def test_resize_rule(h, w, short, max_size, expected):
    assert resize_shortest_edge_size(h, w, short, max_size) == expected
    assert brief_formula(h, w, short, max_size) == expected


def test_resize_rule_many_sizes():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w = (int(v) for v in rng.integers(20, 3000, 2))
        short, max_size = int(rng.choice([256, 480, 600, 800])), int(rng.choice([320, 1000, 1333]))
        assert resize_shortest_edge_size(h, w, short, max_size) == brief_formula(h, w, short, max_size)


def test_pil_and_cv2_interpolation():
    img = np.random.default_rng(0).integers(0, 256, (61, 97, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((40, 25), Image.BILINEAR))
    np.testing.assert_array_equal(resize_image(img, (25, 40), "pil_bilinear"), expected)
    np.testing.assert_array_equal(resize_image(img, (25, 40), "bilinear"),
                                  cv2.resize(img, (40, 25), interpolation=cv2.INTER_LINEAR))
    with pytest.raises(ValueError, match="RESIZE_INTERP"):
        resize_image(img, (25, 40), "nearest-ish")


def box_image(tmp_path, h=150, w=230, box=(37, 52, 121, 97), color=(255, 255, 255)):
    """A black PNG with one filled box (continuous xyxy); returns its record."""
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = color
    path = str(tmp_path / "box.png")
    cv2.imwrite(path, img)
    return make_record(path, 1, h, w, [box], [3], [False])


def nonzero_bounds(image_chw):
    mask = image_chw.numpy().max(axis=0) > 127
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_train_mapper_boxes_follow_pixels_and_flip_is_exact(tmp_path):
    record = box_image(tmp_path)
    cfg = make_cfg("INPUT.MIN_SIZE_TRAIN", "[100, 200, 300]", "INPUT.MAX_SIZE_TRAIN", "400")
    mapper = DatasetMapper(cfg, is_train=True)
    sizes, flips = set(), 0
    for seed in range(12):
        out = mapper(record, seed=seed)
        H, W = out["image"].shape[1:]
        assert (H, W) in {resize_shortest_edge_size(150, 230, s, 400) for s in (100, 200, 300)}
        sizes.add((H, W))
        box = out["boxes"][0].numpy()
        np.testing.assert_allclose(box, nonzero_bounds(out["image"]), atol=1.5)
        scale = np.array([W / 230, H / 150] * 2)
        unflipped = np.array([37, 52, 121, 97]) * scale
        flipped = np.array([W - unflipped[2], unflipped[1], W - unflipped[0], unflipped[3]])
        if np.allclose(box, flipped, atol=1e-3):
            flips += 1
        else:
            np.testing.assert_allclose(box, unflipped, atol=1e-3)
        assert out["labels"].tolist() == [3]
    assert len(sizes) == 3 and 0 < flips < 12
    # the same seed gives the same result
    a, b = mapper(record, seed=5), mapper(record, seed=5)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])


def test_flip_exact_without_resize(tmp_path):
    record = box_image(tmp_path, box=(3, 10, 50, 40))
    mapper = DatasetMapper(make_cfg("INPUT.MIN_SIZE_TRAIN", "[150]", "INPUT.MAX_SIZE_TRAIN", "1000"), is_train=True)
    seen = set()
    for seed in range(10):
        out = mapper(record, seed=seed)
        assert out["image"].shape[1:] == (150, 230)
        box = out["boxes"][0].numpy()
        if box[0] > 100:  # flipped: x1' = W - x2, x2' = W - x1
            np.testing.assert_allclose(box, [230 - 50, 10, 230 - 3, 40], atol=1e-4)
            mirrored = cv2.imread(record["file_name"])[:, ::-1].transpose(2, 0, 1)  # BGR, as INPUT.FORMAT
            np.testing.assert_array_equal(out["image"].numpy(), mirrored)
            seen.add("flip")
        else:
            np.testing.assert_allclose(box, [3, 10, 50, 40], atol=1e-4)
            seen.add("keep")
    assert seen == {"flip", "keep"}


def test_output_format_and_channel_order(tmp_path):
    record = box_image(tmp_path, color=(0, 0, 255))  # BGR red
    record["boxes"] = np.array([[37, 52, 121, 97], [0, 0, 5, 5]], np.float32)
    record["labels"] = np.array([3, 1], np.int64)
    record["ignore"] = np.array([False, True])
    for fmt, red_channel in (("BGR", 2), ("RGB", 0)):
        out = DatasetMapper(make_cfg("INPUT.FORMAT", fmt, "INPUT.MIN_SIZE_TEST", "150"), is_train=False)(record)
        assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 150, 230)
        assert out["image"][red_channel, 60, 60] == 255 and out["image"][:, 60, 60].sum() == 255
        assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64
        assert out["boxes"].shape == (1, 4) and out["labels"].tolist() == [3]  # ignore box removed
        assert (out["height"], out["width"], out["image_id"]) == (150, 230, 1)
        assert out["file_name"] == record["file_name"]


def test_photometric_keeps_geometry(tmp_path):
    record = box_image(tmp_path, color=(40, 200, 90))
    cfg = make_cfg("INPUT.PHOTOMETRIC", "True", "INPUT.RANDOM_FLIP", "False", "INPUT.MIN_SIZE_TRAIN", "[150]")
    mapper = DatasetMapper(cfg, is_train=True)
    changed = 0
    for seed in range(4):
        out = mapper(record, seed=seed)
        np.testing.assert_allclose(out["boxes"][0].numpy(), [37, 52, 121, 97], atol=1e-4)
        changed += int(out["image"][:, 60, 60].tolist() != [40, 200, 90])
    assert changed > 0


def test_loc_crop_keeps_boxes_on_object_and_counts_drops(tmp_path):
    record = box_image(tmp_path, h=200, w=260, box=(20, 30, 90, 110))
    cfg = make_cfg("INPUT.MIN_SIZE_TRAIN", "[200]", "INPUT.MAX_SIZE_TRAIN", "1000", "INPUT.CROP_SIZE", "96")
    mapper = DatasetMapper(cfg, is_train=True, loc=True)
    before = data_stats()["boxes_dropped_by_transforms"]
    dropped = kept = 0
    for seed in range(30):
        out = mapper(record, seed=seed)
        assert out["image"].shape == (3, 96, 96)
        bounds = nonzero_bounds(out["image"])
        if len(out["boxes"]):
            kept += 1
            np.testing.assert_allclose(out["boxes"][0].numpy(), bounds, atol=1e-3)  # no resize: exact
        else:
            dropped += 1
            assert bounds is None  # the object left the crop
    assert kept and dropped
    assert data_stats()["boxes_dropped_by_transforms"] - before == dropped


def test_test_transforms_and_mapping_back(tmp_path):
    img = np.zeros((150, 230, 3), np.uint8)
    cfg = make_cfg("INPUT.MIN_SIZE_TEST", "300", "INPUT.MAX_SIZE_TEST", "400")
    assert DatasetMapper(cfg, is_train=False).map_image(img)["image"].shape == (3, 261, 400)
    loc_cfg = make_cfg("INPUT.LOC_TEST_SIZES", "[128]", "INPUT.CROP_SIZE", "112")
    one_crop = DatasetMapper(loc_cfg, is_train=False, loc=True).map_image(img)
    assert one_crop["image"].shape == (3, 112, 112)
    assert one_crop["resized_size"] == (128, 196) and one_crop["crop_origin"] == (42, 8)
    dense = make_cfg("INPUT.LOC_TEST_SIZES", "[128]", "INPUT.LOC_TEST_MODE", "dense")
    assert DatasetMapper(dense, is_train=False, loc=True).map_image(img)["image"].shape == (3, 128, 196)

    record = box_image(tmp_path, box=(90, 40, 140, 110))
    for c, loc in ((cfg, False), (loc_cfg, True)):
        out = DatasetMapper(c, is_train=False, loc=loc)(record)
        back = to_original(out["boxes"], out, tuple(out["image"].shape[-2:]))
        np.testing.assert_allclose(back.numpy(), [[90, 40, 140, 110]], atol=1e-3)
        np.testing.assert_allclose(out["boxes"][0].numpy(), nonzero_bounds(out["image"]), atol=1.5)
