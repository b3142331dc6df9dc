"""Named architecture presets. An unknown name is an error listing the known ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ganlab.core.errors import GanlabError
from ganlab.models.generator import GeneratorConfig


class UnknownPresetError(GanlabError, ValueError):
    """A preset name that is not registered; the message lists the known ones."""


_PRESETS: dict[str, Callable[[], GeneratorConfig]] = {}


def register_preset(name: str, factory: Callable[[], GeneratorConfig]) -> None:
    _PRESETS[name] = factory


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def preset_config(name: str, **overrides) -> GeneratorConfig:
    """The generator config of preset ``name``, with field overrides."""
    if name not in _PRESETS:
        raise UnknownPresetError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return dataclasses.replace(_PRESETS[name](), **overrides)


# "Model 1" of the documented study: deep, 200 epochs.
register_preset("model1", lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=9, upsample="pixelshuffle"))
# "Model 2", the documented final model: shallow and wide; faster per epoch, converged sooner, looked better.
register_preset("model2", lambda: GeneratorConfig(hidden=96, n_down=1, n_residual=2, upsample="pixelshuffle"))
# The reference CycleGAN layouts (Zhu et al. 2017): transposed-conv upsampling.
register_preset(
    "resnet9", lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=9, upsample="convtranspose")
)
register_preset(
    "resnet6", lambda: GeneratorConfig(hidden=64, n_down=2, n_residual=6, upsample="convtranspose")
)
