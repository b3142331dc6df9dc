"""ganlab: GAN experiments on images (CycleGAN-style translation, SRGAN super-resolution).

``ganlab.load(...)`` and ``ganlab.load_sr(...)`` (see :mod:`ganlab.api`) give a model ready to translate
or upscale; importing ``ganlab`` itself stays light (torch is imported when a model is loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganlab.core.version import VERSION as __version__

if TYPE_CHECKING:
    from ganlab.cyclegan.translate import Translator
    from ganlab.sr.upscale import Upscaler

__all__ = ["__version__", "load", "load_sr"]


def load(source: Any, **kwargs: Any) -> Translator:
    """A CycleGAN model from a run directory, a reference ``.pth`` file or ``pretrained:NAME``;
    see :func:`ganlab.api.load`."""
    from ganlab.api import load as _load

    return _load(source, **kwargs)


def load_sr(run_dir: Any, **kwargs: Any) -> Upscaler:
    """A super-resolution run's generator with ``.upscale(image)``; see :func:`ganlab.api.load_sr`."""
    from ganlab.api import load_sr as _load_sr

    return _load_sr(run_dir, **kwargs)
