"""download_dataset against a throwaway HTTP server on 127.0.0.1 (no real network)."""

from __future__ import annotations

import io
import re
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import URLError

import pytest

from ganlab.core.download import DownloadError, _offline_error
from ganlab.cyclegan.datasets import DATASETS, download_dataset

NAME = "horse2zebra"
TIMEOUT = 5.0


def make_zip(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def reference_zip(name: str = NAME) -> tuple[bytes, dict[str, bytes]]:
    """A zip shaped like the reference ones: top folder {name}/ with the four split folders."""
    members = {
        f"{name}/{split}/{i}.jpg": bytes([i, len(split)]) * (500 + 37 * i)
        for split in ("trainA", "trainB", "testA", "testB")
        for i in range(3)
    }
    return make_zip(members), members


class Handler(BaseHTTPRequestHandler):
    """Serves server.files; honours 'Range: bytes=N-' unless server.honor_range is False; the first
    response can be cut short after server.cut_first bytes to simulate a dropped connection."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.honor_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if srv.cut_first is not None:
            body, srv.cut_first = body[: srv.cut_first], None
        self.wfile.write(body)

    def log_message(self, format, *args):  # keep pytest output clean
        pass


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """urllib honours proxy variables; make sure 127.0.0.1 is always reached directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.timeout = TIMEOUT
    srv.files, srv.requests, srv.honor_range, srv.cut_first = {}, [], True, None
    srv.base_url = f"http://127.0.0.1:{srv.server_address[1]}/datasets"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(TIMEOUT)


def quiet_download(name, out, base_url, **kw):
    logged: list[str] = []
    path = download_dataset(
        name, out, base_url=base_url, log=logged.append, timeout=TIMEOUT, progress=False, **kw
    )
    return path, logged


def assert_extracted(out, members):
    root = out / NAME
    for name, data in members.items():
        assert (out / name).read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["testA", "testB", "trainA", "trainB"]
    assert sorted(p.name for p in out.iterdir()) == [NAME]  # zip, .part and scratch folder are gone


def test_full_download_and_extraction(server, tmp_path):
    data, members = reference_zip()
    server.files[f"/datasets/{NAME}.zip"] = data
    out = tmp_path / "datasets"
    path, _ = quiet_download(NAME, out, server.base_url)
    assert path == out / NAME
    assert_extracted(out, members)
    assert server.requests == [(f"/datasets/{NAME}.zip", None)]

    # Already there: no second request.
    _, logged = quiet_download(NAME, out, server.base_url)
    assert len(server.requests) == 1 and "already present" in logged[0]


def test_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    data, members = reference_zip()
    server.files[f"/datasets/{NAME}.zip"] = data
    out = tmp_path
    n = len(data) // 3
    (out / f"{NAME}.zip.part").write_bytes(data[:n])
    quiet_download(NAME, out, server.base_url)
    assert server.requests == [(f"/datasets/{NAME}.zip", f"bytes={n}-")]
    assert_extracted(out, members)


def test_a_dropped_connection_leaves_a_part_file_that_the_next_run_resumes(server, tmp_path):
    data, members = reference_zip()
    server.files[f"/datasets/{NAME}.zip"] = data
    server.cut_first = 1000
    with pytest.raises(DownloadError, match="run again to resume"):
        quiet_download(NAME, tmp_path, server.base_url)
    assert (tmp_path / f"{NAME}.zip.part").read_bytes() == data[:1000]
    quiet_download(NAME, tmp_path, server.base_url)
    assert server.requests[-1][1] == "bytes=1000-"
    assert_extracted(tmp_path, members)


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data, members = reference_zip()
    server.files[f"/datasets/{NAME}.zip"] = data
    server.honor_range = False
    stale = b"stale bytes that must not survive"
    (tmp_path / f"{NAME}.zip.part").write_bytes(stale)
    _, logged = quiet_download(NAME, tmp_path, server.base_url)
    assert server.requests[0][1] == f"bytes={len(stale)}-"
    assert any("ignored the resume request" in line for line in logged)
    assert_extracted(tmp_path, members)


def test_complete_part_file_gets_416_and_is_used(server, tmp_path):
    data, members = reference_zip()
    server.files[f"/datasets/{NAME}.zip"] = data
    (tmp_path / f"{NAME}.zip.part").write_bytes(data)
    quiet_download(NAME, tmp_path, server.base_url)
    assert len(server.requests) == 1
    assert_extracted(tmp_path, members)


@pytest.mark.parametrize(
    "bad, why",
    [
        ("../evil.txt", "'..' component"),
        (f"{NAME}/trainA/../../../evil.txt", "'..' component"),
        ("/tmp/ganlab-abs-evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("symlink", "symbolic link"),
    ],
)
def test_unsafe_zip_members_are_rejected_and_nothing_is_written(server, tmp_path, bad, why):
    members = {f"{NAME}/trainA/ok.jpg": b"fine"}
    if bad == "symlink":
        data = make_zip(members, symlinks=(f"{NAME}/trainA/link.jpg",))
        bad = f"{NAME}/trainA/link.jpg"
    else:
        data = make_zip({**members, bad: b"pwned"})
    server.files[f"/datasets/{NAME}.zip"] = data
    out = tmp_path / "sandbox" / "datasets"
    with pytest.raises(DownloadError) as exc:
        quiet_download(NAME, out, server.base_url)
    assert repr(bad) in str(exc.value) and why in str(exc.value)
    assert not (out / NAME).exists()
    assert not any(p.name.endswith("evil.txt") for p in tmp_path.rglob("*"))
    assert not (tmp_path.parent / "evil.txt").exists()
    assert not Path("/tmp/ganlab-abs-evil.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == [f"{NAME}.zip"]  # kept for inspection, nothing else


def test_corrupt_zip_is_reported_and_deleted(server, tmp_path):
    server.files[f"/datasets/{NAME}.zip"] = b"this is not a zip file " * 50
    with pytest.raises(DownloadError, match="not a valid zip"):
        quiet_download(NAME, tmp_path, server.base_url)
    assert list(tmp_path.iterdir()) == []


def test_http_error_names_status_and_url(server, tmp_path):
    with pytest.raises(DownloadError) as exc:
        quiet_download("maps", tmp_path, server.base_url)
    assert "404" in str(exc.value) and f"{server.base_url}/maps.zip" in str(exc.value)


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(DownloadError) as exc:
        quiet_download("cats2dogs", tmp_path, "http://127.0.0.1:9")
    msg = str(exc.value)
    assert "cats2dogs" in msg and all(name in msg for name in DATASETS)
    assert list(tmp_path.iterdir()) == []


def test_closed_port_reads_as_offline(tmp_path):
    with socket.socket() as s:  # grab a free port, then close it so nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/datasets"
    with pytest.raises(DownloadError) as exc:
        quiet_download(NAME, tmp_path, url)
    msg = str(exc.value)
    assert "offline" in msg and f"{url}/{NAME}.zip" in msg and "refused" in msg


def test_silent_server_times_out_instead_of_hanging(tmp_path):
    with socket.socket() as s:  # listens (the kernel completes the handshake) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/datasets"
        with pytest.raises(DownloadError, match="timed out"):
            download_dataset(NAME, tmp_path, base_url=url, log=lambda m: None, timeout=0.5, progress=False)


def test_dns_failure_reads_as_offline():
    # Built directly: resolving a real name would leave the machine.
    err = _offline_error(
        "http://example.invalid/x.zip", URLError(socket.gaierror(-2, "Name or service not known"))
    )
    assert "resolve" in str(err) and "offline" in str(err) and "http://example.invalid/x.zip" in str(err)
