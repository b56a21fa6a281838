"""A restricted unpickler for weight files made of numpy arrays.

Unpickling runs whatever callables the pickle names (``os.system`` via ``__reduce__``, ...). Weight
files only need numpy arrays inside plain containers, so ``find_class`` resolves an explicit
allow-list of (module, name) pairs and refuses everything else with :class:`UnsafePickleError`
*before* anything is called.

Python 2 pickles (MSRA / Detectron caffe2 ``R-50.pkl``) store byte strings as ``str``; read them with
``encoding="latin1"`` (the default here), which numpy understands when it rebuilds array data.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections.abc import Callable
from typing import IO, Any

from .errors import UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "RestrictedUnpickler", "UnsafePickleError", "safe_load", "safe_loads"]


def _numpy_core(submodule: str):
    """numpy._core.<submodule> (numpy >= 2) or numpy.core.<submodule> (numpy 1.x)."""
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


def _np(attr: str) -> Callable[[], Any]:
    def resolve():
        import numpy

        return getattr(numpy, attr)

    return resolve


def _np_core(submodule: str, attr: str) -> Callable[[], Any]:
    return lambda: getattr(_numpy_core(submodule), attr)


def _builtin(obj: Any) -> Callable[[], Any]:
    return lambda: obj


def _ordered_dict():
    import collections

    return collections.OrderedDict


def _codecs_encode():
    import codecs

    return codecs.encode


# (module, name) -> resolver. numpy.core.* and numpy._core.* are the same functions under numpy 1.x / 2.x.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): _np("ndarray"),
    ("numpy", "dtype"): _np("dtype"),
    **{(m, "_reconstruct"): _np_core("multiarray", "_reconstruct") for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _np_core("multiarray", "scalar") for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol 5 pickles of contiguous arrays
    **{(m, "_frombuffer"): _np_core("numeric", "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")},
    # protocol 2 written by Python 3 stores bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"): _codecs_encode,
    ("collections", "OrderedDict"): _ordered_dict,
    # plain value constructors (no eval/exec/getattr/__import__/type/object)
    **{("builtins", t.__name__): _builtin(t) for t in (dict, list, tuple, set, frozenset, int, float, complex, str,
                                                       bytes, bytearray, bool, slice, range)},
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only resolves :data:`ALLOWED_GLOBALS`.

    Persistent ids (used by torch's own format) raise ``pickle.UnpicklingError``; read torch files
    with ``torch.load(..., weights_only=True)``.
    """

    def __init__(self, file: IO[bytes], *, encoding: str = "latin1", errors: str = "strict"):
        super().__init__(file, encoding=encoding, errors=errors)

    def find_class(self, module: str, name: str) -> Any:
        original = f"{module}.{name}"
        # Python 2 names (__builtin__, copy_reg, ...) -> Python 3, as pickle itself does for protocol < 3
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                f"refusing to unpickle the global {original!r}: weight pickles may only contain numpy arrays, "
                f"numbers, strings and containers (allowed: numpy arrays/dtypes/scalars, OrderedDict, plain builtins)"
            )
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        # Not a safety problem (nothing is resolved), but not a plain weight pickle either.
        raise pickle.UnpicklingError(
            "the pickle uses persistent ids (a torch file or a custom format, or not a pickle at all); "
            "torch files are read with torch.load(weights_only=True)"
        )


def safe_load(file: IO[bytes], *, encoding: str = "latin1") -> Any:
    """Unpickle one object from an open binary file with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file, encoding=encoding).load()


def safe_loads(data: bytes, *, encoding: str = "latin1") -> Any:
    """Unpickle one object from bytes with :class:`RestrictedUnpickler`."""
    return safe_load(io.BytesIO(data), encoding=encoding)
