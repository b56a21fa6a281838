"""The synthetic generator: determinism, annotations that match the pixels, the variety it
promises, generation on first use (race-safe) and the command-line generator."""
import json
import multiprocessing as mp
import os
import subprocess
import sys

import cv2
import numpy as np

from detection.data.synthetic import SHAPES, SyntheticSpec, ensure_synthetic, generate, render_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_tree(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.relpath(os.path.join(dirpath, f), folder)] = fh.read()
    return out


def test_deterministic_for_a_seed(tmp_path):
    spec = SyntheticSpec(num_train=5, num_val=2, image_size=96, seed=1)
    a, b = read_tree(generate(spec, str(tmp_path / "a"))), read_tree(generate(spec, str(tmp_path / "b")))
    assert len(a) == 5 + 2 + 3 and a == b
    c = read_tree(generate(SyntheticSpec(num_train=5, num_val=2, image_size=96, seed=2), str(tmp_path / "c")))
    assert a.keys() == c.keys()
    assert a["annotations/train.json"] != c["annotations/train.json"]
    assert all(a[k] != c[k] for k in a if k.startswith("images"))
    # an image does not depend on how many others are generated
    more = read_tree(generate(SyntheticSpec(num_train=8, num_val=2, image_size=96, seed=1), str(tmp_path / "d")))
    assert more["images/train/000003.jpg"] == a["images/train/000003.jpg"]


def test_annotations_match_pixels(tmp_path):
    spec = SyntheticSpec(num_train=12, num_val=1, image_size=128, seed=3, image_format="png")
    folder = generate(spec, str(tmp_path))
    data = json.load(open(os.path.join(folder, "annotations", "train.json")))
    assert [c["name"] for c in data["categories"]] == list(SHAPES)
    checked = 0
    for im in data["images"]:
        img, objs = render_image(spec, "train", im["id"] - 1)
        on_disk = cv2.imread(os.path.join(folder, "images", im["file_name"]))
        np.testing.assert_array_equal(on_disk, img)  # png: lossless
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        assert len(anns) == len(objs)
        for a, o in zip(anns, objs):
            ys, xs = np.nonzero(o["mask"])
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            assert a["bbox"] == [x1, y1, x2 - x1, y2 - y1] and a["area"] == len(xs)
            assert a["category_id"] == o["label"] + 1
            # the drawn pixels are the object's colour (up to the +-7 pixel noise)
            diff = np.abs(img[o["mask"]].astype(int) - np.round(o["color"])).max()
            assert diff <= 8
            checked += 1
        # visible masks are disjoint
        if objs:
            assert np.sum([o["mask"] for o in objs], axis=0).max() == 1
    assert checked > 10


def test_variety_det_and_loc():
    det = SyntheticSpec(image_size=256, seed=0)
    counts, areas, labels, shapes = [], [], set(), set()
    for i in range(60):
        img, objs = render_image(det, "train", i)
        shapes.add(img.shape[:2])
        counts.append(len(objs))
        areas += [(o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]) for o in objs]
        labels |= {o["label"] for o in objs}
    areas = np.array(areas)
    assert 0 in counts and max(counts) >= 4
    assert labels == set(range(len(SHAPES)))
    small, large = (areas < 32 ** 2).mean(), (areas > 96 ** 2).mean()
    assert 0.05 < small < 0.4 and large > 0.15  # mostly medium/large, some small
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)

    loc = SyntheticSpec(kind="loc", image_size=256, seed=0)
    for i in range(20):
        img, objs = render_image(loc, "val", i)
        assert 1 <= len(objs) <= 2 and len({o["label"] for o in objs}) == 1
        b = max(objs, key=lambda o: o["area"])["box"]
        assert (b[2] - b[0]) * (b[3] - b[1]) > 0.1 * img.shape[0] * img.shape[1]  # one dominant object


def _ensure(root, spec):
    ensure_synthetic(root, spec)


def test_generated_on_first_use_race_safe(tmp_path):
    spec = SyntheticSpec(num_train=20, num_val=2, image_size=96)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_ensure, args=(str(tmp_path), spec)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    folder = tmp_path / "synthetic" / spec.dirname
    assert os.listdir(tmp_path / "synthetic") == [spec.dirname]  # no temporary folders left
    assert len(os.listdir(folder / "images" / "train")) == 20
    mtime = os.path.getmtime(folder / "meta.json")
    assert ensure_synthetic(str(tmp_path), spec) == str(folder)
    assert os.path.getmtime(folder / "meta.json") == mtime  # reused, not regenerated


def test_get_dataset_generates_and_command_line(tmp_path):
    from detection.config.config import load_config
    from detection.data import get_dataset

    cfg = load_config(None, ["DATASETS.ROOT", str(tmp_path), "DATASETS.SYNTHETIC.NUM_TRAIN", "6",
                             "DATASETS.SYNTHETIC.NUM_VAL", "3", "DATASETS.SYNTHETIC.IMAGE_SIZE", "96"])
    records, info = get_dataset("synthetic_val", cfg, is_train=False)
    assert len(records) == 3 and info.evaluator_type == "coco" and info.class_names == list(SHAPES)
    assert os.path.isfile(info.json_file) and all(os.path.isfile(r["file_name"]) for r in records)
    records, info = get_dataset("synthetic_loc_train", cfg, is_train=True)
    assert info.evaluator_type == "loc" and all(len(r["boxes"]) >= 1 for r in records)

    out = subprocess.run([sys.executable, os.path.join(REPO, "datasets", "generate_synthetic.py"), "--root",
                          str(tmp_path / "cli"), "--kind", "both", "--num-train", "4", "--num-val", "2",
                          "--image-size", "96"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    made = sorted(os.listdir(tmp_path / "cli" / "synthetic"))
    assert made == ["det_seed0_n4-2_px96_jpg", "loc_seed0_n4-2_px96_jpg"]
