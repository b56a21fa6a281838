"""The restricted unpickler: numpy weight pickles load, anything that runs code is refused first."""
import io
import os
import pickle
import struct
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

from detection.checkpoint import (CorruptCheckpointError, UnsafePickleError, load_weights, read_checkpoint,
                                  safe_load, safe_loads)


class _RunsCommand:
    """Unpickling this runs a shell command (the classic malicious-pickle payload)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _py2_binstring(data: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING opcode)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<I", len(data)) + data


def _py2_array(a: np.ndarray) -> bytes:
    """A float32 array exactly as numpy under Python 2 pickles it (protocol 2, numpy.core names, str data)."""
    a = np.ascontiguousarray(a, dtype="<f4")
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in a.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_binstring(b"f4") + b"K\x00K\x01\x87R"
             + b"(K\x03" + _py2_binstring(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_binstring(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89" + _py2_binstring(a.tobytes()) + b"tb")


def py2_pickle(d: dict) -> bytes:
    """A Python-2 style pickle (as the MSRA/Detectron R-50.pkl files are) of {str: float32 array | dict}."""
    def obj(v):
        if isinstance(v, dict):
            return b"}(" + b"".join(_py2_binstring(k.encode("latin1")) + obj(x) for k, x in v.items()) + b"u"
        return _py2_array(v)
    return b"\x80\x02" + obj(d) + b"."


def test_numpy_dicts_roundtrip_all_protocols():
    rng = np.random.default_rng(0)
    data = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64),
            "nested": OrderedDict(c=np.float64(2.5), d=[1, 2.0, "x", (3,), {4, 5}, b"raw"]),
            "h": rng.standard_normal(7).astype(np.float16)}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        out = safe_loads(pickle.dumps(data, protocol=protocol))
        np.testing.assert_array_equal(out["a"], data["a"])
        np.testing.assert_array_equal(out["b"], data["b"])
        np.testing.assert_array_equal(out["h"], data["h"])
        assert out["nested"]["c"] == 2.5 and out["nested"]["d"] == data["nested"]["d"]


def test_python2_latin1_pickle_loads():
    rng = np.random.default_rng(1)
    blobs = {"conv1_w": rng.standard_normal((4, 3, 7, 7)).astype(np.float32),
             "res_conv1_bn_s": rng.standard_normal(4).astype(np.float32)}
    data = py2_pickle({"blobs": blobs})
    # the helper writes what Python 2 wrote: the stock unpickler needs latin1 for it too
    reference = pickle.loads(data, encoding="latin1")
    np.testing.assert_array_equal(reference["blobs"]["conv1_w"], blobs["conv1_w"])
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # default ASCII decoding of the raw array bytes
    out = safe_loads(data)  # latin1 by default
    for k, v in blobs.items():
        np.testing.assert_array_equal(out["blobs"][k], v)


@pytest.mark.parametrize("payload", [
    b"cos\nsystem\n(S'true'\ntR.",
    b"cposix\nsystem\n(S'true'\ntR.",
    b"cbuiltins\neval\n(S'1+1'\ntR.",
    b"cbuiltins\nexec\n(S'x=1'\ntR.",
    b"cbuiltins\ngetattr\n(cbuiltins\nint\nS'real'\ntR.",
    b"c__builtin__\neval\n(S'1+1'\ntR.",  # Python 2 name, mapped to builtins.eval: still refused
    b"csubprocess\ncheck_output\n((S'true'\nltR.",
    b"ctorch\nload\n(S'x'\ntR.",
    b"cnumpy\nload\n(S'x'\ntR.",
    b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\ncbuiltins\nobject\nNtR.",
])
def test_refuses_globals_outside_the_allow_list(payload):
    with pytest.raises(UnsafePickleError) as e:
        safe_loads(payload)
    module_name = payload[1:].split(b"\n")[:2]
    assert module_name[1].decode() in str(e.value)


def test_refuses_persistent_ids():
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if isinstance(obj, list) else None
    buf = io.BytesIO()
    P(buf, protocol=2).dump({"x": [1]})
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        safe_loads(buf.getvalue())


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model_final_evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"backbone.stem.conv1.weight": np.zeros((2, 3, 7, 7), np.float32),
                               "evil": _RunsCommand(marker)}, "__author__": "x"}, f, protocol=2)
    with pytest.raises(UnsafePickleError) as e:
        with open(path, "rb") as f:
            safe_load(f)
    assert "system" in str(e.value)
    with pytest.raises(UnsafePickleError) as e:
        load_weights(nn.Conv2d(3, 2, 7), path)
    assert str(path) in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


def test_malicious_torch_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _RunsCommand(marker)}, path)
    with pytest.raises(UnsafePickleError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_stock_unpickler_would_have_run_it(tmp_path):
    """Guards the two tests above: the payload really is live."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_RunsCommand(marker)))
    assert marker.exists()


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "R-50.pkl"
    data = pickle.dumps({"conv1_w": np.zeros((64, 3, 7, 7), np.float32)}, protocol=2)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
