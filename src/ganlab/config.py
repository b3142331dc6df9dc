"""The typed config tree: defaults < YAML file < ``--set key=value``.

Every section is a dataclass. ``from_dict`` builds a tree from plain data and rejects unknown keys and
values of the wrong type with an error naming the dotted key and the valid keys or values, so a typo never
silently falls back to a default. The same machinery serves the CycleGAN tree defined here and the
super-resolution tree in ``ganlab.train.sr_config``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from ganlab.errors import GanlabError
from ganlab.models.discriminator import PatchGANConfig
from ganlab.models.generator import GeneratorConfig

T = TypeVar("T")


class ConfigError(GanlabError, ValueError):
    """A config value or key is invalid; the message names the dotted key."""


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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as a string; accept any float literal.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
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


# --------------------------------------------------------------------------------------------------
# The CycleGAN tree
# --------------------------------------------------------------------------------------------------

PhaseStart = int | float


@dataclass
class Phase:
    """Loss weights in force from ``start`` on.

    ``start``: an int >= 1 is a 1-based epoch; an int <= 0 counts from the end (-4: the last 4 epochs);
    a float in (0, 1) is a fraction of training (0.5: the middle).
    """

    start: PhaseStart = 1
    identity: float = 0.5
    gan: float = 1.0
    cycle: float = 10.0

    def validate(self) -> None:
        if isinstance(self.start, float) and not 0.0 < self.start < 1.0:
            raise ConfigError(f"start: a fractional start must lie in (0, 1), got {self.start}")
        for name in ("identity", "gan", "cycle"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: loss weights must be >= 0")


def documented_schedule() -> list[Phase]:
    """The documented recipe: conservative first, then more pressure on the generators."""
    return [
        Phase(start=1, identity=0.5, gan=1.0, cycle=10.0),
        Phase(start=0.5, identity=0.3, gan=1.5, cycle=10.0),
        Phase(start=-4, identity=0.5, gan=1.5, cycle=12.0),
    ]


@dataclass
class DataConfig:
    """Where the two domains are and how crops are made."""

    root: str | None = None  # reference layout: trainA/, trainB/, optional testA/, testB/
    a: str | None = None  # or two folders
    b: str | None = None
    size: int = 256  # random crop size
    load_size: int | None = None  # resize (square) before cropping; default size * 286 / 256
    flip: bool = True
    cache: bool = True  # keep decoded, resized images in memory (small data sets, CPU)
    workers: int = 0
    max_images: int | None = None  # cap per domain (quick experiments)

    def validate(self) -> None:
        if self.size < 8:
            raise ConfigError(f"size: crop size must be >= 8, got {self.size}")
        if self.load_size is not None and self.load_size < self.size:
            raise ConfigError(f"load_size: must be >= size ({self.size}), got {self.load_size}")
        if self.workers < 0:
            raise ConfigError("workers: must be >= 0")

    @property
    def resolved_load_size(self) -> int:
        return self.load_size if self.load_size is not None else round(self.size * 286 / 256)


@dataclass
class TrainConfig:
    """The recipe: optimisation, losses, schedules, logging."""

    epochs: int = 100  # epochs at constant lr
    epochs_decay: int = 0  # then linear decay to 0 over this many epochs
    minutes: float | None = None  # wall-clock budget: stop cleanly with a checkpoint
    batch_size: int = 1
    lr: float = 2e-4
    gen_lr_coef: float = 1.0
    disc_lr_coef: float = 1.25  # discriminators 25% faster: they got stuck on artifacts otherwise
    beta1: float = 0.5
    beta2: float = 0.999
    gan_loss: Literal["lsgan", "vanilla", "hinge"] = "lsgan"
    schedule: list[Phase] = field(default_factory=documented_schedule)
    pool_size: int = 50
    # Differentiable augmentation of every discriminator input, real and fake (ganlab.train.augment):
    # any of "color", "translation". Off in the documented recipe.
    augment: list[str] = field(default_factory=list)
    # Gaussian sigma (px) applied to both images of the L1 cycle term: the cycle then keeps structure but
    # lets a generator drop fine texture instead of hiding it (ganlab.train.losses.cycle_l1). 0: exact.
    cycle_blur: float = 0.0
    ema_decay: float = 0.0  # > 0 keeps a moving average of the generators for eval/inference (e.g. 0.999)
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    # CPU threads for PyTorch (None: its default, one per core). On a machine shared with other jobs, 1
    # avoids oversubscription, which slowed steps about 10x here.
    threads: int | None = None
    log_every: int = 50  # steps between metrics.jsonl step records
    samples: int = 4  # images per domain in the per-epoch sample grid
    max_steps_per_epoch: int | None = None
    keep_checkpoints: int = 3  # newest full checkpoints kept (0 keeps every epoch's)
    keep_every: int = 0  # also keep every N-th epoch's checkpoint (0: none)
    eval_images: int = 16  # test images scored after each epoch when the data root has testA/testB (0: off)
    tensorboard: bool = False

    def validate(self) -> None:
        if self.epochs < 0 or self.epochs_decay < 0 or self.epochs + self.epochs_decay < 1:
            raise ConfigError("epochs: need epochs + epochs_decay >= 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size: must be >= 1")
        if self.lr <= 0:
            raise ConfigError("lr: must be > 0")
        if not self.schedule:
            raise ConfigError("schedule: needs at least one phase")
        from ganlab.train.augment import make_augment

        try:
            make_augment(self.augment)
        except ValueError as e:
            raise ConfigError(f"augment: {e}") from None
        if self.cycle_blur < 0:
            raise ConfigError(f"cycle_blur: must be >= 0 (0 is the exact cycle), got {self.cycle_blur}")
        if self.pool_size < 0:
            raise ConfigError("pool_size: must be >= 0 (0 disables the pool)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads: must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay: must lie in [0, 1), got {self.ema_decay}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError("minutes: must be > 0")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay


@dataclass
class CycleGANConfig:
    """The whole CycleGAN experiment."""

    preset: str = "model2"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    disc: PatchGANConfig = field(default_factory=PatchGANConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def build_cyclegan_config(
    preset: str | None = None,
    files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> CycleGANConfig:
    """Resolve defaults < preset < base (e.g. a checkpoint's config) < YAML files < overrides."""
    from ganlab.models.registry import preset_config

    layers: list[dict[str, Any]] = []
    if base is not None:
        layers.append(base)
    for f in files or []:
        layers.append(load_yaml(f))
    if overrides:
        layers.append(overrides)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, layer)
    name = preset or merged.get("preset") or CycleGANConfig.preset
    merged["preset"] = name
    # The preset fills the architecture; explicit model keys (file or --set) win over it.
    if base is None:
        merged["model"] = merge(to_dict(preset_config(name)), merged.get("model", {}))
    return from_dict(CycleGANConfig, merged)


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
