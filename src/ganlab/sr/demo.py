"""The super-resolution demo: train ``srresnet-small`` x2 on the built-in offline photos for a time
budget, score it against bicubic on the held-out photos, and write a self-contained ``report.html``."""

from __future__ import annotations

import html
from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ganlab.core import report as R
from ganlab.core.config import merge, to_dict
from ganlab.core.device import select_device
from ganlab.core.rundir import RunDir, read_metrics
from ganlab.sr.config import SRConfig, build_sr_config
from ganlab.sr.data import builtin_images, to_uint8
from ganlab.sr.evaluate import load_sr_generator, score_images
from ganlab.sr.trainer import train_sr

# The recipe (preset, scale, run length), a config file like any other: defaults < preset < this file <
# the user's --config files and --set overrides.
DEMO_RECIPE_FILE = "sr.yaml"
# The paper's x4 SRResNet on Set5 (Ledig et al. 2017, Table 2), for scale: a GPU-days model.
PAPER_SET5_X4 = {"psnr": 32.05, "bicubic": 28.43}


def _pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(t).permute(1, 2, 0).numpy(), "RGB")


def _detail_box(hr: torch.Tensor, side: int) -> tuple[int, int]:
    """Top-left corner of the ``side`` px window with the most luma variance (where SR matters)."""
    y = (hr * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)
    best, corner = -1.0, (0, 0)
    step = max(1, side // 2)
    for i in range(0, max(1, y.shape[0] - side + 1), step):
        for j in range(0, max(1, y.shape[1] - side + 1), step):
            v = float(y[i : i + side, j : j + side].var())
            if v > best:
                best, corner = v, (i, j)
    return corner


def comparison_grid(
    per_image: list[dict[str, Any]], side: int = 96, zoom: int = 2, scale: int = 2
) -> Image.Image:
    """Rows of bicubic | SR | HR crops (``side`` HR px, enlarged ``zoom`` x with nearest neighbour)."""
    rows, labels = [], []
    for e in per_image:
        i, j = _detail_box(e["hr"], side)
        crops = [e[k][:, i : i + side, j : j + side] for k in ("bicubic", "sr", "hr")]
        rows.append([_pil(c).resize((c.shape[-1] * zoom, c.shape[-2] * zoom), Image.NEAREST) for c in crops])
        labels.append(f"{e['name'][:24]} ({e['psnr_y'] - e['bicubic_psnr_y']:+.2f} dB)")
    cols = ["bicubic", f"SR (x{scale})", "HR (ground truth)"]
    return R.image_grid(rows, row_labels=labels, col_labels=cols, cell=side * zoom)


def curves_figure(run_dir: Path) -> Any:
    """Training loss per logged step, and Y-PSNR per epoch against the bicubic line."""
    steps = read_metrics(run_dir, "step")
    epochs = read_metrics(run_dir, "epoch")
    fig, (a, b) = R.subplots(1, 2, figsize=(10, 3.4))
    if steps:
        a.plot([r["step"] for r in steps], [r["pixel"] for r in steps], linewidth=0.8)
        a.set_yscale("log")
    a.set_title("training pixel loss", fontsize=9)
    a.set_xlabel("step", fontsize=8)
    ev = [r for r in epochs if "psnr_y" in r]
    if ev:
        b.plot([r["step"] for r in ev], [r["psnr_y"] for r in ev], marker=".", label="SRResNet-small")
        b.axhline(ev[-1]["bicubic_psnr_y"], color="black", linestyle=":", label="bicubic")
        b.legend(fontsize=8)
    b.set_title("held-out Y-PSNR (dB, 256 px crops) after each epoch", fontsize=9)
    b.set_xlabel("step", fontsize=8)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def write_sr_report(run_dir: Path, res: dict[str, Any], train_info: dict[str, Any]) -> Path:
    rows = [
        {
            "image": e["name"],
            "size": f"{e['size'][0]}x{e['size'][1]}",
            "PSNR-Y": e["psnr_y"],
            "bicubic PSNR-Y": e["bicubic_psnr_y"],
            "gain dB": e["psnr_y"] - e["bicubic_psnr_y"],
            "SSIM-Y": e["ssim_y"],
            "bicubic SSIM-Y": e["bicubic_ssim_y"],
        }
        for e in res["per_image"]
    ]
    rows.append(
        {
            "image": "mean",
            "PSNR-Y": res["psnr_y"],
            "bicubic PSNR-Y": res["bicubic_psnr_y"],
            "gain dB": res["gain_db"],
            "SSIM-Y": res["ssim_y"],
            "bicubic SSIM-Y": res["bicubic_ssim_y"],
        }
    )
    cols = ["image", "size", "PSNR-Y", "bicubic PSNR-Y", "gain dB", "SSIM-Y", "bicubic SSIM-Y"]
    two = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    four = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    fmt = {
        "PSNR-Y": two,
        "bicubic PSNR-Y": two,
        "gain dB": lambda v: f"{v:+.2f}",
        "SSIM-Y": four,
        "bicubic SSIM-Y": four,
    }
    setup = (
        f"<p>{html.escape(train_info['preset'])} x{train_info['scale']} trained for {train_info['minutes']:.1f} min "
        f"({train_info['steps']:,} steps, stopped: {html.escape(train_info['stopped'])}) on the training split "
        "of the built-in offline photos. Scored on the held-out test photos (never trained on): centre crops of "
        f"at most {res['max_side']} px, LR = antialiased bicubic downscale rounded to 8 bits, PSNR/SSIM on "
        f"BT.601 luma with {train_info['scale']} border pixels cropped.</p>"
        f"<p class='note'>For scale: the paper's SRResNet (x4, 16 blocks, 10<sup>6</sup> GPU iterations) reaches "
        f"{PAPER_SET5_X4['psnr']} dB on Set5 against bicubic {PAPER_SET5_X4['bicubic']} dB (Ledig et al. 2017).</p>"
    )
    grid = comparison_grid(res["per_image"][:5], scale=train_info["scale"])
    page = R.html_page(
        "ganlab super-resolution demo",
        [
            ("Setup", setup),
            ("Numbers", R.html_table(rows, cols, fmt=fmt)),
            (
                "Crops: bicubic | SR | HR (most detailed 96 px window of each image, shown 2x)",
                R.img_tag(R.image_data_uri(grid), "bicubic, SR and HR crops"),
            ),
            (
                "Curves",
                R.img_tag(R.figure_data_uri(curves_figure(run_dir), close=True), "loss and PSNR curves"),
            ),
        ],
    )
    path = run_dir / "report.html"
    R.write_text_atomic(path, page)
    return path


def sr_demo_config(train_minutes: float, overrides: dict[str, Any] | None = None) -> SRConfig:
    """defaults < preset < the demo recipe < ``overrides`` (--config files, --set) < the training budget."""
    budget = {"train": {"minutes": train_minutes}}
    with as_file(files("ganlab") / "configs" / "demo" / DEMO_RECIPE_FILE) as recipe:
        return build_sr_config(files=[recipe], overrides=merge(overrides or {}, budget))


def run_sr_demo(
    out: str | Path,
    minutes: float,
    log: Callable[[str], None] = print,
    progress: bool = True,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or finish, if ``out`` already holds an interrupted demo) and report; returns the numbers.

    ``overrides`` layer over the demo recipe, as --config files and --set do. About 45 s of the budget is
    kept for photo decoding, the final evaluation and the report.
    """
    out = Path(out)
    train_minutes = max(minutes * 0.5, minutes - 0.75)
    if RunDir(out).has_checkpoint():
        log(f"{out} holds an earlier SR demo: finishing it within its budget, then re-evaluating")
        result = train_sr(resume=out, log=log, progress=progress)
    else:
        layers = to_dict(sr_demo_config(train_minutes, overrides))
        preset = layers.pop("preset")
        result = train_sr(preset=preset, overrides=layers, out=out, log=log, progress=progress)
    dev = select_device("auto")
    model, cfg, ckpt = load_sr_generator(out, "latest", dev)
    images = builtin_images("test", cfg.data.split_seed, cfg.data.photo_max_side)
    res = score_images(model, images, cfg.model.scale, dev, max_side=512, keep_outputs=True)
    res["max_side"] = 512
    info = {
        "minutes": float(ckpt.meta.get("train_seconds", 0.0)) / 60,
        "steps": ckpt.meta.get("global_step", 0),
        "stopped": result.stopped,
        "preset": cfg.preset,
        "scale": cfg.model.scale,
    }
    report = write_sr_report(RunDir(out).root, res, info)
    numbers = {k: res[k] for k in ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y", "gain_db")}
    per_image = [{k: v for k, v in e.items() if not isinstance(v, torch.Tensor)} for e in res["per_image"]]
    log(
        f"x{cfg.model.scale} Y-PSNR {res['psnr_y']:.2f} dB vs bicubic {res['bicubic_psnr_y']:.2f} dB "
        f"({res['gain_db']:+.2f} dB) after {info['steps']} steps, {info['minutes']:.1f} min; report {report}"
    )
    return {
        **numbers,
        "per_image": per_image,
        "report": str(report),
        "run_dir": str(out),
        **info,
    }
