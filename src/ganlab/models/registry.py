"""One registry of named architecture presets for every task. An unknown name is an error listing the
known ones.

A preset names a generator layout: a ``GeneratorConfig`` (CycleGAN) or an ``SRResNetConfig``
(super-resolution). The task of a preset decides which config tree it fills.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ganlab.core.errors import ConfigError
from ganlab.models.generator import GeneratorConfig
from ganlab.models.sr import SRResNetConfig

Task = Literal["cyclegan", "sr"]
TASKS: tuple[str, ...] = ("cyclegan", "sr")


class UnknownPresetError(ConfigError):
    """A preset name that is not registered (for the task asked); the message lists the known ones."""


@dataclass(frozen=True)
class Preset:
    name: str
    task: Task
    factory: Callable[[], Any]
    summary: str


_PRESETS: dict[str, Preset] = {}


def register_preset(
    name: str, factory: Callable[[], Any], task: Task = "cyclegan", summary: str = ""
) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    _PRESETS[name] = Preset(name, task, factory, summary)


def preset_names(task: Task | None = "cyclegan") -> list[str]:
    """Registered names of ``task`` (None: every task), sorted."""
    return sorted(n for n, p in _PRESETS.items() if task is None or p.task == task)


def get_preset(name: str, task: Task | None = None) -> Preset:
    """The preset ``name`` (of ``task``, when given); unknown names list the known ones."""
    p = _PRESETS.get(name)
    if p is None or (task is not None and p.task != task):
        what = "SR preset" if task == "sr" else "preset"
        known = preset_names(task)
        hint = f" ({name!r} is {'an SR' if p.task == 'sr' else 'a CycleGAN'} preset)" if p is not None else ""
        raise UnknownPresetError(f"unknown {what} {name!r}{hint}; known {what}s: {', '.join(known)}")
    return p


def preset_config(name: str, task: Task | None = "cyclegan", **overrides: Any) -> Any:
    """The generator config of preset ``name``, with field overrides."""
    return dataclasses.replace(get_preset(name, task).factory(), **overrides)


register_preset(
    "model1",
    lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=9, upsample="pixelshuffle"),
    summary='"model 1" of the documented study: deep, trained 200 epochs',
)
register_preset(
    "model2",
    lambda: GeneratorConfig(hidden=96, n_down=1, n_residual=2, upsample="pixelshuffle"),
    summary='"model 2", the documented final model: shallow and wide, faster per epoch',
)
register_preset(
    "resnet9",
    lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=9, upsample="convtranspose"),
    summary="the reference CycleGAN layout (Zhu et al. 2017), transposed-conv upsampling",
)
register_preset(
    "resnet6",
    lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=6, upsample="convtranspose"),
    summary="the reference CycleGAN's 6-block layout",
)
register_preset(
    "srresnet",
    lambda: SRResNetConfig(hidden=64, n_residual=16, norm="batch", icnr=True),
    task="sr",
    summary="the SRResNet of Ledig et al. 2017: 16 blocks, width 64, batch norm",
)
# No batch norm (EDSR, Lim et al. 2017: in SR it costs time and quality) and a bicubic skip, which starts
# training at the bicubic baseline.
register_preset(
    "srresnet-small",
    lambda: SRResNetConfig(hidden=32, n_residual=6, norm="none", icnr=True, skip="bicubic"),
    task="sr",
    summary="CPU-sized SRResNet: 6 blocks, width 32, no norm, bicubic skip",
)
