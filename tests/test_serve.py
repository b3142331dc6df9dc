"""`ganlab serve` through FastAPI's TestClient: models, images, formats, limits, errors, auth, metrics."""

from __future__ import annotations

import io
import re
import resource
import struct
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="ganlab serve needs the serve extra (fastapi)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
with warnings.catch_warnings():  # newer Starlette suggests httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

import ganlab  # noqa: E402
from ganlab.cli import main  # noqa: E402
from ganlab.serve.app import create_app  # noqa: E402
from ganlab.serve.limits import Limits, choose_format, parse_size  # noqa: E402
from ganlab.serve.models import ServedModel, load_models, parse_spec  # noqa: E402
from ganlab.serve.run import bind_warning  # noqa: E402

from .serve_util import make_cyclegan_run, make_sr_run, png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve_runs")
    return {"cg": make_cyclegan_run(root / "cg"), "sr": make_sr_run(root / "sr", scale=2)}


@pytest.fixture(scope="module")
def models(runs: dict[str, Path]) -> list[ServedModel]:
    return load_models([str(runs["cg"]), f"up={runs['sr']}"])


def client(models: list[ServedModel], **kw) -> TestClient:
    return TestClient(create_app(models, Limits(**kw.pop("limits", {})), **kw))


def err(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


def image(resp) -> Image.Image:
    im = Image.open(io.BytesIO(resp.content))
    im.load()
    return im


def test_health_ready_models_and_page(models) -> None:
    with client(models) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready", "models": ["cg", "up"]}
        listed = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
        page = c.get("/")
    assert listed["cg"] | {"parameters": 0} == {
        "name": "cg",
        "task": "cyclegan",
        "directions": ["a2b", "b2a"],
        "scale": 1,
        "architecture": "model2",
        "parameters": 0,
    }
    assert listed["up"]["task"] == "sr" and listed["up"]["scale"] == 2 and listed["up"]["directions"] == []
    assert all(m["parameters"] > 0 for m in listed.values())
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Self-contained: nothing fetched from another origin.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text) and "@import" not in page.text


def test_translate_matches_ganlab_translate(models, runs, tmp_path) -> None:
    raw = png_bytes(45, 37)
    (tmp_path / "in.png").write_bytes(raw)
    with client(models) as c:
        a2b = c.post(
            "/v1/translate?model=cg&direction=a2b", content=raw, headers={"content-type": "image/png"}
        )
        multi = c.post("/v1/translate?model=cg", files={"image": ("x.png", raw, "image/png")})
        b2a = c.post("/v1/translate?direction=b2a", content=raw)  # the only CycleGAN model: no model=
    assert a2b.status_code == 200 and a2b.headers["content-type"] == "image/png"
    assert a2b.headers["x-image-size"] == "45x37" and float(a2b.headers["x-inference-seconds"]) >= 0
    out = tmp_path / "out"
    assert (
        main(["translate", str(tmp_path / "in.png"), "--run", str(runs["cg"]), "--out", str(out), "--quiet"])
        == 0
    )
    got = np.asarray(image(a2b))
    assert got.shape == (37, 45, 3) and np.array_equal(got, np.asarray(Image.open(out / "in.png")))
    assert np.array_equal(np.asarray(image(multi)), got)
    assert not np.array_equal(np.asarray(image(b2a)), got)


def test_reference_weights_serve_their_one_direction(tmp_path) -> None:
    from .reference_nets import RefGenerator, randomized, save_state_dict

    save_state_dict(randomized(RefGenerator(8, 6), 11).state_dict(), tmp_path / "horse2zebra.pth")
    (ref,) = load_models([str(tmp_path / "horse2zebra.pth")])
    expected = ganlab.load(tmp_path / "horse2zebra.pth").translate(Image.open(io.BytesIO(png_bytes(22, 31))))
    with client([ref]) as c:
        listed = c.get("/v1/models").json()["models"]
        a2b = c.post("/v1/translate", content=png_bytes(22, 31))
        b2a = c.post("/v1/translate?direction=b2a", content=png_bytes(22, 31))
    assert [(m["name"], m["directions"], m["architecture"]) for m in listed] == [
        ("horse2zebra", ["a2b"], "resnet6")
    ]
    assert np.array_equal(np.asarray(image(a2b)), np.asarray(expected))
    assert b2a.status_code == 422 and err(b2a)["message"].endswith("use one of a2b")


def test_upscale_keeps_alpha_and_grey_like_sr_upscale(models, runs, tmp_path) -> None:
    from ganlab.sr.upscale import upscale_files

    rgba, grey = png_bytes(20, 14, "RGBA"), png_bytes(9, 11, "L")
    (tmp_path / "a.png").write_bytes(rgba)
    with client(models) as c:
        r = c.post("/v1/upscale?model=up", content=rgba)
        g = c.post("/v1/upscale", content=grey)
    assert r.status_code == 200 and image(r).mode == "RGBA" and image(r).size == (40, 28)
    ref = upscale_files(runs["sr"], [tmp_path / "a.png"], tmp_path / "out", progress=False).written[0]
    assert np.array_equal(np.asarray(image(r)), np.asarray(Image.open(ref)))
    assert image(g).mode == "L" and image(g).size == (18, 22)


def test_output_formats(models) -> None:
    raw = png_bytes(24, 24, "RGBA")
    with client(models) as c:
        jpeg = c.post("/v1/upscale?format=jpg", content=raw)
        webp = c.post("/v1/upscale", content=raw, headers={"accept": "image/webp"})
        pref = c.post("/v1/upscale", content=raw, headers={"accept": "image/webp;q=0.5, image/jpeg"})
        bad = c.post("/v1/upscale?format=gif", content=raw)
    assert jpeg.headers["content-type"] == "image/jpeg" and image(jpeg).format == "JPEG"
    assert image(jpeg).mode == "RGB" and image(jpeg).size == (48, 48)
    assert webp.headers["content-type"] == "image/webp" and image(webp).mode == "RGBA"
    assert pref.headers["content-type"] == "image/jpeg"
    assert (
        bad.status_code == 422 and err(bad)["code"] == "unsupported_format" and "webp" in err(bad)["message"]
    )
    assert choose_format(None, "*/*") == "png" and choose_format(None, None) == "png"


def test_body_over_max_bytes_is_413(models) -> None:
    raw = png_bytes(40, 40)
    with client(models, limits={"max_bytes": len(raw) - 1}) as c:
        declared = c.post("/v1/translate", content=raw)
        chunked = c.post("/v1/translate", content=iter([raw[:100], raw[100:]]))  # no Content-Length
        fits = c.post("/v1/translate", content=png_bytes(8, 8))
    for r in (declared, chunked):
        assert r.status_code == 413 and err(r)["code"] == "body_too_large"
    assert "Content-Length" not in chunked.request.headers and fits.status_code == 200


def declared_png(w: int, h: int) -> bytes:
    """A small valid PNG whose header claims ``w`` x ``h`` (a decompression bomb's shape)."""
    data = png_bytes(8, 8)
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:8], ihdr[8:12] = w.to_bytes(4, "big"), h.to_bytes(4, "big")
    return data[:12] + bytes(ihdr) + zlib.crc32(ihdr).to_bytes(4, "big") + data[33:]


def bomb_png(w: int, h: int) -> bytes:
    """A real bomb: a black ``w`` x ``h`` RGB PNG, about 1/1000 of its decoded size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), bytes(1 + 3 * w)  # each row: filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bombs_and_pixel_limit_are_413_without_decoding(models) -> None:
    bomb = bomb_png(6000, 6000)  # 105 kB that decode to 108 MB (over the default 16.7 MP limit)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with client(models) as c:
        huge = c.post("/v1/translate", content=declared_png(30000, 30000))
        over = c.post("/v1/translate", content=bomb)
        with client(models, limits={"max_pixels": 1000}) as small:
            up = small.post("/v1/upscale", content=png_bytes(20, 20))  # 400 px in, 1,600 out at x2
            ok = small.post("/v1/translate", content=png_bytes(20, 20))
    assert huge.status_code == 413 and err(huge)["code"] == "too_many_pixels"
    assert "decompression bomb" in err(huge)["message"]
    assert over.status_code == 413 and "6000x6000" in err(over)["message"]
    assert up.status_code == 413 and "x2 upscaled" in err(up)["message"] and ok.status_code == 200
    # Decoded, the bomb raises this process's peak memory by ~270 MB; refused from its header, it does not.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 50 * 1024


@pytest.mark.parametrize(
    "body, needle",
    [
        (b"hello, not an image", "not a recognised image format"),
        (png_bytes(40, 40)[:300], "truncated"),
        (b"", "empty body"),
        (png_bytes(40, 40)[:60] + bytes(200) + png_bytes(40, 40)[260:], "corrupt"),
    ],
    ids=["text", "truncated", "empty", "corrupt"],
)
def test_bad_images_are_400_naming_the_problem(models, body: bytes, needle: str) -> None:
    with client(models) as c:
        r = c.post("/v1/upscale", content=body)
    assert r.status_code == 400 and err(r)["code"] == "bad_image" and needle in err(r)["message"]


def test_unknown_model_direction_route_and_fields(models) -> None:
    with client(models) as c:
        model = c.post("/v1/translate?model=nope", content=png_bytes(8, 8))
        direction = c.post("/v1/translate?direction=x2y", content=png_bytes(8, 8))
        task = c.post("/v1/translate?model=up", content=png_bytes(8, 8))
        route, method = c.get("/v2/nothing"), c.get("/v1/translate")
        field = c.post("/v1/upscale", files={"picture": ("x.png", png_bytes(8, 8), "image/png")})
    assert model.status_code == 404 and "cg (cyclegan), up (sr)" in err(model)["message"]
    assert direction.status_code == 422 and "a2b, b2a" in err(direction)["message"]
    assert task.status_code == 422 and "/v1/upscale" in err(task)["message"]
    assert (route.status_code, err(route)["code"]) == (404, "not_found")
    assert (method.status_code, err(method)["code"]) == (405, "method_not_allowed")
    assert field.status_code == 400 and "picture" in err(field)["message"]


def test_token_is_required_where_given(models) -> None:
    with client(models, token="s3cret-token") as c:
        missing, wrong = c.get("/v1/models"), c.get("/metrics", headers={"authorization": "Bearer nope"})
        good = c.get("/v1/models", headers={"authorization": "Bearer s3cret-token"})
        post = c.post("/v1/upscale", content=png_bytes(8, 8))
        open_ = [c.get(p).status_code for p in ("/", "/healthz", "/readyz")]
    for r in (missing, wrong, post):
        assert r.status_code == 401 and err(r)["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert good.status_code == 200 and open_ == [200, 200, 200]


def slow_model(release: threading.Event) -> ServedModel:
    """A model that holds its worker until ``release`` (and stops when its client goes away)."""

    def apply(im: Image.Image, direction: str | None, check) -> Image.Image:
        while not release.wait(0.01):
            check()
        return im

    return ServedModel("slow", "cyclegan", ["a2b", "b2a"], 1, "fake", 0, "test", apply)


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_busy_is_503_with_retry_after_and_the_loop_stays_free() -> None:
    release = threading.Event()
    app = create_app([slow_model(release)], Limits(max_concurrency=1, max_queue=1))
    slots = lambda: app.state.server.slots  # noqa: E731
    codes: list[int] = []
    with TestClient(app) as c:
        post = lambda: codes.append(c.post("/v1/translate", content=png_bytes(8, 8)).status_code)  # noqa: E731
        threads = [threading.Thread(target=post) for _ in range(2)]
        threads[0].start()
        wait_for(lambda: slots().running == 1)
        threads[1].start()
        wait_for(lambda: slots().waiting == 1)
        busy = c.post("/v1/translate", content=png_bytes(8, 8))
        health, metrics = c.get("/healthz"), c.get("/metrics").text
        release.set()
        for t in threads:
            t.join(10)
        after = (slots().running, slots().waiting)
    assert busy.status_code == 503 and err(busy)["code"] == "busy" and int(busy.headers["retry-after"]) >= 1
    assert health.status_code == 200 and codes == [200, 200] and after == (0, 0)
    assert "ganlab_queue_depth 1" in metrics and "ganlab_running 1" in metrics
    assert 'ganlab_rejections_total{reason="busy"} 1' in metrics


def test_metrics_are_prometheus_text(models) -> None:
    with client(models, limits={"max_bytes": 10}) as c:
        c.post("/v1/upscale", content=png_bytes(8, 8))
        c.get("/healthz")
        resp = c.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    sample = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')
    lines = [ln for ln in resp.text.splitlines() if not ln.startswith("#")]
    assert lines and all(sample.match(ln) for ln in lines), [ln for ln in lines if not sample.match(ln)]
    assert 'ganlab_requests_total{endpoint="/v1/upscale",code="413"} 1' in lines
    assert 'ganlab_rejections_total{reason="body_too_large"} 1' in lines
    buckets = [
        int(ln.split()[-1])
        for ln in lines
        if ln.startswith('ganlab_request_duration_seconds_bucket{endpoint="/healthz"')
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 1
    assert any(ln.startswith("process_resident_memory_bytes ") for ln in lines) or not Path("/proc").is_dir()


def test_cli_loads_warns_and_fails_in_one_line(runs, tmp_path, monkeypatch, capsys) -> None:
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    assert main(["serve", str(runs["cg"]), f"x4={runs['sr']}", "--host", "0.0.0.0", "--port", "0"]) == 0
    out, errtext = capsys.readouterr()
    assert started[0]["host"] == "0.0.0.0" and "loaded cg:" in out and "loaded x4:" in out
    assert "warning: serving on 0.0.0.0 without --token-file" in errtext
    assert main(["serve", str(runs["cg"]), str(runs["cg"])]) == 2
    assert "two models are named 'cg'" in capsys.readouterr().err
    for argv, needle in (
        (["serve", str(tmp_path / "nope")], "not found"),
        (["serve", str(runs["cg"]), "--token-file", str(tmp_path / "t")], "--token-file"),
        (["serve", str(runs["cg"]), "--max-queue", "-1"], "--max-queue"),
    ):
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ganlab serve: error: ") and needle in lines[0]
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    assert main(["serve", str(runs["cg"])]) == 2
    assert "pip install 'ganlab[serve]'" in capsys.readouterr().err
    assert parse_spec("pretrained:horse2zebra") == ("horse2zebra", "pretrained:horse2zebra")
    assert parse_spec("w/latest_net_G.pth") == ("latest_net_G", "w/latest_net_G.pth")
    assert parse_spec("x4=runs/sr") == ("x4", "runs/sr") and parse_spec("runs/sr/") == ("sr", "runs/sr/")
    assert bind_warning("127.0.0.1", None) is None and bind_warning("::1", None) is None
    assert bind_warning("0.0.0.0", "token") is None and bind_warning("example.org", None)
    assert (
        parse_size("20MB") == 20 * 2**20 and parse_size("512k") == 512 * 1024 and parse_size("1000") == 1000
    )
    with pytest.raises(ValueError, match="not a size"):
        parse_size("12XB")
