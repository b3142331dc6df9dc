"""The Python API: a trained or published model in one call, then ``translate`` / ``upscale``.

>>> import ganlab
>>> m = ganlab.load("runs/model2")              # or "horse2zebra.pth", or "pretrained:horse2zebra"
>>> zebra = m.translate(Image.open("horse.jpg"))  # PIL in, PIL out; a numpy array gives an array
>>> m.translate_folder("photos/", "out/", direction="b2a")
>>> ganlab.load_sr("runs/sr").upscale(Image.open("small.png"))

``ganlab translate`` runs through :func:`load` too, so the CLI and the API are one code path. The task
modules (and torch) are imported when a model is loaded, not when ``ganlab`` is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ganlab.cyclegan.translate import Translator
    from ganlab.sr.upscale import Upscaler

PRETRAINED_PREFIX = "pretrained:"
REFERENCE_SUFFIXES = (".pth", ".pt")


def load(
    source: str | Path,
    *,
    checkpoint: str | int = "latest",
    device: str = "auto",
    precision: str = "auto",
    use_ema: bool = True,
    b2a: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
) -> Translator:
    """A CycleGAN model from ``source``:

    - a ganlab run directory (``checkpoint``: latest or an epoch; ``use_ema``: the moving average when
      the run kept one);
    - a reference CycleGAN generator file (``.pth``, pytorch-CycleGAN-and-pix2pix; ``b2a``: a second
      file for the other direction) or a reference checkpoints folder (``latest_net_G_A.pth``, ...);
    - ``pretrained:NAME``, a published reference generator, downloaded once into the cache
      (``base_url``: a mirror).

    A single generator translates a2b only. ``precision`` auto: bf16 where the hardware has it.
    """
    from ganlab.core.device import select_device
    from ganlab.core.errors import CheckpointError
    from ganlab.core.rundir import RunDir
    from ganlab.cyclegan import translate as T

    dev = select_device(device)
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        from ganlab.cyclegan.pretrained import DEFAULT_BASE_URL, fetch_pretrained

        name = text[len(PRETRAINED_PREFIX) :]
        path = fetch_pretrained(name, base_url or DEFAULT_BASE_URL, progress=progress)
        return T.load_reference_translator(path, dev, precision)
    path = Path(source)
    if path.is_dir() and (RunDir(path).checkpoints.is_dir() or not any(path.glob("*_net_*.pth"))):
        return T.load_translator(path, checkpoint, dev, use_ema, precision)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in REFERENCE_SUFFIXES):
        return T.load_reference_translator(path, dev, precision, b2a)
    expected = "a run directory, a reference .pth file or folder, or pretrained:NAME"
    if not path.exists():
        raise CheckpointError(f"not found: {path} (expected {expected})")
    raise CheckpointError(f"cannot load {path}: expected {expected}")


def load_sr(
    run_dir: str | Path, *, checkpoint: str | int = "latest", device: str = "auto", precision: str = "auto"
) -> Upscaler:
    """A super-resolution run's generator: ``.upscale(image)`` (PIL or numpy, same type back)."""
    from ganlab.sr.upscale import load_upscaler

    return load_upscaler(run_dir, checkpoint, device, precision)
