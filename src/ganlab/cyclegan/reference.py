"""The reference CycleGAN's weights (pytorch-CycleGAN-and-pix2pix) as ganlab networks and run directories.

Accepted sources:
- one generator file (``torch.save(netG.state_dict())``, e.g. a published ``horse2zebra.pth``): the a2b
  generator of the run; ``b2a`` may name a second file for the other direction (e.g. ``zebra2horse.pth``).
- a reference checkpoints folder: ``latest_net_G_A.pth`` (A -> B), ``latest_net_G_B.pth`` (B -> A) and,
  from a training run, ``latest_net_D_A.pth``, ``latest_net_D_B.pth`` (``EPOCH_net_*.pth`` with
  ``epoch``); or a test-only folder with ``latest_net_G.pth``.

Names: the reference's netD_A judges domain *B* (it is the paper's D_Y and scores G_A's fakes) and its
netD_B judges domain A, while ganlab's D_A judges domain A. So reference D_A -> ganlab D_B and
reference D_B -> ganlab D_A; the generators keep their roles (G_A -> G_A2B, G_B -> G_B2A).

An import with all four networks is a complete run: ``ganlab train --resume`` continues it with fresh
optimizer state (the reference does not save its optimizers) under the reference's recipe.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab.core.errors import CheckpointError, ConfigError
from ganlab.core.rundir import RunDir, progress_meta
from ganlab.core.torchfile import read_state_dict
from ganlab.cyclegan.config import CycleGANConfig, DataConfig, Phase, TrainConfig
from ganlab.cyclegan.pool import ImagePool
from ganlab.cyclegan.step import MODULE_NAMES, build_optimizers
from ganlab.models.discriminator import PatchGANConfig
from ganlab.models.generator import GeneratorConfig
from ganlab.models.reference import load_discriminator, load_generator
from ganlab.models.registry import preset_names

# ganlab module -> the reference's network name in ``{epoch}_net_{name}.pth``.
REFERENCE_NAMES = {"G_A2B": "G_A", "G_B2A": "G_B", "D_A": "D_B", "D_B": "D_A"}
SOURCE_FORMAT = "pytorch-CycleGAN-and-pix2pix"


def reference_config(model: GeneratorConfig, disc: PatchGANConfig | None = None) -> CycleGANConfig:
    """A run config for reference weights, with the reference's training recipe (100 epochs + 100 of
    linear decay, lr 2e-4 for G and D, one loss-weight phase: cycle 10, identity 0.5, adversarial 1;
    256 crops of 286 resizes; pool 50; LSGAN)."""
    preset = f"resnet{model.n_residual}"
    return CycleGANConfig(
        preset=preset if preset in preset_names("cyclegan") else "resnet9",
        model=model,
        disc=disc or PatchGANConfig(),
        data=DataConfig(size=256, load_size=286),
        train=TrainConfig(
            epochs=100,
            epochs_decay=100,
            disc_lr_coef=1.0,
            schedule=[Phase(start=1, identity=0.5, gan=1.0, cycle=10.0)],
            gan_loss="lsgan",
            pool_size=50,
        ),
    )


def _folder_files(folder: Path, epoch: str) -> dict[str, Path]:
    """ganlab module -> file of a reference checkpoints folder (only those present)."""
    found = {k: folder / f"{epoch}_net_{v}.pth" for k, v in REFERENCE_NAMES.items()}
    found = {k: p for k, p in found.items() if p.is_file()}
    single = folder / f"{epoch}_net_G.pth"  # the reference's test-only folders hold one generator
    if not found and single.is_file():
        return {"G_A2B": single}
    if "G_A2B" not in found:
        have = sorted(p.name for p in folder.glob("*_net_*.pth"))
        raise CheckpointError(
            f"{folder}: no {epoch}_net_G_A.pth (a reference CycleGAN checkpoints folder holds "
            f"{epoch}_net_G_A.pth, {epoch}_net_G_B.pth, {epoch}_net_D_A.pth, {epoch}_net_D_B.pth); "
            f"found: {', '.join(have) or 'no *_net_*.pth files'}"
            + ("; `ganlab import FOLDER --epoch N` takes N_net_*.pth" if have else "")
        )
    if ("D_A" in found) != ("D_B" in found):
        missing = next(k for k in ("D_A", "D_B") if k not in found)
        raise CheckpointError(f"{folder}: {epoch}_net_{REFERENCE_NAMES[missing]}.pth is missing")
    return found


def reference_files(
    source: str | Path, b2a: str | Path | None = None, epoch: str = "latest"
) -> dict[str, Path]:
    """ganlab module name -> reference .pth file for a file (plus ``b2a``) or a checkpoints folder."""
    source = Path(source)
    if source.is_dir():
        if b2a is not None:
            raise ConfigError("b2a: give a second generator file only with a single generator file")
        return _folder_files(source, epoch)
    if not source.is_file():
        raise CheckpointError(f"weights file or folder not found: {source}")
    files = {"G_A2B": source}
    if b2a is not None:
        files["G_B2A"] = Path(b2a)
    return files


def load_reference(files: dict[str, Path]) -> tuple[nn.ModuleDict, CycleGANConfig]:
    """The networks of :func:`reference_files` as ganlab modules (eval mode), and their run config."""
    models = nn.ModuleDict()
    for name, path in files.items():
        sd = read_state_dict(path)
        try:
            models[name] = load_generator(sd) if name.startswith("G_") else load_discriminator(sd)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
    g = models["G_A2B"].cfg
    if "G_B2A" in models and models["G_B2A"].cfg != g:
        raise CheckpointError(
            f"{files['G_A2B']} and {files['G_B2A']} are different architectures "
            f"({g} vs {models['G_B2A'].cfg}); a run's two generators share one"
        )
    disc = models["D_A"].cfg if "D_A" in models else None
    if disc is not None and models["D_B"].cfg != disc:
        raise CheckpointError(f"{files['D_A']} and {files['D_B']} are different discriminator architectures")
    return models.eval(), reference_config(g, disc)


def import_reference(
    source: str | Path,
    out: str | Path,
    b2a: str | Path | None = None,
    epoch: str = "latest",
    log: Callable[[str], object] = print,
) -> Path:
    """Write the reference weights at ``source`` as a ganlab run directory ``out``; return its checkpoint.

    With all four networks the checkpoint holds fresh optimizers and image pools too, so
    ``ganlab train --resume out`` continues training (from epoch 0 of ganlab's count)."""
    run = RunDir(Path(out))
    if run.has_checkpoint():
        raise ConfigError(f"{run.root} already holds a run; pick another --out")
    files = reference_files(source, b2a, epoch)
    models, cfg = load_reference(files)
    complete = set(models) == set(MODULE_NAMES)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    tensors: dict[str, torch.Tensor] = {}
    if complete:
        optimizers = build_optimizers(models, cfg.train)
        for i, k in enumerate(("D_A", "D_B")):  # as the trainer seeds them
            tensors.update(ImagePool(cfg.train.pool_size, seed=cfg.train.seed + i).state_tensors(f"pool/{k}"))
    meta = progress_meta("cyclegan", cfg, 0, 0, 0, 0.0)
    meta["imported"] = imported_meta(files)
    run.create()
    path = run.save(0, 0, dict(models), meta, optimizers, tensors)
    run.write_config(cfg)
    what = "a complete run (train --resume continues it)" if complete else f"{', '.join(models)} only"
    log(f"imported {SOURCE_FORMAT} weights from {source} into {run.root}: {what}")
    return path


def imported_meta(files: dict[str, Path]) -> dict[str, Any]:
    """What a run's checkpoint records about its origin."""
    return {"format": SOURCE_FORMAT, "files": {k: str(p.resolve()) for k, p in files.items()}}


def describe_missing(meta: dict[str, Any], run: str | Path) -> str:
    """Why a run lacks some networks, for error messages (empty when it has all four)."""
    have = meta.get("modules", MODULE_NAMES)
    missing = [m for m in MODULE_NAMES if m not in have]
    if not missing:
        return ""
    origin = meta.get("imported", {}).get("files", {})
    src = f" (imported from {', '.join(sorted(set(origin.values())))})" if origin else ""
    return f"{run} holds only {', '.join(m for m in MODULE_NAMES if m in have)}{src}"
