"""``ganlab export``: a run's generator as an ONNX file that translates pictures of any size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.core.config import to_dict
from ganlab.core.onnx_export import DEFAULT_OPSET, compare_onnx, export_onnx
from ganlab.cyclegan.translate import DIRECTIONS, load_run_models
from ganlab.models.generator import ResnetGenerator


class ExportableGenerator(nn.Module):
    """ResnetGenerator.forward with its pad to a multiple of 2^n_down and the crop back written as graph
    operations on the input's shape (forward decides with Python ``if``s, which a trace would freeze to
    the example's size). Sides must be at least 4 * 2^n_down pixels (reflection needs real pixels)."""

    def __init__(self, g: ResnetGenerator) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        m = self.g.multiple
        xp = F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m], mode="reflect")
        y = self.g.net(xp)
        if self.g.cfg.global_skip:
            c = xp.clamp(-0.999, 0.999)  # atanh written out: the TorchScript exporter lacks aten::atanh
            y = torch.tanh(0.5 * torch.log((1 + c) / (1 - c)) + y)
        return y[:, :, :h, :w]


def check_sizes(g: ResnetGenerator) -> list[tuple[int, int]]:
    """Three input sizes for the check against PyTorch: square, odd x odd, wide and odd."""
    m = max(8, 4 * g.multiple)
    return [(2 * m, 2 * m), (3 * m + 1, 2 * m + 3), (m + 3, 4 * m - 1)]


def export_generator(
    g: ResnetGenerator, out: str | Path, metadata: dict[str, Any], opset: int = DEFAULT_OPSET
) -> Path:
    """Write ``g`` to ``out`` as ONNX ([-1, 1] RGB in and out, any batch, height and width)."""
    m = ExportableGenerator(g).eval()
    example = torch.zeros(1, g.cfg.in_channels, 8 * g.multiple + 1, 8 * g.multiple + 3)
    meta = {"task": "cyclegan", "input_range": [-1, 1], "output_range": [-1, 1], "scale": 1, **metadata}
    meta["min_side"] = 4 * g.multiple
    return export_onnx(m, out, example, meta, opset)


def export_run(
    run_dir: str | Path,
    out: str | Path,
    direction: str = "a2b",
    checkpoint: str | int = "latest",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> tuple[Path, float | None]:
    """Export generator ``direction`` of a run (its EMA weights when kept, as translate uses); with
    ``check``, also the max abs difference to PyTorch on three sizes (one odd)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; use a2b or b2a")
    models, cfg, meta = load_run_models(run_dir, checkpoint)
    g = models[DIRECTIONS[direction]]
    info = {"direction": direction, "config": to_dict(cfg), "epoch": meta.get("epoch"), "run": str(run_dir)}
    path = export_generator(g, out, info, opset)
    diff = compare_onnx(path, g, check_sizes(g)) if check else None
    return path, diff
