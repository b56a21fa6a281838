"""YOLO (Ultralytics layout) datasets and tools/convert.py: reading rules, bad lines, lossless
round trips, and training + evaluation through the tools."""
import json
import os

import cv2
import numpy as np
import pytest
import yaml

from detection.config import load_config
from detection.data import get_dataset, get_dataset_info
from detection.data.info import DatasetFormatError
from detection.data.yolo import read_label_file

from test_data_formats import voc_fixture
from tiny import QUICKSTART, tiny_opts
from tool_scripts import load_tool



def yolo_fixture(root, labels: dict, names=("cat", "dog"), sizes=None, extra_yaml=None):
    """root/data.yaml, root/images/train/<stem>.png (sizes: {stem: (h, w)}, default 50x100) and
    root/labels/train/<stem>.txt for each stem whose label text is not None."""
    for stem, text in labels.items():
        h, w = (sizes or {}).get(stem, (50, 100))
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / "train" / f"{stem}.png"), np.zeros((h, w, 3), np.uint8))
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{stem}.txt").write_text(text)
    data = {"names": list(names), "train": "images/train", **(extra_yaml or {})}
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return f"yolo:{root / 'data.yaml'}:train"


def test_yolo_boxes_in_pixels_background_images_and_names_as_dict(tmp_path):
    name = yolo_fixture(tmp_path, {"000001": "1 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.2 0.4\n", "000002": None, "000003": ""},
                        extra_yaml={"names": {0: "cat", 1: "dog"}, "nc": 2})
    records, info = get_dataset(name, load_config(), is_train=False)
    assert info.class_names == ["cat", "dog"] and info.category_ids == [1, 2] and info.evaluator_type == "coco"
    assert [r["image_id"] for r in records] == [1, 2, 3]
    r = records[0]
    assert (r["height"], r["width"]) == (50, 100)
    # cx 0.5, cy 0.5, w 0.2, h 0.4 of 100x50 -> x 40..60, y 15..35
    np.testing.assert_allclose(r["boxes"], [[40, 15, 60, 35], [0, 0, 20, 20]], atol=1e-4)
    np.testing.assert_array_equal(r["labels"], [1, 0])
    assert len(records[1]["boxes"]) == 0 and len(records[2]["boxes"]) == 0  # background images
    train, _ = get_dataset(name, load_config(), is_train=True)
    assert len(train) == 1  # FILTER_EMPTY_TRAIN drops them from training


def test_yolo_polygon_line_becomes_its_bounding_box_and_duplicates_go(tmp_path):
    name = yolo_fixture(tmp_path, {"1": "0 0.1 0.2 0.3 0.2 0.2 0.6\n1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"})
    records, _ = get_dataset(name, load_config(), is_train=False)
    np.testing.assert_allclose(records[0]["boxes"], [[10, 10, 30, 30], [40, 20, 60, 30]], atol=1e-4)


def test_yolo_path_key_and_list_file_as_ultralytics_resolves_them(tmp_path):
    yolo_fixture(tmp_path / "ds", {"1": "0 0.5 0.5 0.5 0.5\n", "2": "1 0.5 0.5 0.5 0.5\n"})
    (tmp_path / "ds" / "train.txt").write_text("./images/train/2.png\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "data.yaml").write_text(yaml.safe_dump({"path": "../ds", "names": ["cat", "dog"],
                                                                 "train": "train.txt"}))
    records, _ = get_dataset(f"yolo:{tmp_path / 'cfg' / 'data.yaml'}:train", load_config(), is_train=False)
    assert [os.path.basename(r["file_name"]) for r in records] == ["2.png"]
    np.testing.assert_array_equal(records[0]["labels"], [1])


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 0.1", "expected 5 fields"),
    ("0 0.5 zero 0.2 0.2", "not a number"),
    ("0 0.5 0.5 1.5 0.2", "normalised to 0..1"),
    ("0 0.5 nan 0.2 0.2", "normalised to 0..1"),
    ("0 -0.5 0.5 0.2 0.2", "normalised to 0..1"),
    ("2 0.5 0.5 0.2 0.2", "class '2' is not one of 0..1"),
    ("-1 0.5 0.5 0.2 0.2", "class '-1' is not one of 0..1"),
    ("0.5 0.5 0.5 0.2 0.2", "class '0.5' is not one of 0..1"),
])
def test_yolo_bad_lines_name_the_file_and_line(tmp_path, line, message):
    name = yolo_fixture(tmp_path, {"000001": "0 0.5 0.5 0.2 0.2\n" + line + "\n"})
    with pytest.raises(DatasetFormatError) as e:
        get_dataset(name, load_config(), is_train=False)
    assert str(tmp_path / "labels" / "train" / "000001.txt") + ", line 2" in str(e.value)
    assert message in str(e.value)


def test_yolo_yaml_errors(tmp_path):
    name = yolo_fixture(tmp_path, {"1": ""}, extra_yaml={"nc": 3})
    with pytest.raises(DatasetFormatError, match="'nc' is 3 but 'names' has 2"):
        get_dataset_info(load_config(), name)
    name = yolo_fixture(tmp_path, {"1": ""})
    with pytest.raises(DatasetFormatError, match=r"no split 'val'; the file has \['train'\]"):
        get_dataset(name.replace(":train", ":val"), load_config(), is_train=False)


def _synthetic(tmp_path):
    cfg = load_config(QUICKSTART, tiny_opts(tmp_path / "data", tmp_path / "out", 2))
    return cfg, get_dataset_info(cfg, "synthetic_train"), get_dataset_info(cfg, "synthetic_val")


def _by_file(records):
    return {os.path.basename(r["file_name"]): r for r in records}


def _assert_same_records(a, b, atol=1e-3):
    a, b = _by_file(a), _by_file(b)
    assert sorted(a) == sorted(b)
    for k in a:
        assert (a[k]["height"], a[k]["width"]) == (b[k]["height"], b[k]["width"]), k
        np.testing.assert_allclose(a[k]["boxes"], b[k]["boxes"], atol=atol, err_msg=k)
        np.testing.assert_array_equal(a[k]["labels"], b[k]["labels"], err_msg=k)


def test_coco_to_yolo_to_coco_loses_nothing(tmp_path):
    cfg, train, _ = _synthetic(tmp_path)
    source = f"coco:{train.json_file}:{train.image_root}"
    convert = load_tool("convert").main
    yolo = convert([source, "--to", "yolo", "--split", "train", "--output", str(tmp_path / "yolo")])
    coco = convert([yolo, "--to", "coco", "--split", "train", "--output", str(tmp_path / "coco")])
    original, info0 = get_dataset(source, cfg, is_train=False)
    via_yolo, info1 = get_dataset(yolo, cfg, is_train=False)
    back, info2 = get_dataset(coco, cfg, is_train=False)
    assert info0.class_names == info1.class_names == info2.class_names
    assert info2.category_ids == info0.category_ids == [1, 2, 3, 4, 5, 6]
    assert sum(len(r["boxes"]) for r in original) > 10
    _assert_same_records(original, via_yolo)
    _assert_same_records(original, back)
    assert [r["image_id"] for r in back] == [r["image_id"] for r in original]
    # and yolo -> coco -> yolo gives the same label lines
    again = convert([coco, "--to", "yolo", "--split", "train", "--output", str(tmp_path / "yolo2")])
    for r in via_yolo:
        name = os.path.splitext(os.path.basename(r["file_name"]))[0] + ".txt"
        first = read_label_file(str(tmp_path / "yolo" / "labels" / "train" / name), 6)
        second = read_label_file(str(tmp_path / "yolo2" / "labels" / "train" / name), 6)
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_allclose(first[1], second[1], atol=1e-7)
    assert yaml.safe_load(open(again.split(":")[1]))["names"] == info0.class_names
    with pytest.raises(ValueError, match="would overwrite or mix with them"):  # never over the source images
        convert([yolo, "--to", "yolo", "--split", "train", "--output", str(tmp_path / "yolo")])
    with pytest.raises(ValueError, match="is the source annotation file"):
        convert([coco, "--to", "coco", "--split", "train", "--output", str(tmp_path / "coco")])


def test_voc_to_coco_keeps_boxes_classes_and_difficult(tmp_path):
    voc = voc_fixture(tmp_path)
    source = f"voc:{voc}:trainval"
    coco = load_tool("convert").main([source, "--to", "coco", "--split", "trainval", "--output", str(tmp_path / "c")])
    data = json.load(open(coco.split(":")[1]))
    assert [i["file_name"] for i in data["images"]] == ["000005.jpg", "000007.jpg"]
    os.makedirs(coco.split(":")[2], exist_ok=True)
    a, info_a = get_dataset(source, load_config(), is_train=False)
    b, info_b = get_dataset(coco, load_config(), is_train=False)
    assert info_a.class_names == info_b.class_names and info_a.category_ids == info_b.category_ids
    _assert_same_records(a, b, atol=0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["ignore"], y["ignore"])


def test_yolo_dataset_trains_and_evaluates_like_its_coco_original(tmp_path):
    cfg, train, val = _synthetic(tmp_path)
    convert = load_tool("convert").main
    ytrain = convert([f"coco:{train.json_file}:{train.image_root}", "--to", "yolo", "--split", "train",
                      "--output", str(tmp_path / "yolo")])
    yval = convert([f"coco:{val.json_file}:{val.image_root}", "--to", "yolo", "--split", "val",
                    "--output", str(tmp_path / "yolo")])
    assert set(yaml.safe_load(open(tmp_path / "yolo" / "data.yaml"))) == {"names", "train", "val"}
    opts = tiny_opts(tmp_path / "data", tmp_path / "out", 2, **{
        "MODEL.ROI_HEADS.NUM_CLASSES": 0, "DATASETS.TRAIN": f"['{ytrain}']", "DATASETS.TEST": f"['{yval}']"})
    load_tool("train_net").main(["--config", QUICKSTART, *opts])
    weights = str(tmp_path / "out" / "model_final.pth")
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    on_yolo = [r for r in rows if "AP50" in r][-1]
    on_coco = load_tool("eval").main(["--config", QUICKSTART, "--weights", weights,
                                  *tiny_opts(tmp_path / "data", tmp_path / "e", 2)])["synthetic_val"]
    assert on_yolo["AP50"] == pytest.approx(on_coco["AP50"], abs=1e-6)
    assert on_yolo["AP"] == pytest.approx(on_coco["AP"], abs=1e-6)


def test_yolo_label_files_with_a_byte_order_mark_read_and_other_encodings_are_named(tmp_path):
    ok = tmp_path / "ok"
    name = yolo_fixture(ok, {"1": "\ufeff0 0.5 0.5 0.2 0.2\n"})
    records, _ = get_dataset(name, load_config(), is_train=False)
    assert records[0]["labels"].tolist() == [0]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"0 0.5 0.5 0.2 \xff0.2\n")
    with pytest.raises(DatasetFormatError, match=r"bad\.txt: not UTF-8"):
        read_label_file(str(bad), 2)
