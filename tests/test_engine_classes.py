"""The class count follows the data: 0 is resolved from the dataset, a wrong explicit count or a
checkpoint with other classes stops every tool at start-up, fine-tuning loads all but the class layers."""
import json
import time

import numpy as np
import pytest
import torch

from detection.config import load_config
from detection.engine.classes import ClassMismatchError, resolve_classes

from tiny import QUICKSTART, tiny_opts
from tool_scripts import load_tool

SHAPES = ["circle", "square", "triangle", "cross", "ring", "star"]


def write_coco_subset(src_json: str, image_root: str, out_json, keep: list[int]) -> str:
    """The synthetic json with only categories ``keep`` (and their boxes): a dataset of other classes."""
    data = json.load(open(src_json))
    data["categories"] = [c for c in data["categories"] if c["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] in keep]
    json.dump(data, open(out_json, "w"))
    return f"coco:{out_json}:{image_root}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-class tiny model trained with NUM_CLASSES 0 (taken from synthetic_train)."""
    tmp = tmp_path_factory.mktemp("classes")
    out = tmp / "out"
    opts = tiny_opts(tmp / "data", out, 2, **{"MODEL.ROI_HEADS.NUM_CLASSES": 0})
    load_tool("train_net").main(["--config", QUICKSTART, *opts])
    return tmp, out


def test_zero_takes_the_count_from_the_training_data_into_config_and_checkpoint(trained):
    tmp, out = trained
    saved = load_config(str(out / "config.yaml"))
    assert saved.MODEL.ROI_HEADS.NUM_CLASSES == 6
    assert (out / "config.yaml").read_text().splitlines()[0] == "# classes (label 0..5): " + ", ".join(SHAPES)
    ckpt = torch.load(out / "model_final.pth", weights_only=True)
    assert ckpt["class_names"] == SHAPES
    assert ckpt["model"]["roi_heads.box_predictor.cls_score.weight"].shape[0] == 7  # 6 + background


@pytest.mark.parametrize("count", [3, 7])
def test_train_stops_at_start_up_on_a_wrong_explicit_count(trained, tmp_path, count):
    tmp, _ = trained
    opts = tiny_opts(tmp / "data", tmp_path / "out", 2, **{"MODEL.ROI_HEADS.NUM_CLASSES": count})
    start = time.perf_counter()
    with pytest.raises(ClassMismatchError) as e:
        load_tool("train_net").main(["--config", QUICKSTART, *opts])
    assert time.perf_counter() - start < 5
    msg = str(e.value)
    assert f"MODEL.ROI_HEADS.NUM_CLASSES is {count}" in msg and "has 6 classes" in msg
    assert "set MODEL.ROI_HEADS.NUM_CLASSES 6, or 0" in msg
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_eval_stops_on_a_wrong_count_and_on_a_checkpoint_of_other_classes(trained, tmp_path):
    tmp, out = trained
    weights = str(out / "model_final.pth")
    opts = tiny_opts(tmp / "data", tmp_path / "e", 2, **{"MODEL.ROI_HEADS.NUM_CLASSES": 5})
    with pytest.raises(ClassMismatchError, match=r"NUM_CLASSES is 5 but dataset synthetic_val has 6 classes"):
        load_tool("eval").main(["--config", QUICKSTART, "--weights", weights, *opts])
    cfg = load_config(QUICKSTART, tiny_opts(tmp / "data", tmp_path / "e", 2))
    from detection.data import get_dataset_info

    info = get_dataset_info(cfg, "synthetic_val")
    three = write_coco_subset(info.json_file, info.image_root, tmp_path / "three.json", [1, 2, 3])
    opts = tiny_opts(tmp / "data", tmp_path / "e", 2, **{"MODEL.ROI_HEADS.NUM_CLASSES": 0,
                                                          "DATASETS.TEST": f"['{three}']"})
    with pytest.raises(ClassMismatchError) as e:
        load_tool("eval").main(["--config", QUICKSTART, "--weights", weights, *opts])
    assert "trained on 6 classes [circle, square, triangle, cross, ring, star]" in str(e.value)
    assert "has 3 [circle, square, triangle]" in str(e.value)


def test_predictor_stops_on_a_count_other_than_the_checkpoints(trained):
    tmp, out = trained
    from detection.engine.predictor import Predictor

    cfg = load_config(QUICKSTART, tiny_opts(tmp / "data", tmp / "p", 2, **{"MODEL.ROI_HEADS.NUM_CLASSES": 4}))
    with pytest.raises(ClassMismatchError, match=r"NUM_CLASSES is 4 but the checkpoint .* has 6 classes"):
        Predictor(cfg, str(out / "model_final.pth"))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 0
    predictor = Predictor(cfg, str(out / "model_final.pth"))
    assert predictor.class_names == SHAPES
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 0  # the caller's config is left alone


def test_datasets_with_different_classes_stop_before_training(trained, tmp_path):
    tmp, _ = trained
    cfg = load_config(QUICKSTART, tiny_opts(tmp / "data", tmp_path, 2))
    from detection.data import get_dataset_info

    info = get_dataset_info(cfg, "synthetic_val")
    three = write_coco_subset(info.json_file, info.image_root, tmp_path / "three.json", [1, 3, 4])
    with pytest.raises(ClassMismatchError, match="first difference at label 1: 'square' vs 'triangle'"):
        resolve_classes(cfg, ["synthetic_train", three])


def test_resume_stops_when_the_checkpoint_has_other_classes_than_the_data(trained, tmp_path):
    tmp, out = trained
    cfg = load_config(QUICKSTART, tiny_opts(tmp / "data", tmp_path, 2))
    from detection.data import get_dataset_info

    info = get_dataset_info(cfg, "synthetic_train")
    three = write_coco_subset(info.json_file, info.image_root, tmp_path / "three.json", [1, 2, 3])
    opts = tiny_opts(tmp / "data", out, 4, **{"MODEL.ROI_HEADS.NUM_CLASSES": 0, "DATASETS.TRAIN": f"['{three}']",
                                              "DATASETS.TEST": f"['{three}']"})
    with pytest.raises(ClassMismatchError, match=r"model_final.pth was trained on 6 classes .* has 3"):
        load_tool("train_net").main(["--config", QUICKSTART, "--resume", *opts])


def test_localizer_count_is_taken_into_its_own_key(tmp_path):
    cfg = load_config(QUICKSTART.replace("quickstart.yaml", "quickstart_loc.yaml"), [
        "MODEL.PCR.NUM_CLASSES", "0", "DATASETS.ROOT", str(tmp_path), "DATASETS.SYNTHETIC.NUM_TRAIN", "2",
        "DATASETS.SYNTHETIC.NUM_VAL", "2", "DATASETS.SYNTHETIC.IMAGE_SIZE", "64"])
    resolved, names = resolve_classes(cfg, cfg.DATASETS.TRAIN)
    assert resolved.MODEL.PCR.NUM_CLASSES == 6 and names == SHAPES
    assert resolved.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.ROI_HEADS.NUM_CLASSES  # the detector's key untouched
    cfg.MODEL.PCR.NUM_CLASSES = 5
    with pytest.raises(ClassMismatchError, match="MODEL.PCR.NUM_CLASSES is 5 but dataset synthetic_loc_train"):
        resolve_classes(cfg, cfg.DATASETS.TRAIN)


def test_zero_without_data_or_named_checkpoint_asks_for_the_count(tmp_path):
    cfg = load_config(QUICKSTART, ["MODEL.ROI_HEADS.NUM_CLASSES", "0"])
    with pytest.raises(ClassMismatchError, match="set MODEL.ROI_HEADS.NUM_CLASSES to the number of classes"):
        resolve_classes(cfg)


def test_fine_tuning_a_six_class_checkpoint_on_three_classes_loads_all_but_the_class_layers(trained, tmp_path):
    tmp, out = trained
    cfg = load_config(QUICKSTART, tiny_opts(tmp / "data", tmp_path, 2))
    from detection.data import get_dataset_info

    train_info = get_dataset_info(cfg, "synthetic_train")
    val_info = get_dataset_info(cfg, "synthetic_val")
    train3 = write_coco_subset(train_info.json_file, train_info.image_root, tmp_path / "train3.json", [2, 4, 6])
    val3 = write_coco_subset(val_info.json_file, val_info.image_root, tmp_path / "val3.json", [2, 4, 6])
    opts = tiny_opts(tmp / "data", tmp_path / "ft", 1, **{
        "MODEL.ROI_HEADS.NUM_CLASSES": 0, "MODEL.WEIGHTS": str(out / "model_final.pth"),
        "DATASETS.TRAIN": f"['{train3}']", "DATASETS.TEST": f"['{val3}']",
        "SOLVER.BASE_LR": 1e-12, "SOLVER.WEIGHT_DECAY": 0.0})
    load_tool("train_net").main(["--config", QUICKSTART, *opts])
    log = (tmp_path / "ft" / "log.txt").read_text()
    assert "trained on 6 classes" in log and "fine-tuning" in log
    assert "box predictor left as initialised: the file has 6 classes (+ background), the model 3" in log
    before = torch.load(out / "model_final.pth", weights_only=True)
    after = torch.load(tmp_path / "ft" / "model_final.pth", weights_only=True)
    assert after["class_names"] == ["square", "cross", "star"]
    assert after["model"]["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4
    shared = [k for k in before["model"] if "box_predictor" not in k]
    assert shared
    for k in shared:  # an update of 1e-12 leaves every loaded tensor as the file had it
        np.testing.assert_allclose(after["model"][k].float().numpy(), before["model"][k].float().numpy(),
                                   rtol=0, atol=1e-6, err_msg=k)
