"""Atomic safetensors checkpoints with exact resume state.

One file per checkpoint: every tensor (model weights under ``model/<name>/``, optimizer moments under
``optim/<name>/``, RNG states and extras under their own prefixes) in safetensors format, and everything
else (config, epoch, step, optimizer hyper-parameters) as JSON in the file's metadata. Loading never
unpickles anything. Files are written to a temporary name, fsynced, then renamed, so a crash leaves either
the old checkpoint or the new one, never half of one. A SHA-256 of the metadata and of every tensor
(name, dtype, shape, bytes) is stored beside the metadata and checked on every load, so a truncated or
bit-flipped file is reported as damaged instead of being trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ganlab.core.errors import CheckpointError, StorageError
from ganlab.core.storage import fsync_dir, write_reason

# 2: a checksum of metadata and tensors is stored under CHECKSUM_KEY (version 1 files have none).
FORMAT_VERSION = 2
CHECKSUM_KEY = "ganlab_sha256"
# Fault injection for the tests and benchmarks/killtest.py, between writing the temporary file and renaming
# it: "kill:N" SIGKILLs this process at its N-th save, "torn:N" first cuts the temporary file in half,
# "sleep:S" pauses S seconds at every save.
TEST_HOOK_ENV = "GANLAB_TEST_CHECKPOINT_HOOK"
_saves_by_this_process = 0


@dataclass
class Checkpoint:
    """What a checkpoint file holds: tensors by key and the JSON metadata."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        p = prefix.rstrip("/") + "/"
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}


def _optimizer_to_flat(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{name}/{pid}/{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(name: str, ckpt: Checkpoint, opt: torch.optim.Optimizer) -> None:
    info = ckpt.meta.get("optimizers", {}).get(name)
    if info is None:
        raise CheckpointError(f"checkpoint has no state for optimizer {name!r}")
    state: dict[int, dict[str, Any]] = {}
    for key, v in ckpt.section(f"optim/{name}").items():
        pid, k = key.split("/", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, sc in info["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    groups = info["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"optimizer {name!r} does not fit the checkpoint: {e}") from None


def rng_state_tensors() -> dict[str, torch.Tensor]:
    out = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda/{i}"] = s
    return out


def restore_rng(ckpt: Checkpoint) -> None:
    if "rng/torch" in ckpt.tensors:
        torch.set_rng_state(ckpt.tensors["rng/torch"])
    cuda = ckpt.section("rng/cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(len(cuda))])


def save_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    meta: dict[str, Any],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    with_rng: bool = True,
) -> Path:
    """Write modules, optimizers, extra tensors, RNG state and JSON meta atomically to ``path``."""
    path = Path(path)
    flat: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            flat[f"model/{name}/{k}"] = v
    opt_meta: dict[str, Any] = {}
    for name, opt in (optimizers or {}).items():
        t, info = _optimizer_to_flat(name, opt)
        flat.update(t)
        opt_meta[name] = info
    flat.update(tensors or {})
    if with_rng:
        flat.update(rng_state_tensors())
    # safetensors wants contiguous CPU tensors that share no storage.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in flat.items()}
    full_meta = dict(meta, format_version=FORMAT_VERSION, optimizers=opt_meta, modules=sorted(modules))
    raw = json.dumps(full_meta)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(flat, str(tmp), metadata={"ganlab": raw, CHECKSUM_KEY: checksum(raw, flat)})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _test_hook(tmp)
        tmp.replace(path)
        fsync_dir(path.parent)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as its own error type
        raise StorageError(f"cannot write checkpoint {path}: {write_reason(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def checksum(meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the metadata JSON and of every tensor's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.sha256(meta_json.encode())
    for k in sorted(tensors):
        t = tensors[k]
        h.update(f"\0{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _test_hook(tmp: Path) -> None:
    spec = os.environ.get(TEST_HOOK_ENV)
    if not spec:
        return
    global _saves_by_this_process
    _saves_by_this_process += 1
    mode, _, arg = spec.partition(":")
    if mode == "sleep":
        time.sleep(float(arg))
    elif mode in ("kill", "torn") and _saves_by_this_process == int(arg):
        if mode == "torn":
            os.truncate(tmp, tmp.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint (tensors on CPU) and check it against its checksum. Never unpickles."""
    path = Path(path)
    stored = _stored_metadata(path)
    meta = _parse_meta(path, stored)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    want = stored.get(CHECKSUM_KEY)
    if want is None and meta.get("format_version", 1) >= 2:
        raise CheckpointError(f"{path}: damaged checkpoint (its checksum is missing)")
    if want is not None and checksum(stored["ganlab"], tensors) != want:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch: truncated or altered)")
    return Checkpoint(tensors=tensors, meta=meta, path=path)


def read_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's ganlab metadata without reading its tensors (cheap: a sweep checks every run; the
    checksum needs the tensors, so only :func:`load_checkpoint` verifies it)."""
    path = Path(path)
    return _parse_meta(path, _stored_metadata(path))


def _stored_metadata(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None


def _parse_meta(path: Path, stored: dict[str, str]) -> dict[str, Any]:
    raw = stored.get("ganlab")
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file without ganlab metadata (not a ganlab checkpoint)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged ganlab metadata ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged ganlab metadata (not a JSON object)")
    return meta


def load_module_state(ckpt: Checkpoint, name: str, module: nn.Module) -> None:
    """Load ``model/<name>/*`` into ``module``; a mismatch names the first offending tensor and shapes."""
    state = ckpt.section(f"model/{name}")
    if not state:
        raise CheckpointError(
            f"checkpoint has no weights for {name!r} (it has: {', '.join(ckpt.meta.get('modules', []))})"
        )
    own = module.state_dict()
    for k, v in own.items():
        if k not in state:
            raise CheckpointError(
                f"{name}: tensor {k} (shape {tuple(v.shape)}) is missing from the checkpoint"
            )
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{name}: tensor {k} has shape {tuple(state[k].shape)} in the checkpoint but "
                f"{tuple(v.shape)} in the model (different architecture?)"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(
            f"{name}: checkpoint tensor {extra[0]} (shape {tuple(state[extra[0]].shape)}) "
            "does not exist in the model (different architecture?)"
        )
    module.load_state_dict(state)


def restore(
    ckpt: Checkpoint,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: bool = True,
) -> None:
    """Load every module and optimizer, then the RNG states: the exact state at save time."""
    for name, m in modules.items():
        load_module_state(ckpt, name, m)
    for name, opt in (optimizers or {}).items():
        _optimizer_from_flat(name, ckpt, opt)
    if rng:
        restore_rng(ckpt)
