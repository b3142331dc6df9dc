"""Helpers for the `ganlab serve` tests: tiny run directories written directly (no training), test images,
and a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import importlib.util
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganlab.core.rundir import RunDir, progress_meta


def make_cyclegan_run(root: Path, seed: int = 0) -> Path:
    """A CycleGAN run with one checkpoint of random tiny weights (width 8, one residual block)."""
    from ganlab.cyclegan.config import build_cyclegan_config
    from ganlab.cyclegan.step import build_models

    cfg = build_cyclegan_config(
        "model2",
        overrides={"model": {"hidden": 8, "n_residual": 1}, "disc": {"hidden": 8, "n_layers": 2}},
    )
    torch.manual_seed(seed)
    return _save(root, "cyclegan", cfg, dict(build_models(cfg)))


def make_sr_run(root: Path, scale: int = 2, seed: int = 0) -> Path:
    """An SR run with one checkpoint of a random tiny x``scale`` generator."""
    from ganlab.models.sr import SRResNet
    from ganlab.sr.config import build_sr_config

    cfg = build_sr_config(
        "srresnet-small", overrides={"model": {"hidden": 8, "n_residual": 1, "scale": scale}}
    )
    torch.manual_seed(seed)
    return _save(root, "sr", cfg, {"generator": SRResNet(cfg.model)})


def _save(root: Path, task: str, cfg: object, modules: dict) -> Path:
    run = RunDir(root)
    run.create()
    run.write_config(cfg)
    run.save(1, 0, modules, progress_meta(task, cfg, 1, 0, 1, 0.0), {})
    return root


def png_bytes(w: int, h: int, mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    bands = len(mode)
    arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
    im = Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def load_script(path: Path, name: str):
    """A script file (benchmarks/, scripts/) imported as module ``name``; registered in sys.modules first,
    because dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module
