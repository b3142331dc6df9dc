"""The page of `ganlab serve` in a real browser: Debian's chromium driven by Playwright for Python (its own
browser download is not used). Skipped, with the reason, only where playwright or chromium is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="ganlab serve needs the serve extra (fastapi)")
pytest.importorskip("uvicorn", reason="ganlab serve needs the serve extra (uvicorn)")
pytest.importorskip("playwright", reason="playwright for Python is not installed (pip install -e '.[dev]')")

from ganlab.serve.app import create_app  # noqa: E402
from ganlab.serve.models import load_models  # noqa: E402

from .serve_util import load_script, make_cyclegan_run, make_sr_run, png_bytes, running_server  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "serve_screenshot.py"


def script():
    return load_script(SCRIPT, "serve_screenshot")


def test_page_upscales_an_upload_and_shows_api_errors(tmp_path: Path) -> None:
    shot = script()
    chromium = shot.find_chromium()
    if chromium is None:
        pytest.skip(
            "Debian's chromium is not installed (scripts/install.sh dev installs it where apt is available)"
        )
    models = load_models(
        [str(make_cyclegan_run(tmp_path / "cg")), f"x2={make_sr_run(tmp_path / 'sr', scale=2)}"]
    )
    (tmp_path / "photo.png").write_bytes(png_bytes(40, 30))
    (tmp_path / "notes.png").write_text("not a picture")
    with running_server(create_app(models)) as url:
        ok = shot.capture(
            url, tmp_path / "photo.png", tmp_path / "serve.png", chromium, model="x2", mode="slider"
        )
        bad = shot.capture(url, tmp_path / "notes.png", None, chromium, model="cg", direction="b2a")
    assert ok["state"] == "done" and (ok["width"], ok["height"]) == (80, 60), ok
    assert ok["status"].startswith("Done in ") and not ok["error"]
    assert Image.open(tmp_path / "serve.png").size[0] == 1200
    assert bad["state"] == "error" and "not a recognised image format" in bad["error"], bad
    assert "HTTP 400, bad_image" in bad["error"]
