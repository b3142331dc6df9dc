"""Drive the page of `ganlab serve` in a real browser (Debian's chromium through Playwright for Python):
open it, upload an image, wait for the result, and save a screenshot (the README's docs/img/serve.png).

    python scripts/serve_screenshot.py runs/demo --image photo.jpg --out docs/img/serve.png --mode slider

Serves the runs with uvicorn on a free 127.0.0.1 port in this process. tests/test_serve_browser.py
calls :func:`capture` on tiny runs. Playwright's own browser download is not needed: --chromium names
the executable (default: chromium on PATH, else /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def capture(
    url: str,
    image: Path,
    out: Path | None,
    chromium: str,
    model: str | None = None,
    direction: str | None = None,
    mode: str = "pair",
    viewport: tuple[int, int] = (1200, 760),
) -> dict[str, Any]:
    """Upload ``image`` on the page at ``url``; returns the page's state, the result image's natural size,
    the status line and the error text. ``out``: where to save a screenshot (None: none)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.goto(url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length > 0")
            if model:
                page.select_option("#model", model)
            if direction:
                page.select_option("#direction", direction)
            page.set_input_files("#file", str(image))
            page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=120_000)
            if mode == "slider":
                page.click("#mode-slider")
            result = page.evaluate(
                "() => { const r = document.getElementById('result');"
                " return {state: document.body.dataset.state, width: r.naturalWidth, height: r.naturalHeight,"
                " status: document.getElementById('status').innerText,"
                " error: document.getElementById('error').innerText}; }"
            )
            if out is not None:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
            return result
        finally:
            browser.close()


def _serve_in_thread(app: Any) -> tuple[Any, str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (NAME=RUN_DIR) to serve")
    ap.add_argument("--image", required=True, type=Path)
    ap.add_argument("--out", default="docs/img/serve.png", type=Path)
    ap.add_argument("--model")
    ap.add_argument("--direction")
    ap.add_argument("--mode", choices=["pair", "slider"], default="pair")
    ap.add_argument("--chromium", default=find_chromium())
    args = ap.parse_args()
    if not args.chromium:
        ap.error("no chromium found; give --chromium PATH")
    from ganlab.serve.app import create_app
    from ganlab.serve.models import load_models

    server, url = _serve_in_thread(create_app(load_models(args.runs)))
    try:
        res = capture(url, args.image, args.out, args.chromium, args.model, args.direction, args.mode)
    finally:
        server.should_exit = True
    print(f"{res['state']}: result {res['width']}x{res['height']}; {res['status']} {res['error']}".strip())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
