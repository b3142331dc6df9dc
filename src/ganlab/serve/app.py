"""The HTTP app of ``ganlab serve``: JSON API, Prometheus metrics and the web page, over models loaded once.

Inference runs in a thread pool as wide as ``--max-concurrency``, never on the event loop, so health
checks, metrics and refusals answer at once while images are being processed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ganlab.core.images import ImageReadError, ImageTooLargeError, decode_image
from ganlab.core.version import VERSION
from ganlab.serve.limits import (
    ApiError,
    Disconnected,
    Limits,
    Slots,
    choose_format,
    encode,
    image_from_body,
    read_body,
    wait_gone,
)
from ganlab.serve.metrics import Metrics, resident_bytes
from ganlab.serve.models import TASK_NAMES, ServedModel, cancel_check

log = logging.getLogger("ganlab.serve")
CLIENT_CLOSED = 499  # nginx's code for "the client closed the connection"; only the metrics see it


class Server:
    """What the routes share: the models, the limits, admission slots and the worker pool."""

    def __init__(self, models: list[ServedModel], limits: Limits, token: str | None) -> None:
        self.models = {m.name: m for m in models}
        self.limits = limits
        self.token = token
        self.metrics = Metrics()
        self.slots: Slots | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.ready = False

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        self.slots = Slots(self.limits.max_concurrency, self.limits.max_queue)
        self.pool = ThreadPoolExecutor(self.limits.max_concurrency, thread_name_prefix="ganlab-infer")
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            self.pool.shutdown(wait=True, cancel_futures=True)

    def check_token(self, request: Request) -> None:
        """With --token-file: ``Authorization: Bearer <token>``, compared in constant time."""
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong token: send 'Authorization: Bearer <token>' (the server's --token-file)",
                {"WWW-Authenticate": 'Bearer realm="ganlab"'},
            )

    def known(self) -> str:
        return ", ".join(f"{n} ({m.task})" for n, m in self.models.items()) or "none"

    def pick(self, name: str | None, task: str) -> ServedModel:
        """The model asked for, checked to do ``task``; with one model of the task, ``name`` may be omitted."""
        if name is None:
            fits = [m for m in self.models.values() if m.task == task]
            if len(fits) == 1:
                return fits[0]
            what = "no" if not fits else "more than one"
            raise ApiError(
                404 if not fits else 422,
                "unknown_model",
                f"{what} {TASK_NAMES[task]} model is served; pass model=NAME (models: {self.known()})",
            )
        model = self.models.get(name)
        if model is None:
            raise ApiError(404, "unknown_model", f"unknown model {name!r}; known models: {self.known()}")
        if model.task != task:
            route = {"cyclegan": "/v1/translate", "sr": "/v1/upscale"}[model.task]
            raise ApiError(
                422, "wrong_task", f"model {name!r} is a {TASK_NAMES[model.task]} model: use POST {route}"
            )
        return model

    async def run_image(
        self, request: Request, model: ServedModel, direction: str | None, fmt: str
    ) -> Response:
        """Admit, read the body (bounded), wait for a run slot, run in the pool, answer the image."""
        slots, pool = self.slots, self.pool
        assert slots is not None and pool is not None, "the app's lifespan has not started"
        slots.admit()
        try:
            try:
                body = await read_body(request.headers, request.stream(), self.limits.max_bytes)
            except ClientDisconnect:
                raise Disconnected from None
            data = await image_from_body(request.headers, body)
            del body
            await slots.start(request.is_disconnected)
        except BaseException:
            slots.leave()
            raise
        # From here the slot is freed when the worker returns, whatever becomes of this request.
        cancel = threading.Event()
        t0 = time.perf_counter()
        fut = asyncio.get_running_loop().run_in_executor(
            pool, _work, model, data, direction, fmt, self.limits.max_pixels, cancel
        )
        fut.add_done_callback(
            lambda f: slots.finish(None if f.cancelled() or f.exception() else time.perf_counter() - t0)
        )
        del data
        content, size, seconds = await _result_or_gone(fut, request.is_disconnected, cancel)
        media = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[fmt]
        headers = {
            "X-Inference-Seconds": f"{seconds:.3f}",
            "X-Image-Size": f"{size[0]}x{size[1]}",
            "Cache-Control": "no-store",
        }
        return Response(content, media_type=media, headers=headers)

    def gauges(self) -> dict[str, tuple[str, Callable[[], Any]]]:
        s = self.slots
        return {
            "ganlab_queue_depth": ("Requests admitted and waiting for a run slot", lambda: s and s.waiting),
            "ganlab_running": ("Requests running inference now", lambda: s and s.running),
            "ganlab_max_concurrency": ("--max-concurrency", lambda: self.limits.max_concurrency),
            "ganlab_max_queue": ("--max-queue", lambda: self.limits.max_queue),
            "ganlab_models_loaded": ("Models loaded", lambda: len(self.models)),
            "ganlab_ready": ("1 when serving", lambda: int(self.ready)),
            "process_resident_memory_bytes": ("Resident memory size in bytes", resident_bytes),
            "process_start_time_seconds": (
                "Start time of the server, seconds since the epoch",
                lambda: int(self.metrics.started),
            ),
        }


def _work(
    model: ServedModel, data: bytes, direction: str | None, fmt: str, max_pixels: int, cancel: threading.Event
) -> tuple[bytes, tuple[int, int], float]:
    """In a worker thread: decode (the pixel limit checked on the header first), apply, encode."""
    t0 = time.perf_counter()
    limit = max_pixels // model.scale**2
    try:
        im = decode_image(data, "image", limit)
    except ImageTooLargeError as e:
        note = (
            f" (x{model.scale} upscaled it must stay within {max_pixels:,} pixels)" if model.scale > 1 else ""
        )
        raise ApiError(413, "too_many_pixels", f"{e}{note}") from None
    except ImageReadError as e:
        raise ApiError(400, "bad_image", str(e)) from None
    if min(im.size) < model.min_side:
        small = f"image: {im.width}x{im.height} is too small for {model.name} (sides of {model.min_side}+ px)"
        raise ApiError(400, "bad_image", small)
    out = model.apply(im, direction, cancel_check(cancel))
    return encode(out, fmt), out.size, time.perf_counter() - t0


async def _result_or_gone(
    fut: asyncio.Future, gone: Callable[[], Awaitable[bool]], cancel: threading.Event
) -> Any:
    """The worker's result, or :class:`Disconnected` (and a cancel flag for the worker) if the client
    leaves first."""
    watch = asyncio.ensure_future(wait_gone(gone))
    try:
        await asyncio.wait({fut, watch}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        cancel.set()
        raise
    finally:
        watch.cancel()
    if not fut.done():
        cancel.set()  # the worker stops before its next tile
        raise Disconnected
    return fut.result()


class _MetricsMiddleware:
    """Pure ASGI (a BaseHTTPMiddleware would hide client disconnects from the routes)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["path"], status[0], time.perf_counter() - t0)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        metrics.reject(e.code)
        return _error(e.status, e.code, e.message, e.headers)

    @app.exception_handler(Disconnected)
    async def gone(request: Request, e: Disconnected) -> Response:
        metrics.reject("disconnected")
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {
            404: f"no such endpoint: {request.url.path} (see GET /v1/models; the page is at /)",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(e.status_code, str(e.detail))
        return _error(
            e.status_code, codes.get(e.status_code, "http_error"), message, getattr(e, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg')}" for err in e.errors()]
        metrics.reject("invalid_request")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("error while answering %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(e).__name__}: {e}); see the server log")


def create_app(models: list[ServedModel], limits: Limits | None = None, token: str | None = None) -> FastAPI:
    """The app over already loaded ``models`` (run it with uvicorn; tests use it with TestClient)."""
    limits = limits or Limits()
    limits.validate()
    srv = Server(models, limits, token)
    app = FastAPI(title="ganlab serve", version=VERSION, lifespan=srv.lifespan, docs_url=None, redoc_url=None)
    app.state.server = srv
    _install_error_handlers(app, srv.metrics)
    app.add_middleware(_MetricsMiddleware, metrics=srv.metrics)
    auth = [Depends(srv.check_token)]
    page = resources.files("ganlab.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        if not srv.ready:
            raise ApiError(503, "not_ready", "the server is starting or stopping", {"Retry-After": "1"})
        return {"status": "ready", "models": list(srv.models)}

    @app.get("/v1/models", dependencies=auth)
    async def list_models() -> dict[str, Any]:
        lim = srv.limits
        return {
            "models": [m.describe() for m in srv.models.values()],
            "limits": {
                k: getattr(lim, k) for k in ("max_bytes", "max_pixels", "max_concurrency", "max_queue")
            },
        }

    @app.post("/v1/translate", dependencies=auth)
    async def translate(
        request: Request,
        model: str | None = None,
        direction: str = "a2b",
        fmt: str | None = Query(None, alias="format"),
    ) -> Response:
        m = srv.pick(model, "cyclegan")
        if direction not in m.directions:
            raise ApiError(
                422, "unknown_direction", f"direction {direction!r}: use one of {', '.join(m.directions)}"
            )
        return await srv.run_image(request, m, direction, choose_format(fmt, request.headers.get("accept")))

    @app.post("/v1/upscale", dependencies=auth)
    async def upscale(
        request: Request, model: str | None = None, fmt: str | None = Query(None, alias="format")
    ) -> Response:
        m = srv.pick(model, "sr")
        return await srv.run_image(request, m, None, choose_format(fmt, request.headers.get("accept")))

    @app.get("/metrics", dependencies=auth)
    async def metrics() -> PlainTextResponse:
        text = srv.metrics.render(srv.gauges())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
