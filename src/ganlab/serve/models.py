"""The models a server holds: each loaded once at start, then applied to PIL images from worker threads.

:func:`load_model` is the one adapter between ``ganlab serve`` and the ways ganlab loads a model: it goes
through the Python API, ``ganlab.load`` (CycleGAN runs, reference ``.pth`` weights, ``pretrained:NAME``)
and ``ganlab.load_sr`` (SR runs), and applies the models with the same functions as ``ganlab translate``
and ``ganlab sr upscale``, wrapped so that a request whose client left stops between tiles. ONNX files,
once ganlab exports them, are one more branch there.
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
from torch import nn

from ganlab.api import PRETRAINED_PREFIX, load, load_sr
from ganlab.core.errors import UserError
from ganlab.core.images import pil_to_tensor, tensor_to_pil, to_rgb
from ganlab.core.rundir import RunDir, run_meta
from ganlab.cyclegan.translate import translate_tensor
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


class _Checked(nn.Module):
    """Calls ``check`` before every forward pass, so a tiled image stops between tiles once cancelled.
    A module holding the generator, so its parameters (and their memory layout) show through."""

    def __init__(self, fn: nn.Module, check: Callable[[], None]) -> None:
        super().__init__()
        self.fn, self.check = fn, check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check()
        return self.fn(x)


def parse_spec(spec: str) -> tuple[str, str]:
    """``NAME=SOURCE`` or ``SOURCE`` -> (name, source). A source is a run directory, a reference ``.pth``
    file or folder, or ``pretrained:NAME``; unnamed, it is named after the folder, the file's stem or
    the pretrained name."""
    name, sep, source = spec.partition("=")
    if not sep or not _NAME.match(name):
        source = spec
        bare = spec[len(PRETRAINED_PREFIX) :] if spec.startswith(PRETRAINED_PREFIX) else spec
        path = Path(bare)
        name = path.stem if path.suffix.lower() in (".pth", ".pt") else path.name
    if not _NAME.match(name):
        raise UserError(
            f"cannot name a model after {spec!r}; give it a name as NAME=SOURCE (letters, digits, . _ -)"
        )
    return name, source


def load_model(
    spec: str,
    device: str = "auto",
    precision: str = "auto",
    tile: int = 512,
    checkpoint: str | int = "latest",
) -> ServedModel:
    """``NAME=SOURCE`` or ``SOURCE`` -> a :class:`ServedModel`: SR runs through ``ganlab.load_sr``,
    everything else through ``ganlab.load``.

    ``tile``: images with a side over this many pixels are processed in overlapping tiles (bounded memory;
    SR uses LR tiles of half that side; 0: whole images). ``precision``: as ``ganlab translate`` (auto:
    bf16 where native).
    """
    name, source = parse_spec(spec)
    meta = run_meta(source, checkpoint) if RunDir(Path(source)).has_checkpoint() else {}
    if meta.get("task") == "sr":
        up = load_sr(source, checkpoint=checkpoint, device=device, precision=precision)
        return _sr(name, source, up, meta["config"].get("preset", "srresnet"), tile)
    model = load(source, checkpoint=checkpoint, device=device, precision=precision, progress=False)
    return _cyclegan(name, source, model, tile)


def _count(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _cyclegan(name: str, source: str, tr: Any, tile: int) -> ServedModel:
    """``tr``: a ``ganlab.cyclegan.translate.Translator`` (one or both directions)."""
    # Eval mode, no grad: a forward pass changes no state, so worker threads share the generators.
    gens = {d: tr.generator(d) for d in tr.directions}

    def apply(im: Image.Image, direction: str | None, check: Callable[[], None]) -> Image.Image:
        # As `ganlab translate`: any mode -> RGB (alpha composited on white), output the input's size.
        x = pil_to_tensor(to_rgb(im))[None].to(tr.device)
        y = translate_tensor(_Checked(gens[direction or "a2b"], check), x, tile, 32, tr.precision)
        return tensor_to_pil(y[0].cpu())

    # Reflection padding and InstanceNorm need >= 2 pixels per side at the coarsest of the n_down levels.
    min_side = max(4, 2**tr.cfg.model.n_down + 1)
    params = _count(*gens.values())
    return ServedModel(name, "cyclegan", list(gens), 1, tr.cfg.preset, params, source, apply, min_side)


def _sr(name: str, source: str, up: Any, architecture: str, tile: int) -> ServedModel:
    """``up``: a ``ganlab.sr.upscale.Upscaler``."""
    model, pad = up.model, up.model.receptive_radius
    lr_tile = tile // 2  # LR tiles: the default 512 gives `ganlab sr upscale`'s 256

    def apply(im: Image.Image, direction: str | None, check: Callable[[], None]) -> Image.Image:
        # As `ganlab sr upscale`: grey stays grey, 16-bit stays 16-bit, alpha is upscaled and kept.
        return upscale_image(_Checked(model, check), im, up.scale, up.device, lr_tile, pad, up.precision)

    return ServedModel(name, "sr", [], up.scale, architecture, _count(model), source, apply)


def load_models(specs: list[str], warm: bool = True, **kwargs: Any) -> list[ServedModel]:
    """Every model of the command line, names unique. ``warm``: run each once on a small image, so the
    first request does not pay for the kernels' first-use setup."""
    names = [parse_spec(spec)[0] for spec in specs]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"two models are named {name!r}; name them apart with NAME=SOURCE")
    models: list[ServedModel] = []
    for spec in specs:
        m = load_model(spec, **kwargs)
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
