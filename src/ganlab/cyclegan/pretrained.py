"""The reference CycleGAN's published generators (pytorch-CycleGAN-and-pix2pix), downloadable by name.

Each name is one generator file, ``{base_url}/{name}.pth``, translating in the direction its name says
(horse2zebra: horse -> zebra; style_monet: photo -> Monet). It is cached under the ganlab cache
(``$GANLAB_CACHE``, else ``$XDG_CACHE_HOME/ganlab``, else ``~/.cache/ganlab``) in ``pretrained/``, so a
name is downloaded once; downloads resume like ``ganlab data download``. A published file is one
generator: as a model it translates a2b only (b2a is an error naming this); the opposite direction,
where one is published, is another name (zebra2horse), which ``ganlab import`` can pair with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ganlab.core.download import DownloadError, download_file
from ganlab.core.errors import CheckpointError
from ganlab.core.torchfile import read_state_dict
from ganlab.cyclegan.reference import import_reference
from ganlab.models.reference import generator_config

PRETRAINED: tuple[str, ...] = (
    "apple2orange",
    "orange2apple",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
    "horse2zebra",
    "zebra2horse",
    "monet2photo",
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "sat2map",
    "map2sat",
    "cityscapes_photo2label",
    "cityscapes_label2photo",
    "facades_photo2label",
    "facades_label2photo",
    "iphone2dslr_flower",
)
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
PREFIX = "pretrained:"


def cache_dir() -> Path:
    """ganlab's cache folder: $GANLAB_CACHE, else $XDG_CACHE_HOME/ganlab, else ~/.cache/ganlab."""
    if os.environ.get("GANLAB_CACHE"):
        return Path(os.environ["GANLAB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ganlab"


def cached_path(name: str) -> Path:
    """Where the generator ``name`` is (or will be) cached."""
    return cache_dir() / "pretrained" / f"{check_name(name)}.pth"


def check_name(name: str) -> str:
    if name not in PRETRAINED:
        raise DownloadError(f"unknown pretrained model {name!r}; known: {', '.join(PRETRAINED)}")
    return name


def _check_generator(path: Path) -> None:
    """A finished download must be a reference generator (an HTML error page is not)."""
    try:
        generator_config(read_state_dict(path))
    except CheckpointError as e:
        raise DownloadError(f"the downloaded file is not a usable generator ({e}); deleted it") from None


def fetch_pretrained(
    name: str,
    base_url: str = DEFAULT_BASE_URL,
    log: Callable[[str], object] = print,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """The cached ``.pth`` of ``name``, downloaded from ``{base_url}/{name}.pth`` if not cached yet."""
    dest = cached_path(name)
    if dest.is_file():
        return dest
    url = f"{base_url.rstrip('/')}/{name}.pth"
    log(f"downloading {name} from {url}")
    return download_file(url, dest, log=log, timeout=timeout, progress=progress, check=_check_generator)


def get_pretrained(
    name: str,
    out: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    log: Callable[[str], object] = print,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download (or take from the cache) the generator ``name`` and import it as a run in ``out``."""
    path = fetch_pretrained(name, base_url, log, timeout, progress)
    import_reference(path, out, log=log)
    return Path(out)
