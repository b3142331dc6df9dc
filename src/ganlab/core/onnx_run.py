"""Run a model exported by ``ganlab export`` / ``ganlab sr export`` with onnxruntime alone: no PyTorch,
no training code (the pixel convention comes from the file's metadata). Needs the ``export`` extra."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ganlab.core.errors import UserError, require
from ganlab.core.images import ImageReadError, collect_inputs, read_rgb, save_image

META_PREFIX = "ganlab."


class OnnxModel:
    """An exported ganlab model: ``run(rgb uint8 (H, W, 3)) -> rgb uint8 (H', W', 3)``."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = require("onnxruntime", "running ONNX models", "export")
        path = Path(path)
        if not path.is_file():
            raise UserError(f"ONNX file not found: {path}")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise UserError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        self.meta: dict[str, Any] = {
            k[len(META_PREFIX) :]: _value(v) for k, v in raw.items() if k.startswith(META_PREFIX)
        }
        if "input_range" not in self.meta:
            raise UserError(f"{path}: no ganlab metadata (export it with `ganlab export`)")
        self.input_name = self.session.get_inputs()[0].name

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "?"))

    def run(self, rgb: np.ndarray) -> np.ndarray:
        lo, hi = self.meta["input_range"]
        x = rgb.astype(np.float32).transpose(2, 0, 1)[None] * ((hi - lo) / 255.0) + lo
        (y,) = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})
        lo, hi = self.meta["output_range"]
        y = (np.clip(y[0], lo, hi) - lo) * (255.0 / (hi - lo))
        return np.round(y).astype(np.uint8).transpose(1, 2, 0)


def _value(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


def run_onnx_paths(
    model_path: str | Path,
    inputs: list[str | Path],
    out_dir: str | Path,
    ext: str = ".png",
    warn: Callable[[str], None] = print,
    progress: bool = True,
) -> list[Path]:
    """Apply the exported model to every input image (files and folders; outputs mirror the folders,
    named like the inputs with ``ext``)."""
    from tqdm import tqdm

    model = OnnxModel(model_path)
    files = collect_inputs(inputs)
    if not files:
        raise FileNotFoundError(f"no images found in {', '.join(map(str, inputs))}")
    written = []
    for src, rel in tqdm(files, desc=f"onnx {model.task}", unit="img", disable=not progress):
        try:
            rgb = np.asarray(read_rgb(src))
        except ImageReadError as e:
            warn(f"warning: skipping {e}")
            continue
        dst = Path(out_dir) / rel.with_suffix(ext)
        save_image(Image.fromarray(model.run(rgb), "RGB"), dst)
        written.append(dst)
    return written
