"""Dataset formats against small fixtures written here: COCO json, PASCAL VOC, ImageNet CLS-LOC;
name resolution, missing-dataset errors and the COCO-format export of the ground truth."""
import json
import logging
import math
import os

import numpy as np
import pytest

from detection.config.config import load_config
from detection.data.coco import gt_json_for
from detection.data import (DatasetFormatError, DatasetNotFoundError, get_dataset, get_dataset_info,
                            load_coco_json, write_coco_json)


def make_cfg(root="", *opts):
    return load_config(None, ["DATASETS.ROOT", str(root), *opts])


# --------------------------------------------------------------------------------------------- COCO
def coco_fixture(tmp_path, extra_ann=None, text=None):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    data = {
        "images": [{"id": 10, "file_name": "a.jpg", "height": 50, "width": 80},
                   {"id": 3, "file_name": "sub/b.jpg", "height": 40, "width": 30},
                   {"id": 11, "file_name": "empty.jpg", "height": 20, "width": 20}],
        "categories": [{"id": 7, "name": "seven"}, {"id": 1, "name": "one"}, {"id": 3, "name": "three"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10.5, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 1, "bbox": [0, 0, 80, 50], "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [70, 40, 20, 20], "iscrowd": 0},  # partly outside
            {"id": 4, "image_id": 3, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},     # zero width
            {"id": 6, "image_id": 3, "category_id": 1, "bbox": [100, 100, 5, 5], "iscrowd": 0},  # outside
            {"id": 7, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        ] + (extra_ann or []),
    }
    path = tmp_path / "ann.json"
    path.write_text(text if text is not None else json.dumps(data, indent=1))
    return str(path), str(images)


def test_coco_records_values(tmp_path, caplog):
    ann, images = coco_fixture(tmp_path)
    with caplog.at_level(logging.INFO):
        records, info = load_coco_json(ann, images, "mine")
    assert info.class_names == ["one", "three", "seven"] and info.category_ids == [1, 3, 7]
    assert info.evaluator_type == "coco" and info.json_file == os.path.abspath(ann)
    by_id = {r["image_id"]: r for r in records}
    assert sorted(by_id) == [3, 10, 11]
    r = by_id[10]
    assert r["file_name"] == os.path.join(os.path.abspath(images), "a.jpg")
    assert (r["height"], r["width"]) == (50, 80)
    assert r["boxes"].dtype == np.float32 and r["labels"].dtype == np.int64 and r["ignore"].dtype == np.bool_
    np.testing.assert_array_equal(r["boxes"], [[10.5, 5, 30.5, 15], [0, 0, 80, 50], [70, 40, 80, 50]])
    np.testing.assert_array_equal(r["labels"], [2, 0, 1])
    np.testing.assert_array_equal(r["ignore"], [False, True, False])
    np.testing.assert_array_equal(by_id[3]["boxes"], [[1, 2, 4, 6]])  # the 2 invalid boxes dropped
    assert by_id[11]["boxes"].shape == (0, 4) and by_id[11]["labels"].shape == (0,)
    text = caplog.text
    assert "dropped 2 invalid boxes" in text and "1 zero or negative size" in text
    assert "1 outside the image" in text and "clipped 1" in text


def test_coco_unknown_category_and_malformed_json(tmp_path):
    ann, images = coco_fixture(tmp_path, extra_ann=[{"id": 99, "image_id": 3, "category_id": 42, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(DatasetFormatError, match=r"ann\.json.*annotations\[6\] \(id 99, image_id 3\).*category_id 42"):
        load_coco_json(ann, images, "bad")
    ann, images = coco_fixture(tmp_path, text='{"images": [],\n "annotations": [\n  {"id": 1,, }]}')
    with pytest.raises(DatasetFormatError, match=r"ann\.json: line 3, column 12"):
        load_coco_json(ann, images, "bad")


def test_custom_coco_name_and_filter_empty(tmp_path, caplog):
    ann, images = coco_fixture(tmp_path)
    name = f"coco:{ann}:{images}"
    records, _ = get_dataset(name, make_cfg(), is_train=False)
    assert len(records) == 3  # evaluation keeps images without boxes
    with caplog.at_level(logging.INFO):
        records, _ = get_dataset(name, make_cfg(), is_train=True)
    assert [r["image_id"] for r in records] == [3, 10]
    assert "dropped 1 of 3 training images" in caplog.text
    records, _ = get_dataset(name, make_cfg("", "DATASETS.FILTER_EMPTY_TRAIN", "False"), is_train=True)
    assert len(records) == 3
    assert get_dataset_info(make_cfg(), name).category_ids == [1, 3, 7]


# ---------------------------------------------------------------------------------------------- VOC
VOC_XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>353</width><height>500</height><depth>3</depth></size>
  <object><name>dog</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox></object>
  {extra}
</annotation>
"""


def voc_fixture(root, ids=("000005", "000007"), extra="", folder="VOC2007"):
    voc = root / folder
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        (voc / "Annotations" / f"{i}.xml").write_text(VOC_XML.format(name=i, extra=extra))
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(ids) + "\n")
    return voc


def test_voc_records_exact_coordinates(tmp_path):
    voc_fixture(tmp_path)
    records, info = get_dataset("voc_2007_trainval", make_cfg(tmp_path), is_train=False)
    assert info.evaluator_type == "voc" and info.json_file is None and len(info.class_names) == 20
    assert info.category_ids == list(range(1, 21))
    assert [r["image_id"] for r in records] == [5, 7]
    r = records[0]
    assert r["file_name"] == str(tmp_path / "VOC2007" / "JPEGImages" / "000005.jpg")
    assert (r["height"], r["width"]) == (500, 353)
    # 1-based inclusive -> continuous: x1 - 1, y1 - 1, x2, y2
    np.testing.assert_array_equal(r["boxes"], [[0, 0, 10, 10], [47, 239, 195, 371]])
    np.testing.assert_array_equal(r["labels"], [info.class_names.index("dog"), info.class_names.index("person")])
    np.testing.assert_array_equal(r["ignore"], [False, True])


def test_voc_devkit_layout_custom_name_and_classes_txt(tmp_path):
    voc = voc_fixture(tmp_path, folder="VOCdevkit/VOC2007")
    records, _ = get_dataset("voc_2007_trainval", make_cfg(tmp_path), is_train=False)
    assert len(records) == 2
    (voc / "classes.txt").write_text("person\ndog\n")
    records, info = get_dataset(f"voc:{voc}:trainval", make_cfg(), is_train=False)
    assert info.class_names == ["person", "dog"]
    np.testing.assert_array_equal(records[0]["labels"], [1, 0])


def test_voc_errors_name_file_and_place(tmp_path):
    voc = voc_fixture(tmp_path, extra="<object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                      "<xmax>3</xmax><ymax>3</ymax></bndbox></object>")
    with pytest.raises(DatasetFormatError, match=r"000005\.xml.*unknown class name 'unicorn'"):
        get_dataset(f"voc:{voc}:trainval", make_cfg(), is_train=False)
    (voc / "Annotations" / "000005.xml").write_text("<annotation>\n<size>\n</annotation>\n")
    with pytest.raises(DatasetFormatError, match=r"000005\.xml: line 3"):
        get_dataset(f"voc:{voc}:trainval", make_cfg(), is_train=False)
    (voc / "Annotations" / "000005.xml").write_text("<annotation><object><name>dog</name></object></annotation>")
    with pytest.raises(DatasetFormatError, match=r"000005\.xml: object #1 \(dog\): missing <bndbox>"):
        get_dataset(f"voc:{voc}:trainval", make_cfg(), is_train=False)


# ----------------------------------------------------------------------------------------- ImageNet
LOC_XML = """<annotation><folder>x</folder><filename>{name}</filename>
<size><width>120</width><height>60</height><depth>3</depth></size>
{objects}</annotation>"""
LOC_OBJ = "<object><name>{wnid}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"


def imagenet_fixture(root):
    base = root / "imagenet"
    ann = base / "ILSVRC" / "Annotations" / "CLS-LOC"
    (ann / "val").mkdir(parents=True)
    (ann / "train" / "n02000002").mkdir(parents=True)
    (base / "LOC_synset_mapping.txt").write_text(
        "n01000001 tench, Tinca tinca\nn02000002 goldfish, Carassius auratus\nn03000003 great white shark\n")
    objs = LOC_OBJ.format(wnid="n03000003", b=(0, 5, 99, 49)) + LOC_OBJ.format(wnid="n03000003", b=(100, 0, 119, 59))
    (ann / "val" / "ILSVRC2012_val_00000007.xml").write_text(LOC_XML.format(name="v7", objects=objs))
    (ann / "train" / "n02000002" / "n02000002_15.xml").write_text(
        LOC_XML.format(name="t", objects=LOC_OBJ.format(wnid="n02000002", b=(10, 10, 20, 30))))
    return base


def test_imagenet_loc(tmp_path):
    imagenet_fixture(tmp_path)
    cfg = make_cfg(tmp_path)
    records, info = get_dataset("imagenet_loc_val", cfg, is_train=False)
    assert info.evaluator_type == "loc" and info.class_names == ["tench", "goldfish", "great white shark"]
    assert info.extra["wnids"] == ["n01000001", "n02000002", "n03000003"]
    (r,) = records
    assert r["image_id"] == 7 and (r["height"], r["width"]) == (60, 120)
    assert r["file_name"].endswith(os.path.join("ILSVRC", "Data", "CLS-LOC", "val", "ILSVRC2012_val_00000007.JPEG"))
    np.testing.assert_array_equal(r["boxes"], [[0, 5, 100, 50], [100, 0, 120, 60]])  # 0-based inclusive
    np.testing.assert_array_equal(r["labels"], [2, 2])
    records, _ = get_dataset("imagenet_loc_train", cfg, is_train=True)
    assert records[0]["file_name"].endswith(os.path.join("train", "n02000002", "n02000002_15.JPEG"))
    np.testing.assert_array_equal(records[0]["labels"], [1])
    assert get_dataset_info(cfg, "imagenet_loc_val").class_names == info.class_names


def test_imagenet_unknown_wnid(tmp_path):
    base = imagenet_fixture(tmp_path)
    bad = base / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000008.xml"
    bad.write_text(LOC_XML.format(name="v8", objects=LOC_OBJ.format(wnid="n09999999", b=(1, 1, 5, 5))))
    with pytest.raises(DatasetFormatError, match=r"ILSVRC2012_val_00000008\.xml.*unknown synset id 'n09999999'"):
        get_dataset("imagenet_loc_val", make_cfg(tmp_path), is_train=False)


# ------------------------------------------------------------------------------- names and export
@pytest.mark.parametrize("name, hint", [("coco_2017_train", "cocodataset.org"), ("voc_2007_test", "VOC2007"),
                                        ("imagenet_loc_val", "LOC_synset_mapping.txt")])
def test_missing_dataset_says_where_and_how(tmp_path, name, hint):
    with pytest.raises(DatasetNotFoundError) as e:
        get_dataset(name, make_cfg(tmp_path), is_train=True)
    msg = str(e.value)
    assert str(tmp_path) in msg and "cfg.DATASETS.ROOT" in msg and hint in msg and "datasets/README.md" in msg


def test_data_root_from_env(tmp_path, monkeypatch):
    voc_fixture(tmp_path)
    monkeypatch.setenv("DETECTION_DATASETS", str(tmp_path))
    records, _ = get_dataset("voc_2007_trainval", make_cfg(""), is_train=False)
    assert len(records) == 2
    with pytest.raises(KeyError, match="unknown dataset 'voc_2099'"):
        get_dataset("voc_2099", make_cfg(""), is_train=False)


def test_coco_export_roundtrip(tmp_path):
    voc_fixture(tmp_path)
    records, info = get_dataset("voc_2007_trainval", make_cfg(tmp_path), is_train=False)
    path = gt_json_for(info, records, str(tmp_path / "eval"))
    from pycocotools.coco import COCO

    coco = COCO(path)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[5]))
    assert [a["iscrowd"] for a in anns] == [0, 1]  # difficult -> crowd, ignored by COCOeval
    assert anns[1]["bbox"] == [47, 239, 148, 132] and anns[1]["category_id"] == info.class_names.index("person") + 1
    back, info2 = load_coco_json(path, str(tmp_path), "back")
    assert info2.class_names == info.class_names
    for a, b in zip(records, back):
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["ignore"], b["ignore"])
    assert math.isclose(json.load(open(path))["annotations"][0]["area"], 100)
    # write_coco_json directly, and a dataset with its own json just returns it
    assert write_coco_json(records, info, str(tmp_path / "x.json")) == str(tmp_path / "x.json")
    ann, images = coco_fixture(tmp_path)
    recs, cinfo = load_coco_json(ann, images, "c")
    assert gt_json_for(cinfo, recs, str(tmp_path)) == os.path.abspath(ann)
