"""`ganlab import`: reference CycleGAN weights (pytorch-CycleGAN-and-pix2pix) as a ganlab run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import pytorch-CycleGAN-and-pix2pix weights as a run directory",
        description=(
            "Import a generator file saved by pytorch-CycleGAN-and-pix2pix (its a2b direction; --b2a adds "
            "the reverse generator) or its checkpoints folder (latest_net_G_A.pth, latest_net_G_B.pth, "
            "latest_net_D_A.pth, latest_net_D_B.pth: a complete run that `ganlab train --resume` "
            "continues). The architecture is read from the tensors; files are loaded with "
            "torch.load(weights_only=True) only."
        ),
    )
    p.add_argument("source", metavar="FILE.pth|FOLDER", help="generator file or reference checkpoints folder")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--b2a", metavar="FILE.pth", help="generator for the b2a direction (with a single file)")
    p.add_argument(
        "--epoch", default="latest", help="which checkpoints of a folder: latest or an epoch number"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ganlab.cyclegan.reference import import_reference

    import_reference(args.source, args.out, b2a=args.b2a, epoch=args.epoch)
    return 0
