"""Reading json with errors that name the file, and writing files atomically."""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any


def read_text(path, what: str = "file", not_found=FileNotFoundError, malformed=ValueError) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is dropped); errors name the file and, for bytes
    that are not UTF-8, their offset. ``not_found``/``malformed`` pick the exception types."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise not_found(f"{what} not found: {path}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise malformed(f"{what} {path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 4]!r})") from None


def read_json(path, what: str = "json file", not_found=FileNotFoundError, malformed=ValueError):
    """``json.load`` whose errors name the file and, for bad syntax, the line and column.

    ``not_found`` and ``malformed`` pick the exception types (the data package raises its
    DatasetNotFoundError / DatasetFormatError, subclasses of the defaults).
    """
    text = read_text(path, what, not_found, malformed)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise malformed(f"{what} {path}: line {e.lineno}, column {e.colno}: malformed json: {e.msg}") from None


def atomic_write(path, write: Callable[[str], Any]) -> str:
    """Write ``path`` through ``write(tmp_path)`` so that readers see the old file or the new one,
    never half of one: ``write`` fills a temporary file in the same folder (unique per call, so
    processes and threads do not collide), which is flushed to disk and renamed over ``path``.
    If ``write`` raises, the temporary file is removed and ``path`` is left as it was.
    Creates the folder. Returns ``path``. Example: ``atomic_write(p, lambda t: torch.save(obj, t))``.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path, text: str) -> str:
    """``text`` into ``path`` (utf-8), atomically (see ``atomic_write``)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def write_json(path, obj, **dump_kwargs) -> str:
    """``json.dump(obj, ..., **dump_kwargs)`` into ``path``, atomically (see ``atomic_write``)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, **dump_kwargs)

    return atomic_write(path, write)
