"""The reference CycleGAN datasets (Zhu et al. 2017), downloadable by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ganlab.core.download import DownloadError, download_archive

DATASETS: tuple[str, ...] = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "facades",
    "iphone2dslr_flower",
    "ae_photos",
)
DEFAULT_BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"


def download_dataset(
    name: str,
    out: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    log: Callable[[str], object] = print,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``{base_url}/{name}.zip`` and extract it to ``out/{name}/`` (resumable; see
    ``ganlab.core.download``); return that folder. Raises DownloadError."""
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    url = f"{base_url.rstrip('/')}/{name}.zip"
    return download_archive(name, url, out, log=log, timeout=timeout, progress=progress)
