import json
import os


def read_json(path, what: str = "json file", not_found=FileNotFoundError, malformed=ValueError):
    """``json.load`` whose errors name the file and, for bad syntax, the line and column.

    ``not_found`` and ``malformed`` pick the exception types (the data package raises its
    DatasetNotFoundError / DatasetFormatError, subclasses of the defaults).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise not_found(f"{what} not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise malformed(f"{what} {path}: line {e.lineno}, column {e.colno}: malformed json: {e.msg}") from None
