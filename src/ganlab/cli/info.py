"""`ganlab info`: architecture summary, parameter counts, GFLOPs, config."""

from __future__ import annotations

import argparse
import json

from ganlab.cli.flags import add_config_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="architecture summary, parameters and GFLOPs of a preset or run")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="run directory")
    g.add_argument("--preset", help="preset name")
    add_config_flags(p)
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def describe(cfg, models) -> dict:
    from ganlab.core.config import to_dict
    from ganlab.core.cost import count_params, gflops

    g, d = models["G_A2B"], models["D_A"]
    return {
        "preset": cfg.preset,
        "generator": to_dict(cfg.model),
        "discriminator": to_dict(cfg.disc),
        "generator_params": count_params(g),
        "discriminator_params": count_params(d),
        "total_params": sum(count_params(m) for m in models.values()),
        "generator_gflops_256": gflops(g, 256),
        "discriminator_gflops_256": gflops(d, 256),
        "config": to_dict(cfg),
    }


def run(args: argparse.Namespace) -> int:
    from ganlab.core.config import parse_set
    from ganlab.cyclegan.config import build_cyclegan_config

    if args.run:
        from ganlab.cyclegan.translate import load_run_models

        models, cfg, meta = load_run_models(args.run, args.checkpoint)
    else:
        from ganlab.cyclegan.step import build_models

        cfg = build_cyclegan_config(
            preset=args.preset, files=args.config, overrides=parse_set(args.overrides)
        )
        models = build_models(cfg)
    info = describe(cfg, models)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["generator"]
    print(
        f"preset {info['preset']}: generator {m['n_down']} down/up ({m['upsample']}), {m['n_residual']} residual "
        f"blocks, width {m['hidden']}, norm {m['norm']}"
    )
    print(
        f"  generator      {info['generator_params']:>12,} params  {info['generator_gflops_256']:8.2f} GFLOPs/256px"
    )
    print(
        f"  discriminator  {info['discriminator_params']:>12,} params  "
        f"{info['discriminator_gflops_256']:8.2f} GFLOPs/256px"
    )
    print(f"  total (2 G + 2 D) {info['total_params']:,} params")
    import yaml

    print(yaml.safe_dump(info["config"], sort_keys=False))
    return 0
