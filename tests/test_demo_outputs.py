"""tools/demo.py never writes over an input, gives every input its own outputs, counts skips and
fails when nothing could be read."""
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tiny import TINY_MODEL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "configs", "quickstart.yaml")


def _demo():
    spec = importlib.util.spec_from_file_location("tool_demo", os.path.join(ROOT, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def opts(tmp_path, score_thresh=0.0) -> list[str]:
    """A randomly initialised tiny detector (no weights): enough to exercise inputs and outputs."""
    return ["--config", QUICKSTART, "--score-thresh", str(score_thresh), *TINY_MODEL, "OUTPUT_DIR", str(tmp_path / "run"),
            "DATASETS.TEST", "[no_such_dataset]", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]


def image(path, seed=0, size=(48, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def test_output_equal_to_the_input_folder_is_refused_and_inputs_are_untouched(tmp_path, capsys):
    images = tmp_path / "photos"
    files = [image(images / "a.jpg", 1), image(images / "b.png", 2)]
    before = {f: f.read_bytes() for f in files}
    with pytest.raises(SystemExit) as e:
        _demo().main(["--input", str(images), "--output", str(images), *opts(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"writing {images / 'a.jpg'} would replace the input image" in err
    assert {f: f.read_bytes() for f in files} == before
    assert sorted(os.listdir(images)) == ["a.jpg", "b.png"]


def test_output_folder_holding_an_input_file_is_refused(tmp_path, capsys):
    target = image(tmp_path / "out" / "x.jpg")
    before = target.read_bytes()
    with pytest.raises(SystemExit):
        _demo().main(["--input", str(target), "--output", str(tmp_path / "out"), *opts(tmp_path)])
    assert "would replace the input image" in capsys.readouterr().err and target.read_bytes() == before


def test_same_stem_other_extension_and_same_name_in_two_folders_give_distinct_outputs(tmp_path):
    a_jpg, a_png = image(tmp_path / "in" / "one" / "a.jpg", 1), image(tmp_path / "in" / "one" / "a.png", 2)
    x1, x2 = image(tmp_path / "in" / "two" / "x.jpg", 3, (40, 56)), image(tmp_path / "in" / "three" / "x.jpg", 4)
    out = tmp_path / "out"
    written = _demo().main(["--input", str(tmp_path / "in" / "one"), str(tmp_path / "in" / "two"),
                            str(tmp_path / "in" / "three"), "--output", str(out), *opts(tmp_path, 1.1)])
    expected = ["one/a.jpg", "one/a.png", "two/x.jpg", "three/x.jpg"]
    assert sorted(written) == sorted(str(out / e) + ".json" for e in expected)
    for name, source in zip(expected, (a_jpg, a_png, x1, x2)):
        drawn = cv2.imread(str(out / name))
        assert drawn is not None and drawn.shape == cv2.imread(str(source)).shape, name
    # nothing drawn above a threshold of 1.1: the PNG output, lossless, equals its input exactly
    assert np.array_equal(cv2.imread(str(out / "one" / "a.png")), cv2.imread(str(a_png)))


def test_a_single_file_keeps_its_name_and_a_file_given_twice_is_read_once(tmp_path):
    f = image(tmp_path / "in" / "pic.jpeg")
    written = _demo().main(["--input", str(f), str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                            *opts(tmp_path)])
    assert written == [str(tmp_path / "out" / "pic.jpeg.json")]


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    image(tmp_path / "in" / "good.jpg")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    written = _demo().main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), *opts(tmp_path)])
    assert written == [str(tmp_path / "out" / "good.jpg.json")]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "ERROR: skipping" in log and str(tmp_path / "in" / "broken.jpg") in log
    assert "demo: 1 image(s) processed, 1 skipped (unreadable); outputs in " + str(tmp_path / "out") in log


def test_nothing_readable_exits_with_status_1(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"garbage")
    (tmp_path / "in" / "b.png").write_bytes(b"")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--input", str(tmp_path / "in"),
                          "--output", str(tmp_path / "out"), *opts(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 1
    assert "none of the 2 input image(s) could be read; nothing written" in run.stderr
    assert not any(f.endswith(".json") for _, _, fs in os.walk(tmp_path / "out") for f in fs)
