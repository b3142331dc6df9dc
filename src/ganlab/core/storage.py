"""Writing files when the disk may be full or the folder read-only: every failed write becomes one
:class:`StorageError` naming the path and the reason, so training stops with that line, not a traceback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganlab.core.errors import StorageError


def write_reason(e: BaseException) -> str:
    """Why a write failed, in words ("No space left on device", "Permission denied", ...)."""
    return getattr(e, "strerror", None) or str(e)


@contextmanager
def writing(path: str | Path, what: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a :class:`StorageError` naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(f"cannot write {what + ' ' if what else ''}{path}: {write_reason(e)}") from None


def fsync_dir(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where a directory cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
