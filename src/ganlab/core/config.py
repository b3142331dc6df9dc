"""The typed config tree: defaults < YAML file < ``--set key=value``.

Every section is a dataclass. ``from_dict`` builds a tree from plain data and rejects unknown keys and
values of the wrong type with an error naming the dotted key and the valid keys or values, so a typo never
silently falls back to a default. Each task defines its own tree (``ganlab.cyclegan.config``,
``ganlab.sr.config``) with this machinery.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ganlab.core.errors import ConfigError

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Generic dataclass <-> dict machinery
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list of {_type_name(arg)}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: invalid value {value!r}; valid values: {', '.join(map(str, choices))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept any float literal.
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unspecified fields keep their defaults."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]!s}; valid keys in {prefix.rstrip('.') or 'the config'}: "
            + ", ".join(names)
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(f"{prefix}{e}") from None
    return obj


def validate_reliability(train: Any) -> None:
    """The checks of the ``train`` keys both tasks share: logging, checkpoints, non-finite losses."""
    if train.log_every < 1:
        raise ConfigError("log_every: must be >= 1")
    if train.keep_checkpoints < 0 or train.keep_checkpoints == 1:
        raise ConfigError(
            "keep_checkpoints: must be 0 (keep all) or >= 2 (the previous checkpoint is the fallback "
            f"when the latest is damaged), got {train.keep_checkpoints}"
        )
    if train.keep_every < 0:
        raise ConfigError("keep_every: must be >= 0")
    if train.checkpoint_every_steps is not None and train.checkpoint_every_steps < 1:
        raise ConfigError("checkpoint_every_steps: must be >= 1 (null: off)")
    if train.checkpoint_every_minutes is not None and train.checkpoint_every_minutes <= 0:
        raise ConfigError("checkpoint_every_minutes: must be > 0 (null: off)")
    if train.max_bad_steps < 1:
        raise ConfigError("max_bad_steps: must be >= 1")


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-safe data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; override wins; lists are replaced, not merged."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.hidden=32"]`` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is set twice as a value and as a section")
        node[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; used to diff configs at resume."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """Keys whose value differs: {"train.lr": [old, new]}."""
    fo, fn = flatten(old), flatten(new)
    return {k: [fo.get(k), fn.get(k)] for k in sorted(set(fo) | set(fn)) if fo.get(k) != fn.get(k)}


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


@dataclass(frozen=True)
class Option:
    """A command-line flag for one config key: ``name`` ``batch_size`` is ``--batch-size`` on the command
    line and ``batch_size:`` in a sweep's ``base:``; ``key`` is the dotted config key it sets."""

    name: str
    key: str
    help: str
    type: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    flag_value: Any = None  # a switch (no argument) that sets the key to this value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def option_overrides(values: dict[str, Any], options: tuple[Option, ...]) -> dict[str, Any]:
    """Nested overrides from option values by name (None: not given)."""
    out: dict[str, Any] = {}
    for o in options:
        value = values.get(o.name)
        if value is not None:
            node = out
            *sections, last = o.key.split(".")
            for s in sections:
                node = node.setdefault(s, {})
            node[last] = value
    return out
