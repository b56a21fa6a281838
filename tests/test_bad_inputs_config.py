"""Bad configs stop at load time with a ConfigError naming the file, the key / line and the value."""
import textwrap

import pytest

from detection.config import ConfigError, load_config
from detection.config.config import ALL_KEYS, CHECKS, _check_value
from detection.config.checks import problem


def write(path, text):
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def error_of(path=None, opts=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, list(opts))
    return str(e.value)


# ----------------------------------------------------------------------------- a config that says two things


def test_duplicate_top_level_section_names_key_and_both_lines(tmp_path):
    path = write(tmp_path / "two_solvers.yaml", """\
        SOLVER:
          BASE_LR: 0.1
        MODEL:
          RESNETS:
            DEPTH: 50
        SOLVER:
          MAX_ITER: 10
        """)
    msg = error_of(path)
    assert path in msg
    assert "'SOLVER' is given twice" in msg
    assert "line 6" in msg and "first on line 1" in msg


def test_duplicate_nested_key_names_key_and_line(tmp_path):
    path = write(tmp_path / "c.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 50\n    NORM: GN\n    DEPTH: 101\n")
    msg = error_of(path)
    assert "'DEPTH' is given twice" in msg and "line 5" in msg and "first on line 3" in msg


def test_same_key_in_two_sections_is_not_a_duplicate(tmp_path):
    path = write(tmp_path / "c.yaml", """\
        MODEL:
          RPN:
            BATCH_SIZE_PER_IMAGE: 64
          ROI_HEADS:
            BATCH_SIZE_PER_IMAGE: 32
        """)
    cfg = load_config(path)
    assert (cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE, cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE) == (64, 32)


# ----------------------------------------------------------------------------- aliases: bounded work


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _bomb_under_a_key() -> str:
    """The same nine levels inside one flow list under an int key: its type error used to print it."""
    levels = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"&{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    return "MODEL:\n  RESNETS:\n    DEPTH: [" + ", ".join(levels) + "]\n"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("where", ["top level", "under a key"])
def test_billion_laughs_is_refused_quickly_with_a_short_message(tmp_path, where):
    path = write(tmp_path / "bomb.yaml", BILLION_LAUGHS if where == "top level" else _bomb_under_a_key())
    msg = error_of(path)
    assert path in msg and "alias *a" in msg
    assert len(msg) < 400


def test_a_single_alias_is_refused_naming_the_line(tmp_path):
    path = write(tmp_path / "alias.yaml", "MODEL:\n  PIXEL_MEAN: &m [1.0, 2.0, 3.0]\n  PIXEL_STD: *m\n")
    msg = error_of(path)
    assert path in msg and "line 3" in msg and "*m" in msg and "_BASE_" in msg


def test_a_large_wrong_value_is_not_repeated_whole_in_the_message(tmp_path):
    big = "[" + ", ".join(str(i) for i in range(100_000)) + "]"
    msg = error_of(write(tmp_path / "big.yaml", f"MODEL:\n  RESNETS:\n    DEPTH: {big}\n"))
    assert "MODEL.RESNETS.DEPTH" in msg and "expected type int" in msg
    assert len(msg) < 400


# ----------------------------------------------------------------------------- empty file, _BASE_


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "---\n"])
def test_empty_config_file_is_an_error_naming_the_file(tmp_path, text):
    path = write(tmp_path / "empty.yaml", text)
    msg = error_of(path)
    assert path in msg and "sets nothing" in msg


def test_empty_base_file_is_an_error_naming_the_base(tmp_path):
    write(tmp_path / "base.yaml", "\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    assert str(tmp_path / "base.yaml") in error_of(child)


@pytest.mark.parametrize("base,kind", [("[a.yaml, b.yaml]", "list"), ("3", "int"), ("''", "str"),
                                       ("{x: 1}", "dict")])
def test_base_that_is_not_one_file_name_is_an_error_naming_the_file(tmp_path, base, kind):
    write(tmp_path / "a.yaml", "SOLVER:\n  BASE_LR: 0.1\n")
    path = write(tmp_path / "child.yaml", f"_BASE_: {base}\n")
    msg = error_of(path)
    assert path in msg and "_BASE_ must name one file" in msg and f"({kind})" in msg


# ----------------------------------------------------------------------------- values with a range


@pytest.mark.parametrize("key,yaml_value,expected", [
    ("SOLVER.BASE_LR", ".nan", "not a finite number"),
    ("SOLVER.BASE_LR", ".inf", "not a finite number"),
    ("SOLVER.BASE_LR", "0", "expected > 0"),
    ("SOLVER.MAX_ITER", "-5", "expected > 0"),
    ("SOLVER.STEPS", "[800, 400]", "increasing order"),
    ("SOLVER.MOMENTUM", "1.5", "expected in [0, 1]"),
    ("SOLVER.AMP", "fp8", "one of '', 'fp16', 'bf16'"),
    ("MODEL.PIXEL_STD", "[58.4, 0.0, 57.4]", "element 1 (0.0) expected > 0"),
    ("MODEL.PIXEL_MEAN", "[103.5, 116.3]", "a list of 3 elements"),
    ("MODEL.RPN.IOU_THRESHOLDS", "[0.3, 1.7]", "element 1 (1.7) expected in [0, 1]"),
    ("MODEL.RPN.IOU_THRESHOLDS", "[0.7, 0.3]", "increasing order"),
    ("MODEL.RPN.NMS_THRESH", "-0.1", "expected in [0, 1]"),
    ("MODEL.ROI_HEADS.POSITIVE_FRACTION", "2", "expected in [0, 1]"),
    ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", ".nan", "not a finite number"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[]", "a non-empty list"),
    ("MODEL.ANCHOR_GENERATOR.SIZES", "[32, -64]", "element 1 (-64) expected > 0"),
    ("MODEL.RESNETS.DEPTH", "51", "one of 18, 34, 50, 101, 152"),
    ("MODEL.RESNETS.NORM", "batchnorm", "one of 'FrozenBN'"),
    ("INPUT.FORMAT", "rgb", "one of 'RGB', 'BGR'"),
    ("INPUT.MAX_SIZE_TEST", "0", "expected > 0"),
    ("DATALOADER.NUM_WORKERS", "-1", "expected >= 0"),
])
def test_value_outside_its_range_is_an_error_naming_file_key_and_value(tmp_path, key, yaml_value, expected):
    *sections, leaf = key.split(".")
    text = "".join("  " * i + f"{s}:\n" for i, s in enumerate(sections)) + "  " * len(sections) + \
        f"{leaf}: {yaml_value}\n"
    path = write(tmp_path / "bad.yaml", text)
    msg = error_of(path)
    assert path in msg and repr(key) in msg and expected in msg


@pytest.mark.parametrize("key,text,expected", [
    ("SOLVER.MAX_ITER", "-1", "-1 is not accepted: expected > 0"),
    ("SOLVER.BASE_LR", "-0.02", "-0.02 is not accepted: expected > 0"),
    ("MODEL.PIXEL_STD", "[1, 0, 1]", "element 1 (0.0) expected > 0"),
])
def test_command_line_value_outside_its_range_is_an_error(key, text, expected):
    msg = error_of(None, [key, text])
    assert "command-line overrides" in msg and repr(key) in msg and expected in msg


def test_every_default_passes_its_own_check_and_checked_keys_exist():
    assert len(CHECKS) > 60  # the ranges are declared in the schema, key by key
    for key, check in CHECKS.items():
        assert problem(ALL_KEYS[key], check) is None, key
        assert _check_value(key, ALL_KEYS[key], "defaults") == ALL_KEYS[key]


def test_negative_max_iter_stops_training_before_anything_is_written(tmp_path):
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("tool_train_net", os.path.join(root, "tools", "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"'SOLVER.MAX_ITER' in command-line overrides: value -3"):
        train_net.main(["--config", os.path.join(root, "configs", "quickstart.yaml"), "SOLVER.MAX_ITER", "-3",
                        "OUTPUT_DIR", str(out)])
    assert not (out / "model_final.pth").exists()
