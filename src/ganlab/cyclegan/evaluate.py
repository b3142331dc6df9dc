"""`ganlab eval`: score a CycleGAN run on its test images.

For testA (and testB) images: cycle PSNR/SSIM (input vs reconstruction), and where testB_gt holds the
true A->B renderings, ground-truth PSNR/SSIM of the translation beside two baselines: identity (output =
input) and an oracle global affine colour map fitted by least squares on the test pairs themselves (it can
only recolour, so beating it proves a learned spatial mapping). Also the artifact and tint numbers:
checkerboard index on a flat grey input and on the translated test images, the CIELAB colour shift, and
``gt_alignment``: the cosine between what the translation changed and what the truth changed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ganlab.core import metric_table as MT
from ganlab.core import metrics as M
from ganlab.core.cost import count_params, gflops
from ganlab.core.device import select_device
from ganlab.core.errors import CheckpointError, DataError
from ganlab.core.images import ImageReadError, read_rgb
from ganlab.core.rundir import read_metrics
from ganlab.core.stats import paired_bootstrap
from ganlab.cyclegan.data import load_test_images
from ganlab.cyclegan.reference import describe_missing
from ganlab.cyclegan.translate import MIN_SIDE, load_run_models, translate_tensor


def _to01(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) float64 in [0, 1]."""
    return ((t.detach().float().clamp(-1, 1).cpu().numpy().transpose(1, 2, 0) + 1.0) / 2.0).astype(np.float64)


def _mean(xs: list[float]) -> float:
    finite = [x for x in xs if np.isfinite(x)]
    return float(np.mean(finite)) if finite else float("nan")


@torch.no_grad()
def evaluate_models(
    models: nn.ModuleDict,
    data_root: Path,
    device: torch.device,
    limit: int | None = None,
    baselines: bool = True,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Metrics of G_A2B / G_B2A on data_root/testA, testB, testB_gt. Keys absent when data is absent.
    Unreadable images are skipped (each named through ``warn``)."""
    g_ab, g_ba = models["G_A2B"].eval(), models["G_B2A"].eval()
    n_down = max(1, getattr(getattr(g_ab, "cfg", None), "n_down", 1))
    out: dict[str, Any] = {}
    test_a = _scorable(load_test_images(data_root / "testA", limit, warn), warn)
    test_b = _scorable(load_test_images(data_root / "testB", limit, warn), warn)
    gt_dir = data_root / "testB_gt"
    a_in, a_fake, a_rec, gts, names = [], [], [], [], []
    for path, x in tqdm(test_a, desc="eval A", disable=not progress, leave=False):
        names.append(path.name)
        xb = x[None].to(device)
        fake = translate_tensor(g_ab, xb)
        rec = translate_tensor(g_ba, fake)
        a_in.append(_to01(x))
        a_fake.append(_to01(fake[0]))
        a_rec.append(_to01(rec[0]))
        gt_path = gt_dir / path.name
        gts.append(_read_gt(gt_path, warn))
    if a_in:
        out["n_test_a"] = len(a_in)
        out["cycle_psnr"] = _mean([M.psnr(x, r) for x, r in zip(a_in, a_rec)])
        out["cycle_ssim"] = _mean([M.ssim(x, r) for x, r in zip(a_in, a_rec)])
        shift = M.mean_over_pairs(M.tint, a_in, a_fake)
        out.update({f"tint_{k}": float(v) for k, v in shift.items()})
        out["checkerboard_images"] = _mean([M.checkerboard_index(f, n_down, highpass=True) for f in a_fake])
        pairs = [(x, f, g) for x, f, g in zip(a_in, a_fake, gts) if g is not None and g.shape == x.shape]
        if pairs:
            out["n_gt"] = len(pairs)
            psnrs, ssims = [M.psnr(f, g) for _, f, g in pairs], [M.ssim(f, g) for _, f, g in pairs]
            out["gt_psnr"], out["gt_ssim"] = _mean(psnrs), _mean(ssims)
            out["gt_alignment"] = M.change_alignment(*zip(*pairs))
            gt_shift = M.mean_over_pairs(M.tint, [g for *_, g in pairs], [f for _, f, _ in pairs])
            out.update({f"gt_tint_{k}": float(v) for k, v in gt_shift.items()})
            if baselines:
                id_psnrs, id_ssims = [M.psnr(x, g) for x, _, g in pairs], [M.ssim(x, g) for x, _, g in pairs]
                out["identity_psnr"], out["identity_ssim"] = _mean(id_psnrs), _mean(id_ssims)
                # Per-tile scores and the paired interval of the gain over the identity: whether the
                # translation beats leaving the image alone, or the difference is noise.
                out["tiles"] = {
                    "gt_psnr": psnrs,
                    "gt_ssim": ssims,
                    "identity_psnr": id_psnrs,
                    "identity_ssim": id_ssims,
                }
                # Which tile each score belongs to, so runs can be paired tile by tile.
                out["tile_names"] = [
                    n for n, x, g in zip(names, a_in, gts) if g is not None and g.shape == x.shape
                ]
                for key, a, b in (("psnr", psnrs, id_psnrs), ("ssim", ssims, id_ssims)):
                    out[f"gt_{key}_vs_identity"] = asdict(paired_bootstrap(a, b))
                m = M.fit_affine_color([x for x, *_ in pairs], [g for *_, g in pairs])
                aff = [M.apply_affine_color(x, m) for x, *_ in pairs]
                out["affine_psnr"] = _mean([M.psnr(a, g) for a, (*_, g) in zip(aff, pairs)])
                out["affine_ssim"] = _mean([M.ssim(a, g) for a, (*_, g) in zip(aff, pairs)])
    if test_b:
        b_in, b_rec = [], []
        for _, y in tqdm(test_b, desc="eval B", disable=not progress, leave=False):
            rec = translate_tensor(g_ab, translate_tensor(g_ba, y[None].to(device)))
            b_in.append(_to01(y))
            b_rec.append(_to01(rec[0]))
        out["n_test_b"] = len(b_in)
        out["cycle_psnr_b"] = _mean([M.psnr(x, r) for x, r in zip(b_in, b_rec)])
        out["cycle_ssim_b"] = _mean([M.ssim(x, r) for x, r in zip(b_in, b_rec)])
    out["checkerboard_flat"] = flat_checkerboard(g_ab, n_down, device)
    return out


def flat_checkerboard(g: Callable[[torch.Tensor], torch.Tensor], n_down: int, device: torch.device) -> float:
    """The checkerboard index of ``g``'s translation of a flat mid-grey 128 px image: what the generator
    adds by itself, where any periodic grid is artifact. A pattern whose RMS is under half an 8-bit grey
    level (fp32 rounding leaves 1e-4) is invisible and scores 0 instead of its share of that noise."""
    y = _to01(g(torch.zeros(1, 3, 128, 128, device=device))[0])
    if float((y - y.mean(axis=(0, 1))).std()) < 0.5 / 255.0:
        return 0.0
    return M.checkerboard_index(y, n_down)


def _scorable(
    images: list[tuple[Path, torch.Tensor]], warn: Callable[[str], None] | None
) -> list[tuple[Path, torch.Tensor]]:
    """The test images large enough to score (SSIM's 11 px window); the others are named through warn."""
    out = []
    for path, x in images:
        if min(x.shape[-2:]) >= MIN_SIDE:
            out.append((path, x))
        elif warn is not None:
            warn(f"warning: skipping {path}: {x.shape[-1]}x{x.shape[-2]} is too small to score")
    return out


def _read_gt(path: Path, warn: Callable[[str], None] | None) -> np.ndarray | None:
    """A ground-truth image in [0, 1], or None when there is none or it is unreadable (warned)."""
    if not path.is_file():
        return None
    try:
        return M.to_float01(read_rgb(path))
    except ImageReadError as e:
        if warn is not None:
            warn(f"warning: skipping ground truth {e}")
        return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def evaluate_run(
    run_dir: str | Path,
    data: str | Path | None = None,
    checkpoint: str = "latest",
    device: str = "auto",
    limit: int | None = None,
    progress: bool = True,
    use_ema: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``data`` (default: the run's own data root); write RUN_DIR/eval.json
    (``use_ema=False``: the raw generators of an EMA run, written to RUN_DIR/eval_raw.json)."""
    run_dir = Path(run_dir)
    dev = select_device(device)
    models, cfg, meta = load_run_models(run_dir, checkpoint, dev, use_ema=use_ema)
    if "G_B2A" not in models:  # the cycle metrics need both directions
        raise CheckpointError(f"{describe_missing(meta, run_dir)}: eval needs both generators")
    root = Path(data) if data else (Path(cfg.data.root) if cfg.data.root else None)
    if root is None or not (root / "testA").is_dir():
        raise DataError(
            f"no test images: {root or 'the run has no data root'} has no testA/ (pass --data DIR)"
        )
    res = evaluate_models(models, root, dev, limit=limit, baselines=True, progress=progress, warn=_stderr)
    epochs = read_metrics(run_dir, "epoch")
    secs = [r["seconds"] for r in epochs]
    res.update(
        {
            "run": str(run_dir),
            "data": str(root),
            "checkpoint_epoch": meta["epoch"],
            "generators": "ema" if use_ema and cfg.train.ema_decay > 0 else "raw",
            "preset": cfg.preset,
            "generator_params": count_params(models["G_A2B"]),
            "discriminator_params": count_params(models["D_A"]) if "D_A" in models else None,
            "gflops_256": gflops(models["G_A2B"], 256),
            "seconds_per_epoch": float(np.median(secs)) if secs else None,
            "epochs": len(epochs),
            "peak_mem_mb": max((r.get("peak_mem_mb", 0.0) for r in epochs), default=None),
        }
    )
    tmp = run_dir / ".eval.json.tmp"
    tmp.write_text(json.dumps(res, indent=2, default=str))
    tmp.replace(run_dir / ("eval.json" if use_ema else "eval_raw.json"))
    return res


# PSNR/SSIM pairs of `ganlab eval`'s table: (what is compared, PSNR key, SSIM key).
EVAL_PAIRS = [
    ("cycle A->B->A", "cycle_psnr", "cycle_ssim"),
    ("cycle B->A->B", "cycle_psnr_b", "cycle_ssim_b"),
    ("A->B vs ground truth", "gt_psnr", "gt_ssim"),
    ("baseline: identity", "identity_psnr", "identity_ssim"),
    ("baseline: affine colour (oracle)", "affine_psnr", "affine_ssim"),
]
# Single numbers printed under the pairs, one a line.
EVAL_SINGLES = [
    "gt_alignment",
    "checkerboard_flat",
    "checkerboard_images",
    "tint_delta_a",
    "tint_delta_b",
    "tint_delta_e2000",
]


def format_table(res: dict[str, Any]) -> str:
    """`ganlab eval`'s text table of an ``evaluate_models``/``evaluate_run`` result: the PSNR/SSIM pairs
    beside their baselines, then the artifact and tint numbers. Labels and number formats come from
    core.metric_table; rows whose metric is absent (no testB, no ground truth) are left out."""
    singles = []
    for k in EVAL_SINGLES:
        if k in res:
            m = MT.METRICS[k]
            singles.append((f"{m.label} ({m.note})" if m.note else m.label, MT.format(k, res[k])))
    w = max([34, *(len(name) for name, _ in singles)])
    lines = [f"{'':{w}s} {'PSNR dB':>8s} {'SSIM':>7s}"]
    for name, p, s in EVAL_PAIRS:
        if p in res:
            lines.append(f"{name:{w}s} {MT.format(p, res[p]):>8s} {MT.format(s, res.get(s)):>7s}")
    lines += [f"{name:{w}s} {value:>8s}" for name, value in singles]
    return "\n".join(lines)
