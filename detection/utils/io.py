import json
import os


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
        raise malformed(f"{what} {os.fspath(path)}: line {e.lineno}, column {e.colno}: malformed json: {e.msg}") from None
