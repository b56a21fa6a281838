"""Config loading: schema defaults <- YAML (with _BASE_) <- command-line KEY VALUE overrides."""
import textwrap

import pytest
import yaml

from detection.config import CfgNode, ConfigError, describe, get_default_config, load_config, merge_from_list
from detection.config.defaults import SCHEMA


def write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def _schema_defaults(schema):
    return {k: _schema_defaults(v) if isinstance(v, dict) else v[0] for k, v in schema.items()}


# ----------------------------------------------------------------------------- defaults


def test_defaults_equal_schema_values():
    cfg = load_config()
    assert isinstance(cfg, CfgNode)
    assert cfg.to_dict() == _schema_defaults(SCHEMA)
    assert cfg.MODEL.RESNETS.DEPTH == 101
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 300
    assert cfg.MODEL.RPN.IOU_THRESHOLDS == [0.3, 0.7]
    assert cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE == "ROIAlignV2"


def test_default_config_is_a_fresh_copy_each_time():
    a = get_default_config()
    a.MODEL.ANCHOR_GENERATOR.SIZES.append(1024)
    a.MODEL.RESNETS.DEPTH = 18
    b = get_default_config()
    assert b.MODEL.ANCHOR_GENERATOR.SIZES == [32, 64, 128, 256, 512]
    assert b.MODEL.RESNETS.DEPTH == 101
    assert SCHEMA["MODEL"]["ANCHOR_GENERATOR"]["SIZES"][0] == [32, 64, 128, 256, 512]


def test_describe_returns_the_schema_meaning():
    assert describe("MODEL.RPN.POST_NMS_TOPK_TEST") == SCHEMA["MODEL"]["RPN"]["POST_NMS_TOPK_TEST"][1]


# ----------------------------------------------------------------------------- YAML


def test_yaml_overrides_only_the_keys_it_sets(tmp_path):
    path = write(tmp_path / "c.yaml", """
        MODEL:
          RESNETS:
            DEPTH: 50
          ROI_HEADS:
            NUM_CLASSES: 20
        SOLVER:
          BASE_LR: 0.005
          STEPS: [100, 200]
        """)
    cfg = load_config(path)
    assert cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 20
    assert cfg.SOLVER.BASE_LR == 0.005
    assert cfg.SOLVER.STEPS == [100, 200]
    expected = _schema_defaults(SCHEMA)
    expected["MODEL"]["RESNETS"]["DEPTH"] = 50
    expected["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] = 20
    expected["SOLVER"]["BASE_LR"] = 0.005
    expected["SOLVER"]["STEPS"] = [100, 200]
    assert cfg.to_dict() == expected


def test_yaml_int_for_float_key_becomes_float_and_scalar_for_list_becomes_list(tmp_path):
    path = write(tmp_path / "c.yaml", """
        SOLVER:
          BASE_LR: 1
        INPUT:
          MIN_SIZE_TRAIN: 600
        """)
    cfg = load_config(path)
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.INPUT.MIN_SIZE_TRAIN == [600]


def test_base_inheritance_two_levels_relative_paths_child_wins(tmp_path):
    (tmp_path / "bases" / "deeper").mkdir(parents=True)
    write(tmp_path / "bases" / "deeper" / "grand.yaml", """
        MODEL:
          RESNETS:
            DEPTH: 152
            NORM: GN
          ROI_HEADS:
            NUM_CLASSES: 5
        SOLVER:
          BASE_LR: 0.1
          MAX_ITER: 10
        """)
    write(tmp_path / "bases" / "parent.yaml", """
        _BASE_: deeper/grand.yaml
        MODEL:
          RESNETS:
            DEPTH: 50
        SOLVER:
          BASE_LR: 0.2
        """)
    child = write(tmp_path / "child.yaml", """
        _BASE_: bases/parent.yaml
        SOLVER:
          BASE_LR: 0.3
        """)
    cfg = load_config(child)
    assert cfg.MODEL.RESNETS.DEPTH == 50  # parent over grandparent
    assert cfg.MODEL.RESNETS.NORM == "GN"  # only in the grandparent: kept through the deep merge
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 5
    assert cfg.SOLVER.BASE_LR == 0.3  # child over both
    assert cfg.SOLVER.MAX_ITER == 10
    assert "_BASE_" not in cfg


def test_base_relative_to_the_file_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "cfgs").mkdir()
    write(tmp_path / "cfgs" / "base.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 34\n")
    child = write(tmp_path / "cfgs" / "child.yaml", "_BASE_: base.yaml\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(child).MODEL.RESNETS.DEPTH == 34


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_missing_file_and_missing_base_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    child = write(tmp_path / "child.yaml", "_BASE_: missing_parent.yaml\n")
    with pytest.raises(ConfigError, match="missing_parent.yaml"):
        load_config(child)


def test_repo_configs_load_and_inherit():
    voc = load_config("configs/voc_r101.yaml")
    assert voc.MODEL.ROI_HEADS.NUM_CLASSES == 20  # voc itself
    assert voc.MODEL.ANCHOR_GENERATOR.SIZES == [128, 256, 512]
    assert voc.MODEL.ROI_BOX_HEAD.POOLER_TYPE == "ROIPool"  # from coco_r101.yaml
    assert voc.MODEL.RESNETS.FREEZE_AT == 2  # from Base-RCNN-C4.yaml
    assert voc.SOLVER.MAX_ITER == 110000


# ----------------------------------------------------------------------------- command line


def test_command_line_overrides_with_types(tmp_path):
    path = write(tmp_path / "c.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 50\nSOLVER:\n  BASE_LR: 0.5\n")
    cfg = load_config(path, [
        "MODEL.RESNETS.DEPTH", "18",                      # int, wins over the YAML
        "SOLVER.BASE_LR", "1e-3",                         # float
        "SOLVER.MOMENTUM", "1",                           # int accepted for float
        "INPUT.RANDOM_FLIP", "False",                     # bool, Python spelling
        "MODEL.RESNETS.STRIDE_IN_1X1", "false",           # bool, YAML spelling
        "MODEL.ANCHOR_GENERATOR.SIZES", "[16, 32]",       # list of ints
        "MODEL.PIXEL_STD", "[57.375, 57.12, 58.395]",     # list of floats
        "INPUT.MIN_SIZE_TRAIN", "640",                    # scalar for a list
        "OUTPUT_DIR", "/tmp/some dir/run_1",              # string path
        "MODEL.WEIGHTS", "123",                           # a string key given a number stays text
        "DATASETS.TRAIN", "[coco_2017_train, voc_2007_trainval]",  # list of bare strings
        "DATASETS.TEST", "voc_2007_test",                 # one string for a list of strings
    ])
    assert cfg.MODEL.RESNETS.DEPTH == 18 and type(cfg.MODEL.RESNETS.DEPTH) is int
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-3) and type(cfg.SOLVER.BASE_LR) is float
    assert cfg.SOLVER.MOMENTUM == 1.0 and type(cfg.SOLVER.MOMENTUM) is float
    assert cfg.INPUT.RANDOM_FLIP is False
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [16, 32]
    assert cfg.MODEL.PIXEL_STD == [57.375, 57.12, 58.395]
    assert cfg.INPUT.MIN_SIZE_TRAIN == [640]
    assert cfg.OUTPUT_DIR == "/tmp/some dir/run_1"
    assert cfg.MODEL.WEIGHTS == "123"
    assert cfg.DATASETS.TRAIN == ["coco_2017_train", "voc_2007_trainval"]
    assert cfg.DATASETS.TEST == ["voc_2007_test"]
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN"  # untouched


def test_merge_from_list_on_existing_config():
    cfg = get_default_config()
    merge_from_list(cfg, ["MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.DEVICE", "cuda:1"])
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
    assert cfg.MODEL.DEVICE == "cuda:1"


def test_odd_number_of_overrides_is_an_error():
    with pytest.raises(ConfigError, match="odd"):
        load_config(None, ["MODEL.RESNETS.DEPTH", "50", "SOLVER.BASE_LR"])


# ----------------------------------------------------------------------------- errors


def test_unknown_key_on_command_line_names_key_and_suggests_closest():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["MODEL.RESNET.DEPTH", "50"])
    msg = str(e.value)
    assert "MODEL.RESNET.DEPTH" in msg
    assert "did you mean" in msg
    assert msg.split("did you mean")[1].strip().startswith("MODEL.RESNETS.DEPTH")  # the closest first


def test_unknown_leaf_key_in_yaml_names_key_and_suggests_closest(tmp_path):
    path = write(tmp_path / "c.yaml", "MODEL:\n  RPN:\n    NMS_THRES: 0.6\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "MODEL.RPN.NMS_THRES" in msg
    assert "MODEL.RPN.NMS_THRESH" in msg
    assert str(tmp_path / "c.yaml") in msg


def test_unknown_section_in_yaml_names_it_and_suggests_the_intended_key(tmp_path):
    path = write(tmp_path / "c.yaml", "MODEL:\n  RESNET:\n    DEPTH: 50\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "MODEL.RESNET" in msg
    assert "MODEL.RESNETS.DEPTH" in msg


def test_unknown_top_level_key_in_yaml(tmp_path):
    path = write(tmp_path / "c.yaml", "SOLVERR:\n  BASE_LR: 0.1\n")
    with pytest.raises(ConfigError, match="SOLVERR"):
        load_config(path)


def test_value_where_a_section_is_expected_and_dict_where_a_value_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="MODEL.RPN"):
        load_config(write(tmp_path / "a.yaml", "MODEL:\n  RPN: 3\n"))
    with pytest.raises(ConfigError, match="MODEL.RESNETS.DEPTH"):
        load_config(write(tmp_path / "b.yaml", "MODEL:\n  RESNETS:\n    DEPTH:\n      X: 1\n"))


@pytest.mark.parametrize("key,text,value_repr,type_name", [
    ("MODEL.RESNETS.DEPTH", "fifty", "'fifty' (str)", "int"),
    ("MODEL.RESNETS.DEPTH", "50.5", "50.5 (float)", "int"),
    ("MODEL.RESNETS.DEPTH", "True", "True (bool)", "int"),  # bools are not ints here
    ("SOLVER.BASE_LR", "fast", "'fast' (str)", "float"),
    ("INPUT.RANDOM_FLIP", "1", "1 (int)", "bool"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[32, 'big']", "'big' (str)", "int"),  # element-wise check
    ("MODEL.RPN.IOU_THRESHOLDS", "{'a': 1}", "{'a': 1} (dict)", "list"),
])
def test_wrong_type_on_command_line_names_key_value_and_expected_type(key, text, value_repr, type_name):
    with pytest.raises(ConfigError) as e:
        load_config(None, [key, text])
    msg = str(e.value)
    assert key in msg
    assert value_repr in msg
    assert f"expected type {type_name}" in msg


def test_wrong_type_in_yaml_names_key_value_and_expected_type(tmp_path):
    path = write(tmp_path / "c.yaml", "MODEL:\n  ROI_HEADS:\n    NUM_CLASSES: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "MODEL.ROI_HEADS.NUM_CLASSES" in msg and "'many'" in msg and "int" in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------------------- dump / safety


def test_dump_then_load_gives_identical_config(tmp_path):
    cfg = load_config("configs/coco_r101.yaml", [
        "SOLVER.WEIGHT_DECAY", "1e-5", "INPUT.RANDOM_FLIP", "False", "OUTPUT_DIR", "out dir/x: y",
        "MODEL.RESNETS.STAGE_BLOCKS", "[1, 1, 1, 1]", "MODEL.RESNETS.BLOCK", "basic", "MODEL.WEIGHTS", "007",
    ])
    text = cfg.dump()
    path = tmp_path / "dumped.yaml"
    path.write_text(text, encoding="utf-8")
    again = load_config(str(path))
    assert again.to_dict() == cfg.to_dict()
    assert again.dump() == text
    assert again.SOLVER.WEIGHT_DECAY == 1e-5 and again.MODEL.WEIGHTS == "007"
    assert yaml.safe_load(text) == cfg.to_dict()


def test_old_config_yaml_with_the_retired_version_key_still_loads(tmp_path):
    # config.yaml files written before VERSION was dropped carry "VERSION: 1" at the top level
    old = yaml.safe_load(get_default_config().dump())
    old["VERSION"] = 1
    old["SOLVER"]["BASE_LR"] = 0.5
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old), encoding="utf-8")
    cfg = load_config(str(path))
    assert cfg.SOLVER.BASE_LR == 0.5 and "VERSION" not in cfg
    with pytest.raises(ConfigError, match="VERSION"):  # nothing reads it: not a key to set
        load_config(None, ["VERSION", "2"])


def test_yaml_python_object_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path / "evil.yaml",
                 f"MODEL:\n  WEIGHTS: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()
    path2 = write(tmp_path / "evil2.yaml", "OUTPUT_DIR: !!python/object:collections.OrderedDict {}\n")
    with pytest.raises(ConfigError):
        load_config(path2)


def test_non_mapping_yaml_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


# ----------------------------------------------------------------------------- CfgNode


def test_attribute_access_and_assignment_of_existing_keys():
    cfg = load_config()
    assert cfg.MODEL.RESNETS.DEPTH is cfg["MODEL"]["RESNETS"]["DEPTH"]
    cfg.MODEL.RESNETS.DEPTH = 50
    assert cfg["MODEL"]["RESNETS"]["DEPTH"] == 50


def test_unknown_attribute_get_and_set_raise():
    cfg = load_config()
    with pytest.raises(AttributeError, match="DEPHT"):
        cfg.MODEL.RESNETS.DEPHT
    with pytest.raises(AttributeError, match="DEPHT"):
        cfg.MODEL.RESNETS.DEPHT = 50
    assert "DEPHT" not in cfg.MODEL.RESNETS


def test_deepcopy_is_independent_cfgnode():
    import copy

    cfg = load_config()
    dup = copy.deepcopy(cfg)
    assert isinstance(dup.MODEL, CfgNode)
    dup.MODEL.ANCHOR_GENERATOR.SIZES[0] = 1
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES[0] == 32


def test_yaml_exponent_float_without_dot_is_read_as_float(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string "1e-3"; a float key still takes it.
    p = tmp_path / "lr.yaml"
    p.write_text("SOLVER:\n  BASE_LR: 1e-3\n  WEIGHT_DECAY: 5e-5\n")
    cfg = load_config(str(p))
    assert cfg.SOLVER.BASE_LR == 1e-3 and cfg.SOLVER.WEIGHT_DECAY == 5e-5
    p.write_text("SOLVER:\n  BASE_LR: fast\n")
    with pytest.raises(ConfigError, match="BASE_LR"):
        load_config(str(p))
