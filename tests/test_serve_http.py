"""`ganlab serve` on a real uvicorn socket: a body over --max-bytes is refused before it is sent whole, and
a client that disconnects, queued or running, frees its slot."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import pytest

pytest.importorskip("fastapi", reason="ganlab serve needs the serve extra (fastapi)")
pytest.importorskip("uvicorn", reason="ganlab serve needs the serve extra (uvicorn)")

from ganlab.serve.app import create_app  # noqa: E402
from ganlab.serve.limits import Limits  # noqa: E402
from ganlab.serve.models import load_models  # noqa: E402

from .serve_util import make_sr_run, png_bytes, running_server  # noqa: E402
from .test_serve import slow_model, wait_for  # noqa: E402


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return s


def post_head(path: str, headers: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


def status_of(s: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "connection closed without an answer"
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_body_over_max_bytes_is_refused_before_it_is_sent(tmp_path) -> None:
    app = create_app(load_models([str(make_sr_run(tmp_path / "sr"))]), Limits(max_bytes=1000))
    with running_server(app) as url:
        with connect(url) as s:  # declares 10 MB, sends 100 bytes, then waits for the answer
            s.sendall(post_head("/v1/upscale", "Content-Length: 10000000\r\n") + bytes(100))
            assert status_of(s) == 413
        with connect(url) as s:  # chunked, no length: refused once the count passes the limit
            s.sendall(post_head("/v1/upscale", "Transfer-Encoding: chunked\r\n"))
            for _ in range(3):
                s.sendall(b"200\r\n" + bytes(512) + b"\r\n")
            assert status_of(s) == 413  # the terminating chunk was never sent


def test_a_client_that_disconnects_frees_its_slot() -> None:
    release = threading.Event()
    app = create_app([slow_model(release)], Limits(max_concurrency=1, max_queue=1))
    slots = lambda: app.state.server.slots  # noqa: E731
    body = png_bytes(8, 8)
    request = post_head("/v1/translate", f"Content-Length: {len(body)}\r\n") + body
    with running_server(app) as url:
        running, queued = connect(url), connect(url)
        running.sendall(request)
        wait_for(lambda: slots().running == 1)
        queued.sendall(request)
        wait_for(lambda: slots().waiting == 1)
        queued.close()  # leaves the queue at once
        wait_for(lambda: slots().waiting == 0)
        running.close()  # the model stops at its next check
        wait_for(lambda: slots().running == 0)
        with connect(url) as s:  # the freed slot takes the next request
            s.sendall(request)
            wait_for(lambda: slots().running == 1)
            release.set()
            assert status_of(s) == 200
    assert app.state.server.metrics.rejections["disconnected"] == 2
