"""Bad inputs on the data side, written here: repeated identifiers, numbers that are not numbers,
malformed files, partly decodable and oversized images, and how skipped images are reported.
Each case asserts the exact behaviour: the error type and that the message names the file, the
record and the field, or the counted skip; for results files, the metrics of the valid part."""
import json
import logging
import math
import struct
import zlib

import cv2
import numpy as np
import pytest

from detection.data import DatasetFormatError, ImageReadError, load_coco_json, read_image
from detection.data.coco import coco_info
from detection.data import build
from detection.data.imagenet_loc import read_synset_mapping
from detection.data.stats import DataStats
from detection.data.voc import load_voc
from detection.evaluation import evaluate_files
from detection.evaluation.coco_eval import load_coco_gt
from tool_scripts import load_tool

# ------------------------------------------------------------------------------ COCO ground truth


def coco_gt():
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80},
                   {"id": 2, "file_name": "b.jpg", "height": 60, "width": 80}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [40, 20, 30, 30], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [5, 5, 40, 40], "iscrowd": 0},
        ],
    }


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def load_for_training(path, tmp_path):
    (tmp_path / "img").mkdir(exist_ok=True)
    return load_coco_json(path, str(tmp_path / "img"), "mine")


# every loader of a COCO ground truth: training / model evaluation (load_coco_json) and the
# evaluators (load_coco_gt, used by DetectionEvaluator and tools/eval.py --gt)
LOADERS = {"training": load_for_training, "evaluation": lambda path, tmp_path: load_coco_gt(path)}


def edit(path_in_gt, value):
    """A COCO gt with one value replaced: ``path_in_gt`` = ("annotations", 1, "bbox")."""
    data = coco_gt()
    *parents, last = path_in_gt
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("change, message", [
    ((("images", 1, "id"), 1), r"image ids must be unique; repeated: 1"),
    ((("categories", 1, "id"), 1), r"category ids must be unique; repeated: 1"),
    ((("categories", 1, "name"), "cat"), r"category names must be unique; repeated: 'cat'"),
    ((("images", 1, "file_name"), "a.jpg"), r"image file names must be unique; repeated: 'a.jpg'"),
])
def test_repeated_ids_are_an_error_naming_file_and_ids(tmp_path, loader, change, message):
    path = write(tmp_path, "gt.json", edit(*change))
    with pytest.raises(DatasetFormatError, match=r"gt\.json.*" + message):
        LOADERS[loader](path, tmp_path)


def test_dataset_info_refuses_repeated_categories(tmp_path):
    path = write(tmp_path, "gt.json", edit(("categories", 1, "id"), 1))
    with pytest.raises(DatasetFormatError, match=r"gt\.json: category ids must be unique; repeated: 1"):
        coco_info(path, str(tmp_path), "mine")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("where, value, message", [
    (("annotations", 1, "bbox"), [40, 20, float("nan"), 30], r"'bbox' has a non-finite value"),
    (("annotations", 1, "bbox"), [40, 20, float("inf"), 30], r"'bbox' has a non-finite value"),
    (("annotations", 1, "bbox"), [40, 20, -30, 30], r"'bbox' has a negative width or height"),
    (("annotations", 1, "bbox"), ["40", "20", "30", "30"], r"'bbox' must hold 4 numbers"),
    (("annotations", 1, "bbox"), "[40, 20, 30, 30]", r"'bbox' must be a list \[x, y, w, h\]"),
    (("annotations", 1, "bbox"), [40, 20, 30], r"'bbox' must be a list \[x, y, w, h\]"),
    (("annotations", 1, "bbox"), [40, 20, None, 30], r"'bbox' must hold 4 numbers"),
    (("annotations", 1, "bbox"), [40, 20, True, 30], r"'bbox' must hold 4 numbers"),
    (("annotations", 1, "iscrowd"), "0", r"'iscrowd' must be 0 or 1, got '0'"),
    (("annotations", 1, "iscrowd"), 2, r"'iscrowd' must be 0 or 1, got 2"),
    (("annotations", 1, "area"), float("nan"), r"'area' must be a finite number >= 0"),
    (("annotations", 1, "category_id"), "2", r"'category_id' must be an integer, got '2' \(str\)"),
    (("annotations", 1, "image_id"), 1.0, r"'image_id' must be an integer, got 1.0 \(float\)"),
    (("annotations", 1, "category_id"), 9, r"category_id 9 is not among the categories 1, 2"),
])
def test_bad_annotation_value_names_file_record_and_field(tmp_path, loader, where, value, message):
    path = write(tmp_path, "gt.json", edit(where, value))
    record = r"annotations\[1\] \(id 2, image_id 1(\.0)?\): "
    with pytest.raises(DatasetFormatError, match=r"gt\.json: " + record + message):
        LOADERS[loader](path, tmp_path)


@pytest.mark.parametrize("where, value, message", [
    (("images", 1, "id"), "2", r"images\[1\] \(id '2'\): 'id' must be an integer, got '2' \(str\)"),
    (("categories", 0, "id"), "1", r"categories\[0\] \(id '1'\): 'id' must be an integer"),  # mixed int/str
    (("images", 0, "height"), "60", r"images\[0\] \(id 1\): 'height' must be a positive integer, got '60'"),
    (("images", 0, "width"), 0, r"images\[0\] \(id 1\): 'width' must be a positive integer, got 0"),
    (("images", 0, "width"), float("nan"), r"images\[0\] \(id 1\): 'width' must be a positive integer"),
])
def test_bad_image_or_category_value_names_the_record(tmp_path, where, value, message):
    path = write(tmp_path, "gt.json", edit(where, value))
    with pytest.raises(DatasetFormatError, match=r"gt\.json: " + message):
        load_for_training(path, tmp_path)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("broken, message", [
    (lambda d: d["images"][1].pop("id"), r"images\[1\]: has no 'id'"),
    (lambda d: d["annotations"][2].pop("image_id"), r"annotations\[2\] \(id 3\): has no 'image_id'"),
    (lambda d: d["annotations"][2].pop("bbox"), r"annotations\[2\] \(id 3, image_id 2\): has no 'bbox'"),
    (lambda d: d["annotations"][2].pop("category_id"), r"annotations\[2\] \(id 3, image_id 2\): has no 'category_id'"),
    (lambda d: d["annotations"].append([1, 2]), r"annotations\[3\]: must be an object"),
    (lambda d: d.update(images={"1": {}}), r"top-level key 'images' missing or not a list"),
])
def test_missing_fields_name_the_record(tmp_path, loader, broken, message):
    data = coco_gt()
    broken(data)
    with pytest.raises(DatasetFormatError, match=r"gt\.json: .*" + message):
        LOADERS[loader](write(tmp_path, "gt.json", data), tmp_path)


@pytest.mark.parametrize("loader", LOADERS)
def test_json_of_the_wrong_kind_or_encoding_names_the_file(tmp_path, loader):
    with pytest.raises(DatasetFormatError, match=r"gt\.json: expected a COCO json object .* got a json list"):
        LOADERS[loader](write(tmp_path, "gt.json", [coco_gt()]), tmp_path)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes(json.dumps(edit(("categories", 0, "name"), "caf\u00e9"), ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.json: not UTF-8 text \(byte \d+"):
        LOADERS[loader](str(latin1), tmp_path)
    bom = tmp_path / "bom.json"  # a byte-order mark is no reason to fail
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(coco_gt()).encode())
    LOADERS[loader](str(bom), tmp_path)


def test_zero_size_box_is_a_counted_skip_in_training(tmp_path, caplog):
    path = write(tmp_path, "gt.json", edit(("annotations", 1, "bbox"), [40, 20, 0, 30]))
    with caplog.at_level(logging.WARNING):
        records, _ = load_for_training(path, tmp_path)
    assert records[0]["boxes"].tolist() == [[10, 10, 30, 30]]
    assert "dropped 1 invalid boxes (1 zero or negative size)" in caplog.text


# ------------------------------------------------------------------------------ results files


def results():
    """Detections on coco_gt(): a TP and a FP per class, scores chosen so that AP50 < 100."""
    return [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},
        {"image_id": 2, "category_id": 1, "bbox": [60, 40, 10, 10], "score": 0.9},   # FP above the TP of image 2
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 40, 40], "score": 0.7},
        {"image_id": 1, "category_id": 2, "bbox": [40, 20, 30, 30], "score": 0.6},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.5},
    ]


BAD_RESULTS = [
    ({"score": float("nan")}, r"'score' must be a finite number, got nan"),
    ({"score": float("inf")}, r"'score' must be a finite number, got inf"),
    ({"score": "0.95"}, r"'score' must be a finite number, got '0.95'"),
    ({"score": None}, r"'score' must be a finite number, got None"),
    ({"bbox": [1, 1, float("nan"), 5]}, r"'bbox' has a non-finite value"),
    ({"bbox": ["1", "1", "5", "5"]}, r"'bbox' must hold 4 numbers"),
    ({"bbox": [1, 1, -5, 5]}, r"'bbox' has a negative width or height"),
    ({"bbox": [1, 1, 5]}, r"'bbox' must be a list \[x, y, w, h\]"),
    ({"image_id": "1"}, r"'image_id' must be an integer, got '1' \(str\)"),
    ({"category_id": 1.0}, r"'category_id' must be an integer, got 1.0 \(float\)"),
]


def metrics_of(tmp_path, dets, **kwargs):
    gt = write(tmp_path, "gt.json", coco_gt())
    m = evaluate_files(gt, write(tmp_path, "dt.json", dets), None, plot=False, verbose=False, **kwargs)
    return {k: v for k, v in m.items() if isinstance(v, float)}


@pytest.mark.parametrize("change, message", BAD_RESULTS)
def test_bad_detection_is_an_error_naming_file_entry_and_field(tmp_path, change, message):
    dets = results()
    dets.insert(2, {**dets[0], **change})
    with pytest.raises(ValueError, match=r"dt\.json: entry #2 \(image_id '?1'?\): " + message):
        metrics_of(tmp_path, dets)


def test_skip_invalid_keeps_the_metrics_of_the_valid_part(tmp_path, caplog):
    valid = metrics_of(tmp_path, results())
    assert 0 < valid["AP50"] < 100
    dets = results()
    for k, (change, _) in enumerate(BAD_RESULTS):
        dets.insert(2 * k, {**results()[k % 5], **change})
    dets.insert(3, {"image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 9]})  # no score
    with caplog.at_level(logging.WARNING):
        skipped = metrics_of(tmp_path, dets, skip_invalid=True)
    assert f"skipped {len(BAD_RESULTS) + 1} of {len(dets)} detections" in caplog.text
    assert skipped.keys() == valid.keys()
    for key in valid:
        assert skipped[key] == valid[key] or (math.isnan(skipped[key]) and math.isnan(valid[key])), key


def test_eval_tool_skip_invalid_switch(tmp_path, capsys):
    tool = load_tool("eval")
    gt = write(tmp_path, "gt.json", coco_gt())
    dt = write(tmp_path, "dt.json", results() + [{**results()[0], "score": float("nan")}])
    with pytest.raises(SystemExit) as stop:
        tool.main(["--gt", gt, "--dt", dt])
    assert stop.value.code == 2
    assert "entry #5 (image_id 1): 'score' must be a finite number" in capsys.readouterr().err
    m = tool.main(["--gt", gt, "--dt", dt, "--skip-invalid", "--output", str(tmp_path / "out")])
    assert m["AP50"] == metrics_of(tmp_path, results())["AP50"] and m["num_detections"] == 5


def test_nan_scored_false_positive_does_not_pass_for_perfect(tmp_path):
    perfect = [r for r in results() if r["bbox"] in ([10, 10, 20, 20], [5, 5, 40, 40], [40, 20, 30, 30])]
    assert metrics_of(tmp_path, perfect)["AP50"] == 100
    with pytest.raises(ValueError, match=r"entry #3 \(image_id 2\): 'score' must be a finite number, got nan"):
        metrics_of(tmp_path, perfect + [{"image_id": 2, "category_id": 2, "bbox": [0, 0, 9, 9], "score": float("nan")}])


def test_repeated_annotation_ids_change_no_metric(tmp_path):
    """COCOeval looks gt boxes up by annotation id; repeated ids are renumbered, not merged."""
    unique = metrics_of(tmp_path, results())
    gt = coco_gt()
    for a in gt["annotations"]:
        a["id"] = 7
    m = evaluate_files(write(tmp_path, "gt.json", gt), write(tmp_path, "dt.json", results()), None,
                       plot=False, verbose=False)
    assert m["AP50"] == unique["AP50"] and m["AP"] == unique["AP"]
    records, _ = load_for_training(write(tmp_path, "gt.json", gt), tmp_path)
    assert sum(len(r["boxes"]) for r in records) == 3


# --------------------------------------------------------------------------------- VOC, ImageNet
XML = """<annotation><size><width>{w}</width><height>60</height></size>
<object><name>dog</name><difficult>{difficult}</difficult>
<bndbox><xmin>{xmin}</xmin><ymin>5</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>"""


def voc_folder(tmp_path, classes="dog\ncat\n", names=("000001",), **fields):
    voc = tmp_path / "VOC"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    values = {"w": 80, "difficult": 0, "xmin": 10, **fields}
    for name in set(names):
        (voc / "Annotations" / f"{name}.xml").write_text(XML.format(**values))
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names) + "\n")
    (voc / "classes.txt").write_text(classes)
    return str(voc)


def test_voc_repeated_class_or_image_name_is_an_error(tmp_path):
    voc = voc_folder(tmp_path, classes="dog\ncat\ndog\n")
    with pytest.raises(DatasetFormatError, match=r"classes\.txt: class names must be unique; repeated: 'dog'"):
        load_voc(voc, "train", "v")
    voc = voc_folder(tmp_path, names=("000001", "000002", "000001"))
    with pytest.raises(DatasetFormatError, match=r"train\.txt: image names must be unique; repeated: '000001'"):
        load_voc(voc, "train", "v")


@pytest.mark.parametrize("fields, message", [
    ({"xmin": "ten"}, r"object #1 \(dog\): missing or non-numeric <xmin> \('ten'\)"),
    ({"xmin": "nan"}, r"object #1 \(dog\): non-finite <xmin> \('nan'\)"),
    ({"xmin": "inf"}, r"object #1 \(dog\): non-finite <xmin> \('inf'\)"),
    ({"xmin": 50}, r"object #1 \(dog\): <bndbox> has xmax < xmin or ymax < ymin"),
    ({"difficult": "yes"}, r"object #1 \(dog\): <difficult> must be 0 or 1, got 'yes'"),
    ({"w": -80}, r"<size>: width and height must be integers >= 0"),
    ({"w": "eighty"}, r"<size>: missing or non-numeric <width>"),
])
def test_voc_bad_value_names_file_object_and_tag(tmp_path, fields, message):
    voc = voc_folder(tmp_path, **fields)
    with pytest.raises(DatasetFormatError, match=r"000001\.xml: " + message):
        load_voc(voc, "train", "v")


def test_voc_missing_size_reads_the_image_or_names_it(tmp_path):
    voc = voc_folder(tmp_path, w="")
    with pytest.raises(DatasetFormatError, match=r"cannot read the size of image .*000001\.jpg"):
        load_voc(voc, "train", "v")
    cv2.imwrite(f"{voc}/JPEGImages/000001.jpg", np.zeros((60, 90, 3), np.uint8))
    records, _ = load_voc(voc, "train", "v")
    assert (records[0]["height"], records[0]["width"]) == (60, 90)


def test_list_files_not_utf8_are_named(tmp_path):
    voc = voc_folder(tmp_path)
    (tmp_path / "VOC" / "classes.txt").write_bytes("chien\nc\u00e9rf\n".encode("latin-1"))
    with pytest.raises(DatasetFormatError, match=r"class list .*classes\.txt: not UTF-8 text"):
        load_voc(voc, "train", "v")


def test_imagenet_repeated_synset_is_an_error(tmp_path):
    path = tmp_path / "LOC_synset_mapping.txt"
    path.write_text("n01 tench\nn02 goldfish\nn01 tench again\n")
    with pytest.raises(DatasetFormatError, match=r"LOC_synset_mapping\.txt: synset ids must be unique; repeated: 'n01'"):
        read_synset_mapping(str(path))


# -------------------------------------------------------------------------------------- images


def smooth_image(h=96, w=128):
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_image_is_unreadable_and_named(tmp_path, ext):
    ok, data = cv2.imencode(f".{ext}", smooth_image())
    data = data.tobytes()
    for cut in (len(data) // 2, len(data) - 40):
        path = tmp_path / f"cut_{cut}.{ext}"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageReadError, match=rf"image .*cut_{cut}\.{ext} is truncated"):
            read_image(str(path))


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_data_after_the_end_marker_is_accepted(tmp_path, ext):
    ok, data = cv2.imencode(f".{ext}", smooth_image())
    (tmp_path / f"plain.{ext}").write_bytes(data.tobytes())
    (tmp_path / f"trailer.{ext}").write_bytes(data.tobytes() + b"\x00\x01appended by a camera" * 8)
    np.testing.assert_array_equal(read_image(str(tmp_path / f"trailer.{ext}")), read_image(str(tmp_path / f"plain.{ext}")))


def png_header_only(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size, message", [
    ((100_000, 100_000), r"refused: Image size \(10000000000 pixels\) exceeds limit"),  # Pillow's own limit
    ((12_000, 10_000), r"refused: its header says 12000 x 10000 = 120000000 pixels, more than the limit of 100000000"),
])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, size, message):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(*size))
    with pytest.raises(ImageReadError, match=r"bomb\.png " + message):
        read_image(str(path))


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "a.png"), smooth_image(40, 50))
    monkeypatch.setenv("DETECTION_MAX_IMAGE_PIXELS", "1999")
    with pytest.raises(ImageReadError, match=r"40 = 2000 pixels, more than the limit of 1999 \(\$DETECTION_MAX"):
        read_image(str(tmp_path / "a.png"))
    monkeypatch.setenv("DETECTION_MAX_IMAGE_PIXELS", "2000")
    assert read_image(str(tmp_path / "a.png")).shape == (40, 50, 3)


# ------------------------------------------------------------------ SKIP_BAD_IMAGES reporting


def read_mapper(record, seed=None):
    return {"image": read_image(record["file_name"]), "file_name": record["file_name"]}


@pytest.fixture
def records_with_a_bad_file(tmp_path):
    records = []
    for k in range(4):
        path = str(tmp_path / f"im{k}.png")
        cv2.imwrite(path, smooth_image(8, 8))
        records.append({"file_name": path})
    with open(records[2]["file_name"], "r+b") as f:  # truncated
        f.truncate(30)
    return records


def test_bad_training_image_is_reported_once_with_a_total(records_with_a_bad_file, caplog):
    stats = DataStats()
    ds = build.TrainDataset(records_with_a_bad_file, read_mapper, seed=0, skip_bad=True, stats=stats)
    with caplog.at_level(logging.WARNING):
        names = [ds[(pos, pos % 4)]["file_name"] for pos in range(40)]  # the bad file drawn 10 times
        ds.skipped.log_total()
    bad = records_with_a_bad_file[2]["file_name"]
    assert bad not in names and len(names) == 40
    warnings = [r.getMessage() for r in caplog.records]
    assert sum(bad in w for w in warnings) == 1
    assert "training: skipped unreadable image (1 so far" in warnings[0] and "im2.png" in warnings[0]
    assert warnings[-1].startswith("training: 1 unreadable image(s) skipped in all")
    assert stats.get("bad_images") == 1 and ds.skipped.count == 1


def test_bad_image_counted_once_across_loader_workers(records_with_a_bad_file):
    from torch.utils.data import DataLoader

    stats = DataStats()
    ds = build.TrainDataset(records_with_a_bad_file, read_mapper, seed=0, skip_bad=True, stats=stats)
    loader = DataLoader(ds, batch_size=4, sampler=[(pos, pos % 4) for pos in range(24)], num_workers=2,
                        collate_fn=lambda b: b)
    assert sum(len(b) for b in loader) == 24
    assert ds.skipped.count == 1 and stats.get("bad_images") == 1


def test_bad_evaluation_image_is_left_out_and_totalled(records_with_a_bad_file, caplog):
    from torch.utils.data import DataLoader

    stats = DataStats()
    ds = build.TestDataset(records_with_a_bad_file, read_mapper, skip_bad=True, stats=stats)
    loader = build.TestLoader(DataLoader(ds, batch_size=1, collate_fn=lambda b: [x for x in b if x is not None]))
    with caplog.at_level(logging.WARNING):
        names = [d["file_name"] for batch in loader for d in batch]
    assert names == [r["file_name"] for k, r in enumerate(records_with_a_bad_file) if k != 2]
    assert caplog.records[-1].getMessage().startswith("evaluation: 1 unreadable image(s) skipped in all")
    assert stats.get("bad_images") == 1


def test_a_file_name_that_is_not_a_string_is_named_in_results_file_mode(tmp_path):
    gt = coco_gt()
    gt["images"][1]["file_name"] = ["b.jpg"]
    with pytest.raises(DatasetFormatError, match=r"images\[1\] \(id 2\): 'file_name' must be a non-empty string"):
        load_coco_gt(gt)
