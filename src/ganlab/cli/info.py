"""`ganlab info`: architecture summary, parameter counts, GFLOPs and config of a preset or run."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from ganlab.cli.flags import add_config_flags
from ganlab.core.config import parse_set
from ganlab.core.cost import describe
from ganlab.core.rundir import run_meta
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.step import build_models
from ganlab.cyclegan.translate import load_run_models
from ganlab.models.registry import get_preset, preset_names
from ganlab.models.sr import SRDiscriminator, SRResNet
from ganlab.sr.config import build_sr_config
from ganlab.sr.evaluate import load_sr_generator


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="architecture summary, parameters and GFLOPs of a preset or run")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="run directory (CycleGAN or SR)")
    g.add_argument("--preset", help=f"preset name ({', '.join(preset_names(None))})")
    add_config_flags(p)
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _cyclegan(args: argparse.Namespace) -> dict[str, Any]:
    if args.run:
        models, cfg, _ = load_run_models(args.run, args.checkpoint)
    else:
        cfg = build_cyclegan_config(
            preset=args.preset, files=args.config, overrides=parse_set(args.overrides)
        )
        models = build_models(cfg)
    # A run imported from generator weights alone has no discriminator: describe the configured one.
    disc = models["D_A"] if "D_A" in models else build_models(cfg)["D_A"]
    info = describe(cfg.preset, cfg, models["G_A2B"], disc, n_pairs=2)
    m = cfg.model
    info["summary"] = (
        f"preset {cfg.preset}: generator {m.n_down} down/up ({m.upsample}), {m.n_residual} residual blocks, "
        f"width {m.hidden}, norm {m.norm}; total (2 G + 2 D) {info['total_params']:,} params"
    )
    return info


def _sr(args: argparse.Namespace) -> dict[str, Any]:
    if args.run:
        generator, cfg, _ = load_sr_generator(args.run, args.checkpoint)
    else:
        cfg = build_sr_config(preset=args.preset, files=args.config, overrides=parse_set(args.overrides))
        generator = SRResNet(cfg.model)
    info = describe(
        cfg.preset, cfg, generator, SRDiscriminator(cfg.disc), generator_input=256 // cfg.model.scale
    )
    m = cfg.model
    info["summary"] = (
        f"SR preset {cfg.preset}: x{m.scale} SRResNet, {m.n_residual} residual blocks, width {m.hidden}, "
        f"norm {m.norm}; generator + discriminator {info['total_params']:,} params"
    )
    return info


def run(args: argparse.Namespace) -> int:
    task = run_meta(args.run, args.checkpoint).get("task") if args.run else get_preset(args.preset).task
    info = _sr(args) if task == "sr" else _cyclegan(args)
    summary = info.pop("summary")
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(summary)
    print(
        f"  generator      {info['generator_params']:>12,} params  {info['generator_gflops_256']:8.2f} GFLOPs/256px"
    )
    print(
        f"  discriminator  {info['discriminator_params']:>12,} params  "
        f"{info['discriminator_gflops_256']:8.2f} GFLOPs/256px"
    )
    print(yaml.safe_dump(info["config"], sort_keys=False))
    return 0
