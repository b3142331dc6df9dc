"""What the server refuses, and how: limits, the JSON error, admission (running + waiting slots), the
bounded body reader, and the output format.

Every refusal is an :class:`ApiError`, answered as ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ganlab.core.errors import UserError
from ganlab.core.images import to_rgb


@dataclass(frozen=True)
class Limits:
    """The server's bounds. ``max_pixels`` bounds every image held: the decoded upload and, for SR,
    the upscaled result (so an x4 model takes uploads of up to max_pixels / 16)."""

    max_concurrency: int = 1
    max_queue: int = 8
    max_pixels: int = 4096 * 4096
    max_bytes: int = 20 * 2**20

    def validate(self) -> None:
        if self.max_concurrency < 1 or self.max_queue < 0:
            raise UserError("--max-concurrency must be >= 1 and --max-queue >= 0")
        if self.max_pixels < 1 or self.max_bytes < 1:
            raise UserError("--max-pixels and --max-bytes must be >= 1")


class ApiError(Exception):
    """An answer other than 200: HTTP status, a stable machine-readable code and a readable message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class Disconnected(Exception):
    """The client closed the connection before its answer was ready."""


def parse_size(text: str) -> int:
    """``20000000``, ``20MB``, ``20M``, ``512k``, ``1GiB`` -> bytes (K/M/G are powers of 1024)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 2**10, "m": 2**20, "g": 2**30}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if mult > 1 else t)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"not a size: {text!r} (examples: 20000000, 20MB, 512k)")
    return int(value * mult)


class Slots:
    """Admission: up to ``concurrency`` requests run, up to ``queue`` more wait; the next one gets 503.

    A request is admitted (waiting) before its body is read, so memory held by bodies is bounded too.
    Create it inside the event loop that uses it (its semaphore binds to that loop).
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency, self.queue = concurrency, queue
        self.running = 0
        self.waiting = 0
        self.mean_seconds = 1.0  # moving average of a run, for Retry-After
        self._sem = asyncio.Semaphore(concurrency)

    def admit(self) -> None:
        if self.running + self.waiting >= self.concurrency + self.queue:
            wait = self.mean_seconds * (self.running + self.waiting + 1) / self.concurrency
            retry = min(60, max(1, math.ceil(wait)))
            raise ApiError(
                503,
                "busy",
                f"the server is busy ({self.running} running, {self.waiting} waiting; limits "
                f"{self.concurrency} and {self.queue}); retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        self.waiting += 1

    async def start(self, gone: Callable[[], Awaitable[bool]]) -> None:
        """Wait for a run slot (waiting -> running); a client that goes away meanwhile leaves the queue
        (:class:`Disconnected`) and the caller calls :meth:`leave`."""
        acquire = asyncio.ensure_future(self._sem.acquire())
        watch = asyncio.ensure_future(wait_gone(gone))
        try:
            await asyncio.wait({acquire, watch}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this request was cancelled itself: hold no slot
            watch.cancel()
            acquire.cancel()
            if acquire.done() and not acquire.cancelled():
                self._sem.release()
            raise
        watch.cancel()
        if not acquire.done():
            acquire.cancel()
            try:
                await acquire  # acquired after all, in the same instant the client left
                self._sem.release()
            except asyncio.CancelledError:
                pass
            raise Disconnected
        self.waiting -= 1
        self.running += 1

    def leave(self) -> None:
        """A waiting request is done (answered without running, or gone)."""
        self.waiting -= 1

    def finish(self, seconds: float | None = None) -> None:
        """A running request is done; ``seconds``: how long it ran (feeds Retry-After)."""
        self.running -= 1
        self._sem.release()
        if seconds is not None:
            self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds


async def wait_gone(gone: Callable[[], Awaitable[bool]], every: float = 0.1) -> None:
    """Returns once ``gone()`` says the client has disconnected (polled every ``every`` seconds)."""
    while not await gone():
        await asyncio.sleep(every)


async def read_body(
    headers: Any, stream: AsyncIterator[bytes], max_bytes: int, on_chunk: Callable[[], None] | None = None
) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``: by its
    Content-Length before reading anything, else by counting the bytes as they stream in."""
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", f"Content-Length is not a number: {declared!r}")
        if int(declared) > max_bytes:
            raise _too_large(f"{int(declared):,} bytes")
    chunks, total = [], 0
    async for chunk in stream:
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(f"more than {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is {what}; the limit is --max-bytes (see /v1/models)")


async def image_from_body(headers: Any, body: bytes) -> bytes:
    """The image bytes: the multipart field ``image``, or the raw body."""
    ctype = headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        if not body:
            raise ApiError(
                400, "bad_image", "empty body: send an image (raw bytes or multipart field 'image')"
            )
        return body
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(headers, once(), max_files=4, max_fields=16).parse()
    except MultiPartException as e:
        raise ApiError(400, "bad_request", f"malformed multipart body: {e.message}") from None
    try:
        part = form.get("image")
        if part is None or isinstance(part, str):
            fields = ", ".join(sorted(form.keys())) or "none"
            raise ApiError(400, "bad_request", f"multipart body has no file field 'image' (fields: {fields})")
        data = await part.read()
    finally:
        await form.close()
    if not data:
        raise ApiError(400, "bad_image", "the 'image' field is empty (0 bytes)")
    return data


FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_ALIASES = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}


def choose_format(fmt: str | None, accept: str | None) -> str:
    """``format=`` if given (png, jpg/jpeg, webp), else the Accept header's preferred image type, else PNG."""
    if fmt is not None:
        if fmt.lower() not in _ALIASES:
            raise ApiError(422, "unsupported_format", f"format={fmt!r}: use one of png, jpeg, webp")
        return _ALIASES[fmt.lower()]
    best, best_q = "png", 0.0
    for item in (accept or "").split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        kind = next((k for k, (_, m) in FORMATS.items() if m == mime.lower()), None)
        if kind and q > best_q:
            best, best_q = kind, q
    return best


def encode(im: Image.Image, fmt: str) -> bytes:
    """PNG keeps every mode (alpha, 16-bit grey); JPEG composites alpha on white; WebP keeps alpha."""
    import io

    buf = io.BytesIO()
    if fmt == "jpeg":
        to_rgb(im).save(buf, format="JPEG", quality=92)
    elif fmt == "webp":
        has_alpha = im.mode in ("RGBA", "LA")
        (im.convert("RGBA") if has_alpha else to_rgb(im)).save(buf, format="WEBP", quality=90)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()
