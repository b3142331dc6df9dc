"""Fetch and unpack a zip archive over HTTP (standard library only): resumable download, zip check, safe
extraction; or fetch one file (:func:`download_file`) with the same resume and errors.

A download goes to ``out/{name}.zip.part``; an interrupted one is resumed with an HTTP Range request
the next time. The finished zip is tested, every member name is checked (no absolute paths, no ``..``,
no symlinks) before anything is extracted, and the zip is deleted once ``out/{name}/`` is in place.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import stat
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ganlab.core.errors import GanlabError

_CHUNK = 1 << 20


class DownloadError(GanlabError, RuntimeError):
    """An archive could not be downloaded or extracted; the message says why and what to do."""


def download_archive(
    name: str,
    url: str,
    out: str | Path,
    log: Callable[[str], object] = print,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download the zip at ``url`` and extract it to ``out/{name}/``; return that folder.

    Returns at once if ``out/{name}/`` already exists and is not empty. ``timeout`` (seconds) bounds the
    connection and every read, so a stalled server fails instead of hanging. Raises DownloadError.
    """
    out = Path(out)
    target = out / name
    if target.is_dir() and any(target.iterdir()):
        log(f"{name}: already present in {target}")
        return target
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{name}.zip"
    part = out / f"{name}.zip.part"

    if zip_path.is_file():  # downloaded by an earlier run that did not get to extract it
        try:
            _check_zip(zip_path)
        except DownloadError as e:
            log(f"{e}; downloading it again")
    if not zip_path.is_file():
        _fetch(url, part, log, timeout, progress)
        part.replace(zip_path)
        _check_zip(zip_path)
    _extract(zip_path, name, target)
    zip_path.unlink()
    log(f"{name}: extracted to {target}")
    return target


def download_file(
    url: str,
    dest: str | Path,
    log: Callable[[str], object] = print,
    timeout: float = 60.0,
    progress: bool = True,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download ``url`` to the file ``dest`` (resumable through ``dest.part``, like an archive); return
    ``dest``. Returns at once if ``dest`` exists. ``check(path)`` raises DownloadError when a finished
    download is unusable: the partial file is then deleted so the next run starts afresh."""
    dest = Path(dest)
    if dest.is_file():
        log(f"{dest.name}: already present in {dest.parent}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    def usable(p: Path) -> bool:
        try:
            if check is not None:
                check(p)
            return True
        except DownloadError:
            return False

    _fetch(url, part, log, timeout, progress, usable)
    if check is not None:
        try:
            check(part)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
    part.replace(dest)
    return dest


def _fetch(
    url: str,
    part: Path,
    log: Callable[[str], object],
    timeout: float,
    progress: bool,
    is_complete: Callable[[Path], bool] = zipfile.is_zipfile,
) -> None:
    """Download url into ``part``, continuing from its current size when there is one."""
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "ganlab-downloader"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and start:
            # Nothing left to send from that offset: the .part is complete already, or it is longer
            # than the file (a different file changed on the server). A check of the file tells which.
            if is_complete(part):
                log(f"{part.name}: already complete")
                return
            log(f"{part.name}: does not match the file on the server; starting again")
            part.unlink()
            return _fetch(url, part, log, timeout, progress, is_complete)
        raise DownloadError(f"HTTP error {e.code} ({e.reason}) for {url}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _offline_error(url, e) from None
    except http.client.HTTPException as e:
        raise DownloadError(f"{url}: the server sent an invalid HTTP response ({e!r})") from None
    except ValueError as e:
        raise DownloadError(f"invalid URL {url!r} ({e}); check base_url") from None

    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        if start and status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                raise DownloadError(
                    f"{url}: the server resumed at the wrong offset "
                    f"(Content-Range {resp.headers.get('Content-Range')!r}, expected {start}); delete {part} and retry"
                )
            mode = "ab"
            log(f"resuming {url} at byte {start:,}")
        else:
            if start:
                log(f"{url}: the server ignored the resume request; downloading from the beginning")
            start, mode = 0, "wb"
        total = start + int(length) if length and length.isdigit() else None

        got = start
        try:
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.name.removesuffix(".part"),
                    disable=not progress,
                ) as bar,
            ):
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(
                f"download of {url} interrupted after {got:,} bytes ({e}); run again to resume"
            ) from None
    if total is not None and got != total:
        raise DownloadError(f"download of {url} stopped at {got:,} of {total:,} bytes; run again to resume")


def _offline_error(url: str, e: BaseException) -> DownloadError:
    reason = getattr(e, "reason", e)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        what = "timed out"
    elif isinstance(reason, socket.gaierror):
        what = f"could not resolve the host ({reason})"
    elif isinstance(reason, ConnectionRefusedError):
        what = "connection refused"
    else:
        what = str(reason)
    return DownloadError(
        f"cannot reach {url}: {what}. This machine seems to be offline (or the server is down); "
        "connect to the network, or pass base_url= a reachable mirror."
    )


def _check_zip(zip_path: Path) -> None:
    """Raise DownloadError (deleting the file, so the next run downloads it afresh) if it is not an
    intact zip."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        zip_path.unlink(missing_ok=True)
        raise DownloadError(
            f"{zip_path} is not a valid zip ({e}); deleted it, run again to re-download"
        ) from None
    if bad is not None:
        zip_path.unlink(missing_ok=True)
        raise DownloadError(
            f"{zip_path} is corrupt (bad CRC in {bad!r}); deleted it, run again to re-download"
        )


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")  # Windows-made zips may use backslashes
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' component"
    # Unix zips keep st_mode in the high 16 bits; zero (Windows, or plain zipfile) means a regular file.
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "special file"
    return None


def _extract(zip_path: Path, name: str, target: Path) -> None:
    """Validate every member, then extract to a scratch folder beside ``target`` and move it into place,
    so a failure never leaves a half-extracted dataset that looks complete."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        for info in infos:
            why = _unsafe_reason(info)
            if why:
                raise DownloadError(
                    f"{zip_path}: refusing to extract, member {info.filename!r} is unsafe ({why}); nothing extracted"
                )
        scratch = target.parent / f".{name}.extracting"
        shutil.rmtree(scratch, ignore_errors=True)  # left over from an interrupted run
        scratch.mkdir()
        try:
            zf.extractall(scratch)
            names = {
                PurePosixPath(i.filename.replace("\\", "/")).parts[0] for i in infos if i.filename.strip("/")
            }
            # The reference zips hold one top folder named after the dataset; flatten it if present.
            src = scratch / name if names == {name} and (scratch / name).is_dir() else scratch
            if target.exists():
                target.rmdir()  # only an empty leftover reaches here (a non-empty one returned early)
            src.replace(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
