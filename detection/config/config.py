"""Config loading: schema defaults <- YAML (with _BASE_ inheritance) <- command-line KEY VALUE pairs.

Unknown keys and wrongly typed values are errors that name the key, the value and what was
expected. YAML is read with ``yaml.safe_load``.
"""
from __future__ import annotations

import ast
import copy
import difflib
import os
import re
from collections.abc import Iterable
from typing import Any

import yaml

from .defaults import SCHEMA

BASE_KEY = "_BASE_"
# Top-level keys that older files carry and nothing reads any more: accepted in a YAML file and
# dropped (VERSION, "config format version", was written into every config.yaml until it went).
RETIRED_KEYS = ("VERSION",)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override does not fit the schema."""


class CfgNode(dict):
    """A dict of sections and values with attribute access (``cfg.MODEL.DEVICE``).

    Frozen after loading: assigning a key that does not exist raises, so typos never pass.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self:
            raise AttributeError(f"config has no key {name!r}")
        self[name] = value

    def __deepcopy__(self, memo):
        return CfgNode({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, CfgNode) else copy.deepcopy(v) for k, v in self.items()}

    def dump(self) -> str:
        """The resolved config as YAML; ``load_config`` reads it back unchanged."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _leaf_keys(schema: dict, prefix: str = "") -> dict[str, Any]:
    keys = {}
    for name, value in schema.items():
        full = prefix + name
        if isinstance(value, dict):
            keys.update(_leaf_keys(value, full + "."))
        else:
            keys[full] = value[0]
    return keys


ALL_KEYS = _leaf_keys(SCHEMA)


def _defaults(schema: dict) -> CfgNode:
    return CfgNode(
        {k: _defaults(v) if isinstance(v, dict) else copy.deepcopy(v[0]) for k, v in schema.items()}
    )


def get_default_config() -> CfgNode:
    return _defaults(SCHEMA)


def describe(key: str) -> str:
    """The one-line meaning of a key (``describe("MODEL.DEVICE")``)."""
    node: Any = SCHEMA
    for part in key.split("."):
        node = node[part]
    return node[1]


def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, ALL_KEYS.keys(), n=3, cutoff=0.6)
    if not close:  # fall back to keys that share the last component
        last = key.split(".")[-1]
        close = [k for k in ALL_KEYS if k.split(".")[-1] == last][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _check_type(key: str, value: Any, default: Any, where: str) -> Any:
    """Return ``value`` converted to the default's type, or raise naming key, value and type."""
    expected = type(default)
    bad = ConfigError(
        f"config key {key!r} in {where}: value {value!r} ({type(value).__name__}) "
        f"does not fit the expected type {expected.__name__} (default {default!r})"
    )
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, float):
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, (list, tuple)):
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and default and not isinstance(default[0], list):
            value = [value]  # a scalar where a list is expected: MIN_SIZE_TRAIN: 600
        if not isinstance(value, list):
            raise bad
        if default:  # check elements against the default's element type
            elem = default[0]
            return [_check_type(f"{key}[{i}]", v, elem, where) for i, v in enumerate(value)]
        return value
    raise bad


def _merge(cfg: CfgNode, overrides: dict, where: str, prefix: str = "") -> None:
    for name, value in overrides.items():
        key = prefix + str(name)
        if name not in cfg:
            raise _unknown_key_error(key, where)
        if isinstance(cfg[name], CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} in {where} is a section; got the value {value!r}")
            _merge(cfg[name], value, where, key + ".")
        else:
            if isinstance(value, dict):
                raise _unknown_key_error(key + "." + next(iter(value), ""), where)
            cfg[name] = _check_type(key, value, ALL_KEYS[key], where)


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML file, resolving ``_BASE_`` (relative to the file) recursively."""
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"config {path}: _BASE_ cycle through {' -> '.join(seen)}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged = _read_yaml(os.path.join(os.path.dirname(path), base), seen + (path,))
    _deep_update(merged, data)
    return merged


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _parse_cli_value(text: str) -> Any:
    """Command-line values are Python/YAML literals; anything else is a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if value is None else value


def merge_from_list(cfg: CfgNode, opts: Iterable[str]) -> None:
    """Apply Detectron2-style ``KEY VALUE`` pairs (``MODEL.RESNETS.DEPTH 50``)."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"command-line overrides must be KEY VALUE pairs; got an odd count: {opts}")
    for key, text in zip(opts[0::2], opts[1::2]):
        if key not in ALL_KEYS:
            raise _unknown_key_error(key, "command-line overrides")
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        value = _parse_cli_value(text)
        if isinstance(ALL_KEYS[key], str) and not isinstance(value, str):
            value = text  # a string key given something that parses as a number, e.g. a path "1"
        node[leaf] = _check_type(key, value, ALL_KEYS[key], "command-line overrides")


def load_config(path: str | None = None, opts: Iterable[str] = ()) -> CfgNode:
    """Defaults, then the YAML file at ``path`` (if any), then ``opts`` as KEY VALUE pairs."""
    cfg = get_default_config()
    if path:
        data = _read_yaml(path)
        for key in RETIRED_KEYS:
            data.pop(key, None)
        _merge(cfg, data, path)
    merge_from_list(cfg, opts)
    return cfg
