"""Start a server: check the extra, read the token, load the models once, warn about an open bind, run
uvicorn. Imports FastAPI and uvicorn only when called, so ``ganlab --help`` works without the extra."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path

from ganlab.core.device import select_device
from ganlab.core.errors import MissingExtraError, UserError, require
from ganlab.serve.limits import Limits
from ganlab.serve.models import load_models


def read_token(path: str | Path | None) -> str | None:
    """The bearer token of ``--token-file`` (surrounding whitespace dropped), or None without one."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--token-file {path}: cannot read it ({e})") from None
    if not token or any(c.isspace() for c in token) or not token.isascii():
        raise UserError(f"--token-file {path}: must hold one token of printable ASCII without spaces")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def bind_warning(host: str, token: str | None) -> str | None:
    if token is not None or is_loopback(host):
        return None
    return (
        f"warning: serving on {host} without --token-file: anyone who can reach this machine can use "
        "the models (and its CPU); bind 127.0.0.1 or give a --token-file"
    )


def _require_extra() -> None:
    require("fastapi", "ganlab serve", "serve")
    require("uvicorn", "ganlab serve", "serve")
    try:
        require("python_multipart", "ganlab serve", "serve")
    except MissingExtraError:
        require("multipart", "ganlab serve", "serve")  # python-multipart before 0.0.13


def serve(
    specs: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    token_file: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    tile: int = 512,
    checkpoint: str | int = "latest",
    log_level: str = "info",
    say: Callable[[str], None] = print,
) -> None:
    """Load every model, then serve until interrupted (Ctrl-C stops after the requests in flight)."""
    _require_extra()
    limits = limits or Limits()
    limits.validate()
    if tile < 0:
        raise UserError("--tile must be >= 0")
    token = read_token(token_file)
    models = load_models(
        specs, device=select_device(device), precision=precision, tile=tile, checkpoint=checkpoint
    )
    for m in models:
        what = f"x{m.scale} upscale" if m.task == "sr" else "translate " + "/".join(m.directions)
        say(f"loaded {m.name}: {m.architecture}, {what}, {m.parameters:,} parameters ({m.source})")
    warning = bind_warning(host, token)
    if warning:
        print(warning, file=sys.stderr)
    import uvicorn

    from ganlab.serve.app import create_app

    app = create_app(models, limits, token)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {len(models)} model(s) on http://{shown}:{port}/ (API: /v1/models, metrics: /metrics)")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5)
