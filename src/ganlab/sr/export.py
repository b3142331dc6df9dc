"""``ganlab sr export``: an SR run's generator as an ONNX file that upscales pictures of any size."""

from __future__ import annotations

from pathlib import Path

import torch

from ganlab.core.config import to_dict
from ganlab.core.onnx_export import DEFAULT_OPSET, compare_onnx, export_onnx
from ganlab.models.sr import SRResNet
from ganlab.sr.evaluate import load_sr_generator

# SRResNet pads inputs below MIN_SIDE with a Python ``if``: the export, traced on a larger example,
# covers sides >= MIN_SIDE (its reflect padding needs them anyway).
CHECK_SIZES = [(16, 16), (13, 27), (9, 20)]


def export_sr_generator(g: SRResNet, out: str | Path, metadata: dict, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``g`` to ``out`` as ONNX ([0, 1] RGB in and out, any batch, height and width)."""
    example = torch.zeros(1, g.cfg.in_channels, 17, 23)
    meta = {"task": "sr", "input_range": [0, 1], "output_range": [0, 1], "scale": g.cfg.scale, **metadata}
    meta["min_side"] = SRResNet.MIN_SIDE
    return export_onnx(g.eval(), out, example, meta, opset)


def export_sr_run(
    run_dir: str | Path,
    out: str | Path,
    checkpoint: str | int = "latest",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> tuple[Path, float | None]:
    """Export an SR run's generator; with ``check``, also the max abs difference to PyTorch."""
    g, cfg, ckpt = load_sr_generator(run_dir, checkpoint)
    info = {"config": to_dict(cfg), "epoch": ckpt.meta.get("epoch"), "run": str(run_dir)}
    path = export_sr_generator(g, out, info, opset)
    diff = compare_onnx(path, g, CHECK_SIZES, low=0.0, high=1.0) if check else None
    return path, diff
