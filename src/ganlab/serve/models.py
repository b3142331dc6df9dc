"""The models a server holds: each loaded once at start, then applied to PIL images from worker threads.

:func:`load_model` is the one adapter between ``ganlab serve`` and the ways ganlab loads a model. Today it
reads run directories (CycleGAN: both generators; SR: the generator) through the same loaders as
``ganlab translate`` and ``ganlab sr upscale``; when ``ganlab.load(...)`` (runs, reference weights,
pretrained) and ONNX files exist, only this function changes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganlab.core.device import resolve_precision
from ganlab.core.errors import UserError
from ganlab.core.images import pil_to_tensor, tensor_to_pil, to_rgb
from ganlab.core.rundir import run_meta
from ganlab.cyclegan.translate import DIRECTIONS, load_run_models, translate_tensor
from ganlab.sr.evaluate import load_sr_generator
from ganlab.sr.upscale import upscale_image

TASK_NAMES = {"cyclegan": "CycleGAN translation", "sr": "super-resolution"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Cancelled(Exception):
    """The client went away; the work stopped at the next tile boundary."""


# (image, direction or None, check) -> image; ``check`` raises Cancelled once the client is gone.
ApplyFn = Callable[[Image.Image, "str | None", Callable[[], None]], Image.Image]


@dataclass
class ServedModel:
    """One model as the API lists it, with the function that applies it."""

    name: str
    task: str  # "cyclegan" | "sr"
    directions: list[str]  # CycleGAN: ["a2b", "b2a"]; SR: []
    scale: int
    architecture: str
    parameters: int
    source: str
    apply: ApplyFn = field(repr=False)
    min_side: int = 1  # smaller images are refused (400): the network cannot take them

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "directions": self.directions,
            "scale": self.scale,
            "architecture": self.architecture,
            "parameters": self.parameters,
        }


class _Checked:
    """Calls ``check`` before every forward pass, so a tiled image stops between tiles once cancelled."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], check: Callable[[], None]) -> None:
        self.fn, self.check = fn, check

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.check()
        return self.fn(x)


def parse_spec(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named after the directory) -> (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep or not _NAME.match(name):
        name, path = Path(spec).name, spec
    if not _NAME.match(name):
        raise UserError(
            f"cannot name a model after {spec!r}; give it a name as NAME=PATH (letters, digits, . _ -)"
        )
    return name, Path(path)


def load_model(
    spec: str,
    device: torch.device | None = None,
    precision: str = "auto",
    tile: int = 512,
    checkpoint: str | int = "latest",
) -> ServedModel:
    """A run directory (``NAME=PATH`` or ``PATH``) -> a :class:`ServedModel` on ``device``.

    ``tile``: images with a side over this many pixels are processed in overlapping tiles (bounded memory;
    SR uses LR tiles of half that side; 0: whole images). ``precision``: as ``ganlab translate`` (auto: bf16 where native).
    """
    name, path = parse_spec(spec)
    if not path.exists():
        raise UserError(f"model {name!r}: {path} does not exist")
    device = device or torch.device("cpu")
    precision = resolve_precision(precision, device)
    task = run_meta(path, checkpoint).get("task")
    if task == "cyclegan":
        return _cyclegan(name, path, device, precision, tile, checkpoint)
    if task == "sr":
        return _sr(name, path, device, precision, tile, checkpoint)
    raise UserError(f"model {name!r}: {path} is a {task!r} run; ganlab serve knows {', '.join(TASK_NAMES)}")


def _count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _cyclegan(
    name: str, path: Path, device: torch.device, precision: str, tile: int, checkpoint: str | int
) -> ServedModel:
    models, cfg, _ = load_run_models(path, checkpoint, device)
    # Eval mode, no grad: a forward pass changes no state, so worker threads share the generators.
    gens = {d: models[key] for d, key in DIRECTIONS.items()}

    def apply(im: Image.Image, direction: str | None, check: Callable[[], None]) -> Image.Image:
        # As `ganlab translate`: any mode -> RGB (alpha composited on white), output the input's size.
        x = pil_to_tensor(to_rgb(im))[None].to(device)
        y = translate_tensor(_Checked(gens[direction or "a2b"], check), x, tile, 32, precision)
        return tensor_to_pil(y[0])

    # Reflection padding and InstanceNorm need >= 2 pixels per side at the coarsest of the n_down levels.
    min_side = max(4, 2**cfg.model.n_down + 1)
    return ServedModel(
        name, "cyclegan", list(DIRECTIONS), 1, cfg.preset, _count(*gens.values()), str(path), apply, min_side
    )


def _sr(
    name: str, path: Path, device: torch.device, precision: str, tile: int, checkpoint: str | int
) -> ServedModel:
    model, cfg, _ = load_sr_generator(path, checkpoint, device)
    scale, pad = cfg.model.scale, model.receptive_radius
    lr_tile = tile // 2  # LR tiles: the default 512 gives `ganlab sr upscale`'s 256

    def apply(im: Image.Image, direction: str | None, check: Callable[[], None]) -> Image.Image:
        # As `ganlab sr upscale`: grey stays grey, 16-bit stays 16-bit, alpha is upscaled and kept.
        return upscale_image(_Checked(model, check), im, scale, device, lr_tile, pad, precision)

    return ServedModel(name, "sr", [], scale, cfg.preset, _count(model), str(path), apply)


def load_models(specs: list[str], warm: bool = True, **kwargs: Any) -> list[ServedModel]:
    """Every model of the command line, names unique. ``warm``: run each once on a small image, so the
    first request does not pay for the kernels' first-use setup."""
    models: list[ServedModel] = []
    for spec in specs:
        m = load_model(spec, **kwargs)
        if any(o.name == m.name for o in models):
            raise UserError(f"two models are named {m.name!r}; name them apart with NAME=PATH")
        if warm:
            for direction in m.directions or [None]:
                m.apply(Image.new("RGB", (64, 64)), direction, lambda: None)
        models.append(m)
    return models


def cancel_check(event: threading.Event) -> Callable[[], None]:
    """A ``check`` for :data:`ApplyFn` that raises :class:`Cancelled` once ``event`` is set."""

    def check() -> None:
        if event.is_set():
            raise Cancelled

    return check
