"""Export an image-to-image nn.Module to ONNX with dynamic batch, height and width, and check the file
against PyTorch with onnxruntime. Needs the ``export`` extra (onnx, onnxruntime).

The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) is used: it needs no package beyond
onnx, and it records shape arithmetic done on ``x.shape`` as graph ops, so a module that pads its input
to a multiple of some stride and crops back works for every size when written without Python ``if``s
on the shape. Antialiased bicubic upsampling (``F.interpolate(..., antialias=True)``), which that exporter
lacks, is written as ONNX Resize (cubic, a = -0.5, outside weights excluded and renormalised: the same
filter for upscaling).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganlab.core.errors import require
from ganlab.core.version import VERSION

DEFAULT_OPSET = 17
META_PREFIX = "ganlab."


def _bicubic_aa(g, x, output_size, align_corners, scale_factors):
    from torch.onnx import symbolic_helper as sh

    scales = sh._maybe_get_const(scale_factors, "fs")
    if sh._is_none(scale_factors) or any(s < 1 for s in scales):
        raise RuntimeError("only antialiased bicubic *upscaling* by a scale factor exports to ONNX")
    roi = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    sc = g.op("Constant", value_t=torch.tensor([1.0, 1.0, *scales], dtype=torch.float32))
    return g.op(
        "Resize",
        x,
        roi,
        sc,
        mode_s="cubic",
        cubic_coeff_a_f=-0.5,
        exclude_outside_i=1,
        coordinate_transformation_mode_s="half_pixel",
    )


def export_onnx(
    module: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    metadata: dict[str, Any],
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``module`` (eval mode, CPU) to ``path``: input ``image`` (N, C, H, W) -> output ``output``,
    N, H and W dynamic. ``metadata`` goes to the model's metadata_props as ``ganlab.<key>`` (values that
    are not strings as JSON), with the opset and ganlab's version. Atomic write; returns the path."""
    onnx = require("onnx", "ONNX export", "export")
    path = Path(path)
    module = module.eval().cpu()
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.register_custom_op_symbolic("aten::_upsample_bicubic2d_aa", _bicubic_aa, 11)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=["image"],
                output_names=["output"],
                dynamic_axes={"image": axes, "output": axes},
            )
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::_upsample_bicubic2d_aa", 11)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name, model.producer_version = "ganlab", VERSION
    meta = dict(metadata, opset=opset, version=VERSION)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + k, v if isinstance(v, str) else json.dumps(v)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
    return path


@torch.no_grad()
def compare_onnx(
    path: str | Path,
    module: nn.Module,
    sizes: Sequence[tuple[int, int]],
    low: float = -1.0,
    high: float = 1.0,
) -> float:
    """Max abs difference between onnxruntime and ``module`` on random inputs of each (H, W) in
    ``sizes`` (batch 2 for the first, 1 for the rest), values uniform in [low, high]."""
    ort = require("onnxruntime", "running ONNX models", "export")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    c = sess.get_inputs()[0].shape[1]
    gen = torch.Generator().manual_seed(0)
    worst = 0.0
    for i, (h, w) in enumerate(sizes):
        x = torch.rand(2 if i == 0 else 1, c, h, w, generator=gen) * (high - low) + low
        ref = module.eval()(x).numpy()
        (out,) = sess.run(None, {"image": x.numpy()})
        if out.shape != ref.shape:
            raise AssertionError(f"ONNX output {out.shape} != PyTorch {ref.shape} for input {tuple(x.shape)}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
