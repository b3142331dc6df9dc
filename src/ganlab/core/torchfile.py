"""Read a state_dict saved with ``torch.save`` (``.pth``/``.pt``) without running code from the file.

``torch.load(..., weights_only=True)`` unpickles only tensors, plain containers and numbers; a file that
needs anything else (a pickled model object, or a crafted pickle that calls a function) is refused with
:class:`UnsafeFileError`, never unpickled in full.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import torch

from ganlab.core.errors import CheckpointError


class UnsafeFileError(CheckpointError):
    """A .pth file holds more than tensors and plain data: loading it would run code from the file."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``name -> tensor`` from a torch file (CPU tensors; a DataParallel ``module.`` prefix removed).

    Raises CheckpointError for a missing or unreadable file or one that is not a state_dict, and
    UnsafeFileError for one that would need arbitrary unpickling.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with warnings.catch_warnings():
            # A plain pickle (not torch.save's format) makes torch warn about its protocol; the
            # refusal below says what matters.
            warnings.simplefilter("ignore", UserWarning)
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))
        if refused:
            raise UnsafeFileError(
                f"{path}: refused, the file needs arbitrary unpickling (it names {refused.group(1)}): it is "
                "not a plain state_dict, and loading it could run code from the file (ganlab reads .pth "
                "files with torch.load(weights_only=True) only; save weights with torch.save(net.state_dict()))"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
        why = detail.group(1).strip() if detail else "not a torch file"
        raise CheckpointError(f"{path}: not a readable torch weights file ({why})") from None
    except Exception as e:  # noqa: BLE001 - corrupt zip, truncated file, not a torch file at all
        first = (str(e).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"{path}: not a readable torch weights file ({type(e).__name__}: {first})"
        ) from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise CheckpointError(f"{path}: expected a state_dict (tensor names -> tensors)")
    return {str(k).removeprefix("module."): v for k, v in sd.items()}
