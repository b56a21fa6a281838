"""Config loading: schema defaults <- YAML (with _BASE_ inheritance) <- command-line KEY VALUE pairs.

Unknown keys, wrongly typed values and values outside a key's declared range are errors that name
the key, the value and what was expected. YAML is read with a safe loader that also refuses what
would make a file say two things or expand without bound: a key given twice in one mapping, and
aliases (``*name``; use ``_BASE_`` to share settings). An empty file is an error, not the defaults.
"""
from __future__ import annotations

import ast
import copy
import difflib
import math
import os
import re
import reprlib
from collections.abc import Iterable
from typing import Any

import yaml

from .checks import problem
from .defaults import SCHEMA

BASE_KEY = "_BASE_"
# Top-level keys that older files carry and nothing reads any more: accepted in a YAML file and
# dropped (VERSION, "config format version", was written into every config.yaml until it went).
RETIRED_KEYS = ("VERSION",)
_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override does not fit the schema."""


class _YAMLRefusal(yaml.YAMLError):
    """A YAML construct configs do not accept; the message names the line."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and aliases.

    Aliases are refused where they are parsed, before anything is built: a few hundred bytes of
    nested aliases ("billion laughs") stand for 10^9 nodes, and nothing in a config needs them.
    """

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YAMLRefusal(
                f"line {event.start_mark.line + 1}: YAML alias *{event.anchor[:40]} is not accepted in "
                "configs (write the value out, or share settings through _BASE_)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: let SafeLoader report it
                break
            if seen is not None:
                raise _YAMLRefusal(
                    f"line {key_node.start_mark.line + 1}: key {_short(key)} is given twice in one mapping "
                    f"(first on line {seen}); the file would say two things")
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _short(value: Any) -> str:
    """A bounded repr for messages: never the whole of a large value."""
    return reprlib.repr(value)


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
            keys[full] = value
    return keys


_LEAVES = _leaf_keys(SCHEMA)  # key -> (default, meaning[, check])
ALL_KEYS = {k: leaf[0] for k, leaf in _LEAVES.items()}
CHECKS = {k: leaf[2] for k, leaf in _LEAVES.items() if len(leaf) > 2}


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
        f"config key {key!r} in {where}: value {_short(value)} ({type(value).__name__}) "
        f"does not fit the expected type {expected.__name__} (default {_short(default)})"
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
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} in {where}: value {value!r} is not a finite number")
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


def _check_value(key: str, value: Any, where: str) -> Any:
    """``value`` converted to the key's type and inside its declared range, or a ConfigError."""
    value = _check_type(key, value, ALL_KEYS[key], where)
    if key in CHECKS:
        why = problem(value, CHECKS[key])
        if why:
            raise ConfigError(f"config key {key!r} in {where}: value {_short(value)} is not accepted: {why} "
                              f"(default {_short(ALL_KEYS[key])}; {describe(key)})")
    return value


def _merge(cfg: CfgNode, overrides: dict, where: str, prefix: str = "") -> None:
    for name, value in overrides.items():
        key = prefix + str(name)
        if name not in cfg:
            raise _unknown_key_error(key, where)
        if isinstance(cfg[name], CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} in {where} is a section; got the value {_short(value)}")
            _merge(cfg[name], value, where, key + ".")
        else:
            if isinstance(value, dict):
                raise _unknown_key_error(key + "." + next(iter(value), ""), where)
            cfg[name] = _check_value(key, value, where)


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML file, resolving ``_BASE_`` (relative to the file) recursively."""
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"config {path}: _BASE_ cycle through {' -> '.join(seen)}")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_ConfigLoader)
        except _YAMLRefusal as e:
            raise ConfigError(f"config file {path}, {e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if data is None or data == {}:
        raise ConfigError(f"config file {path} sets nothing (it is empty or only comments); an empty file is "
                          "almost always a mistake (wrong path or a lost edit). Give no --config to use the "
                          "defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config file {path}: {BASE_KEY} must name one file (a string); got {_short(base)} "
                          f"({type(base).__name__}). A file has one base; chain bases by giving the base its own "
                          f"{BASE_KEY}")
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
        value = yaml.load(text, Loader=_ConfigLoader)
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
        node[leaf] = _check_value(key, value, "command-line overrides")


def config_from_dict(data: dict, opts: Iterable[str] = (), where: str = "a config dict") -> CfgNode:
    """Defaults, then the nested mapping ``data`` (e.g. ``yaml.safe_load`` of ``CfgNode.dump()``, as
    our checkpoints carry it), then ``opts`` as KEY VALUE pairs; ``where`` names the source in errors."""
    cfg = get_default_config()
    _merge(cfg, {k: v for k, v in data.items() if k not in RETIRED_KEYS}, where)
    merge_from_list(cfg, opts)
    return cfg


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
