"""The `ganlab demo` report: loss and metric curves with phase boundaries, the image grid
(original | translation | ground truth | reconstruction) and the numbers beside the baselines."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganlab.core import metric_table as MT
from ganlab.core import report as R
from ganlab.core.config import from_dict, load_yaml
from ganlab.core.images import list_images, pil_to_tensor, read_rgb, save_image, tensor_to_pil
from ganlab.core.rundir import read_metrics
from ganlab.core.stats import Interval
from ganlab.cyclegan.config import CycleGANConfig
from ganlab.cyclegan.step import LOSS_KEYS
from ganlab.cyclegan.translate import load_run_models

# The documented model's quality (cycle A->B->A after ~20 GPU hours), shown as the goal.
DOCUMENTED = {"cycle_psnr": 25.85, "cycle_ssim": 0.90}
# Metric columns of the report's two tables; labels and formats come from core.metric_table.
NUMBER_KEYS = ["gt_psnr", "gt_ssim", "cycle_psnr", "cycle_ssim"]
EXTRA_KEYS = [
    "gt_alignment",
    "checkerboard_flat",
    "checkerboard_images",
    "tint_delta_a",
    "tint_delta_b",
    "gt_tint_delta_b",
    "tint_delta_e2000",
]


@torch.no_grad()
def demo_grid(run_dir: Path, data: Path, n: int = 6) -> Image.Image:
    """Rows of test images: original | A->B | ground truth | A->B->A."""
    models, _, _ = load_run_models(run_dir)
    rows, labels = [], []
    for path in list_images(data / "testA")[:: max(1, len(list_images(data / "testA")) // n)][:n]:
        x = pil_to_tensor(read_rgb(path))[None]
        fake = models["G_A2B"](x)
        rec = models["G_B2A"](fake)
        gt_path = data / "testB_gt" / path.name
        row = [tensor_to_pil(x[0]), tensor_to_pil(fake[0])]
        row.append(read_rgb(gt_path) if gt_path.is_file() else Image.new("RGB", row[0].size, "white"))
        row.append(tensor_to_pil(rec[0]))
        rows.append(row)
        labels.append(path.stem)
    return R.image_grid(
        rows,
        row_labels=None,
        col_labels=["original", "translation", "ground truth", "reconstruction"],
        cell=128,
    )


def numbers_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {
            "method": "ganlab model (A->B)",
            "gt_psnr": res.get("gt_psnr"),
            "gt_ssim": res.get("gt_ssim"),
            "cycle_psnr": res.get("cycle_psnr"),
            "cycle_ssim": res.get("cycle_ssim"),
        },
        {
            "method": "baseline: identity (output = input)",
            "gt_psnr": res.get("identity_psnr"),
            "gt_ssim": res.get("identity_ssim"),
        },
        {
            "method": "baseline: oracle affine colour map",
            "gt_psnr": res.get("affine_psnr"),
            "gt_ssim": res.get("affine_ssim"),
        },
        {"method": "documented model (goal, cycle only)", **DOCUMENTED},
    ]
    return rows


def verdict(res: dict[str, Any]) -> str:
    """One sentence that says what the numbers mean. "Beats" needs the paired 95% interval of the gain
    over a baseline (per test tile) above zero for both PSNR and SSIM; a difference whose interval holds
    zero is reported as indistinguishable, not as a win or a loss."""
    gt, ident, aff = res.get("gt_psnr"), res.get("identity_psnr"), res.get("affine_psnr")
    if gt is None or ident is None:
        return "No ground truth: only cycle metrics are available."
    psnr, ssim = res.get("gt_psnr_vs_identity"), res.get("gt_ssim_vs_identity")
    if psnr is None or ssim is None:  # an eval without per-tile scores: means only
        return "Per-tile scores are missing: rerun ganlab eval to compare with the baselines."
    calls = {name: Interval(**iv).verdict for name, iv in (("PSNR", psnr), ("SSIM", ssim))}
    gain = (
        f"PSNR {psnr['mean']:+.2f} dB [{psnr['low']:+.2f}, {psnr['high']:+.2f}], "
        f"SSIM {ssim['mean']:+.4f} [{ssim['low']:+.4f}, {ssim['high']:+.4f}]"
    )
    if set(calls.values()) == {"better"}:
        if aff is not None and gt > aff and res.get("gt_ssim", 0) > res.get("affine_ssim", 1):
            return (
                f"The translation beats both baselines ({gain} over the identity): a learned spatial style."
            )
        return (
            f"The translation beats the identity baseline ({gain}; 95% intervals over the test tiles) but not "
            "the oracle colour map: it moved toward the style, by less than the best global recolouring would."
        )
    if "worse" in calls.values():
        return (
            f"The translation is further from the ground truth than the unchanged input ({gain}): the model "
            "has not learned the style in this budget; train longer (--minutes)."
        )
    unsure = " and ".join(name for name, call in calls.items() if call == "undecided")
    return (
        "The translation is not shown to be closer to the ground truth than the unchanged input: the 95% "
        f"interval of its {unsure} gain over the test tiles includes zero ({gain})."
    )


def write_demo_report(run_dir: str | Path, res: dict[str, Any]) -> Path:
    """Write RUN_DIR/report.html and RUN_DIR/demo_grid.png; returns the report path."""
    run_dir = Path(run_dir)
    cfg = from_dict(CycleGANConfig, load_yaml(run_dir / "config.yaml"))
    epochs = read_metrics(run_dir, "epoch")
    phases = [r["epoch"] for r in read_metrics(run_dir, "phase") if r.get("epoch", 1) > 1]  # as trained
    grid = demo_grid(run_dir, Path(res["data"]))
    save_image(grid, run_dir / "demo_grid.png")
    runs = {"demo": epochs}
    loss_fig = R.plot_losses(runs, list(LOSS_KEYS), phase_epochs=phases)
    metric_figs = []
    last = epochs[-1] if epochs else {}
    # Baselines on the same test subset as the per-epoch curves (train.eval_images), not eval.json's set.
    for key, base in (
        (
            "eval_gt_psnr",
            {"identity": last.get("eval_identity_psnr"), "affine": last.get("eval_affine_psnr")},
        ),
        (
            "eval_gt_ssim",
            {"identity": last.get("eval_identity_ssim"), "affine": last.get("eval_affine_ssim")},
        ),
        # Cosine between the translation's change and the true change: > 0 means it moves toward the style.
        ("eval_gt_alignment", {"no relation": 0.0}),
        ("eval_cycle_psnr", {"documented": DOCUMENTED["cycle_psnr"]}),
        ("eval_cycle_ssim", {"documented": DOCUMENTED["cycle_ssim"]}),
    ):
        if any(key in r for r in epochs):
            fig = R.plot_metric_curves(
                runs,
                [key],
                phase_epochs=phases,
                baselines={k: v for k, v in base.items() if v is not None},
                title=key,
            )
            metric_figs.append(R.img_tag(R.figure_data_uri(fig, close=True), key))
    cols = ["method", *NUMBER_KEYS]
    secs = sum(r["seconds"] for r in epochs)
    summary = (
        f"<p>{cfg.preset} layout (width {cfg.model.hidden}, {cfg.model.n_residual} residual, "
        f"{cfg.model.n_down} down/up, {cfg.model.upsample}), {len(epochs)} epochs, "
        f"{epochs[-1]['step'] if epochs else 0} steps of batch {cfg.train.batch_size} at "
        f"{cfg.data.size} px, {secs / 60:.1f} training minutes. Test images: {res.get('n_test_a')} "
        "held-out crops (photos never used in training).</p>"
    )
    # What the demo measured on this machine and chose (written by ganlab demo; absent for other runs).
    plan = run_dir / "demo_plan.json"
    if plan.is_file():
        summary += f"<p>Plan: {html.escape(json.loads(plan.read_text(encoding='utf-8'))['note'])}</p>"
    extra = {k: res.get(k) for k in EXTRA_KEYS}
    sections = [
        (
            "Summary",
            summary
            + f"<p><b>{verdict(res)}</b></p>"
            + R.html_table(numbers_rows(res), cols, fmt=MT.formatters(cols), headers=MT.headers(cols)),
        ),
        (
            "Test images: original | translation | ground truth | reconstruction",
            R.img_tag(R.image_data_uri(grid), "demo grid"),
        ),
        ("Metrics per epoch (dashed: loss-weight phase switches)", "\n".join(metric_figs)),
        ("Losses per epoch", R.img_tag(R.figure_data_uri(loss_fig, close=True), "losses")),
        (
            "Artifacts and tint",
            R.html_table([extra], EXTRA_KEYS, fmt=MT.formatters(EXTRA_KEYS), headers=MT.headers(EXTRA_KEYS)),
        ),
    ]
    path = run_dir / "report.html"
    R.write_text_atomic(path, R.html_page("ganlab demo: photo -> cartoon", sections))
    return path
