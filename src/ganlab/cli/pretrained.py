"""`ganlab pretrained`: list and fetch the reference CycleGAN's published generators."""

from __future__ import annotations

import argparse

from ganlab.cyclegan.pretrained import DEFAULT_BASE_URL, PRETRAINED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrained", help="list or download the reference CycleGAN's published generators")
    psub = p.add_subparsers(dest="pretrained_command", metavar="ACTION", required=True)
    ls = psub.add_parser("list", help="the names that `get` and `translate --pretrained` accept")
    ls.set_defaults(func=run_list)
    g = psub.add_parser(
        "get",
        help="download a generator by name (cached) and import it as a run",
        description="Known names: " + ", ".join(PRETRAINED),
    )
    g.add_argument("name", help="e.g. horse2zebra")
    g.add_argument("--out", help="run directory to create (default runs/NAME)")
    g.add_argument("--base-url", default=DEFAULT_BASE_URL, help="mirror to download from")
    g.set_defaults(func=run_get)


def run_list(args: argparse.Namespace) -> int:
    from ganlab.cyclegan.pretrained import cache_dir, cached_path

    for name in PRETRAINED:
        print(f"{name:24s} {'cached' if cached_path(name).is_file() else ''}".rstrip())
    print(f"(cache: {cache_dir() / 'pretrained'}; each is one generator, used as a2b)")
    return 0


def run_get(args: argparse.Namespace) -> int:
    from ganlab.cyclegan.pretrained import get_pretrained

    out = args.out or f"runs/{args.name}"
    get_pretrained(args.name, out, base_url=args.base_url)
    print(f"run ready in {out}: ganlab translate --run {out} INPUT... --out DIR")
    return 0
