"""Data-parallel training (ganlab.core.distributed): the plan split, per-rank checkpoint state, and the
semantics of a real 2-process gloo run on CPU.

The multi-process part runs once per module: two processes are spawned, each with the environment torchrun
would give it, and go through a list of scenarios (one process group each) while this process trains the
single-process references. The tests below then compare what both wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ganlab.cli import main
from ganlab.core import distributed
from ganlab.core.checkpoint import Checkpoint
from ganlab.core.rundir import read_metrics
from ganlab.core.sync_bn import SyncBatchNorm2d, convert_sync_batchnorm
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.step import build_models
from ganlab.sr.data import SRImage, SRPatchSampler

from .conftest import TINY, make_dataset
from .test_sr_train import _photo, tiny_args

# fp32 (bf16 rounding differs between a batch of 4 and two of 2), one thread per process (2 cores).
COMMON = [*TINY, "--precision", "fp32", "--set", "train.threads=1", "--set", "train.log_every=1"]
COMMON += ["--set", "train.eval_images=0"]  # the per-epoch evaluation runs in one scenario (straight)
EQUIV = ["--set", "train.pool_size=0", "--epochs", "1", "--set", "train.max_steps_per_epoch=5"]
RECIPE = ["--set", "train.augment=[color, translation]"]  # per-rank random streams and pools matter
SR = ["--precision", "fp32", "--set", "train.steps_per_epoch=5", "--set", "train.threads=1"]
SR += ["--set", "data.eval_images=0"]
SRGAN = ["--stage", "gan", "--sync-bn", "--epochs", "1"]  # the discriminator has batch norm


# ------------------------------------------------------------------------------ single-process parts


@pytest.mark.parametrize("n,batch,world", [(7, 2, 2), (6, 2, 2), (5, 3, 2), (9, 1, 3), (4, 4, 2), (7, 3, 1)])
def test_shard_splits_each_global_step_evenly_and_covers_the_plan(n: int, batch: int, world: int) -> None:
    parts = [distributed.shard(n, batch, r, world) for r in range(world)]
    steps = -(-n // (batch * world))
    assert all(len(p) == steps for p in parts)
    for s in range(steps):
        sizes = {len(p[s]) for p in parts}
        assert len(sizes) == 1 and 1 <= sizes.pop() <= batch  # every rank the same share, never empty
    seen = [i for s in range(steps) for p in parts for i in p[s]]
    assert set(seen) == set(range(n)) and len(seen) - n < world  # all items; padding below one per rank
    if world == 1:  # one process: plain batching of the plan
        assert parts[0] == [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]


def test_sr_sampler_shares_of_a_global_batch() -> None:
    rng = np.random.default_rng(3)
    ims = [
        SRImage(f"{i}", torch.from_numpy(rng.integers(0, 256, (3, 30, 41), dtype=np.uint8))) for i in range(3)
    ]
    s = SRPatchSampler(ims, scale=2, size=12, seed=5, candidates=2)
    lr, hr = s.batch(1, 4, 6)
    for r in range(3):
        lr_r, hr_r = s.batch(1, 4, 2, (r, 3))
        assert torch.equal(lr_r, lr[2 * r : 2 * r + 2]) and torch.equal(hr_r, hr[2 * r : 2 * r + 2])


def test_rank_view_of_a_two_process_checkpoint_in_one_process() -> None:
    t = {
        "model/G/w": torch.ones(2),
        "optim/G/0/exp_avg": torch.zeros(2),
        "rng/torch": torch.arange(8, dtype=torch.uint8),
        "pool/D_A/rng": torch.zeros(3, dtype=torch.uint8),
        "rank1/rng/torch": torch.ones(8, dtype=torch.uint8),
        "rank1/pool/D_A/rng": torch.ones(3, dtype=torch.uint8),
    }
    meta = {"world_size": 2, "step_in_epoch": 3, "epoch_sums": {"G": 6.0}}
    view, seed = distributed.rank_view(Checkpoint(t, meta), log=lambda line: None)
    assert view is not None and seed is not None  # a different world size: streams re-seeded
    assert set(view.tensors) == {"model/G/w", "optim/G/0/exp_avg", "rng/torch", "pool/D_A/rng"}
    # 3 steps of a global batch twice as large: the same samples are 6 steps of one process.
    assert view.meta["step_in_epoch"] == 6 and view.meta["epoch_sums"] == {"G": 12.0}
    again, seed2 = distributed.rank_view(Checkpoint(t, meta), log=lambda line: None)
    assert seed2 == seed  # deterministic
    same, none = distributed.rank_view(Checkpoint(t, dict(meta, world_size=1)), log=lambda line: None)
    assert none is None and same is not None and same.meta["step_in_epoch"] == 3


def test_sync_batchnorm_shares_parameters_and_is_batchnorm_in_one_process() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    ref = [net[1].weight, net[1].running_mean]
    x = torch.randn(3, 3, 8, 8)
    expected = net(x)
    net[1].running_mean.zero_(), net[1].running_var.fill_(1), net[1].num_batches_tracked.zero_()
    net[2][0].running_mean.zero_(), net[2][0].running_var.fill_(1), net[2][0].num_batches_tracked.zero_()
    assert convert_sync_batchnorm(net) is net
    assert isinstance(net[1], SyncBatchNorm2d) and isinstance(net[2][0], SyncBatchNorm2d)
    assert net[1].weight is ref[0] and net[1].running_mean is ref[1]  # optimizers and checkpoints still fit
    assert torch.equal(net(x), expected)


# --------------------------------------------------------------------------------- the 2-process run


def _free_ports(n: int) -> list[int]:
    """n ports free now, below Linux's ephemeral range (32768-60999): a port the OS handed out (port 0)
    could be handed out again to a client socket of an earlier scenario before the scenario that was
    given it listens on it (EADDRINUSE, seen once)."""
    rng = np.random.default_rng()
    ports: list[int] = []
    while len(ports) < n:
        port = int(rng.integers(20000, 32000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def _worker(rank: int, root: str, ports: list[int], scenarios: list[tuple[str, list[str]]]) -> None:
    """One of the two processes: the environment torchrun gives, then each scenario as a CLI call."""
    from ganlab.core.loop import TrainLoop
    from ganlab.cyclegan.trainer import CycleGANTask

    out = open(Path(root) / f"rank{rank}.log", "w")  # noqa: SIM115 (open for the whole process)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    results: dict[str, Any] = {}
    name = ""
    fit, step = TrainLoop.fit, CycleGANTask.step

    def record_fit(self: Any) -> Any:
        res = fit(self)
        results[name] = {"step": res.global_step, "stopped": res.stopped}
        return res

    def interrupting_step(self: Any, batch: Any, progress: float, global_step: int) -> Any:
        losses = step(self, batch, progress, global_step)
        if name == "ctrlc" and rank == 1 and global_step == 2:  # Ctrl-C reaches rank 1 in step 3
            os.kill(os.getpid(), signal.SIGINT)
        return losses

    TrainLoop.fit, CycleGANTask.step = record_fit, interrupting_step
    for (name, argv), port in zip(scenarios, ports):
        os.environ["MASTER_PORT"] = str(port)
        print(f"=== {name}", flush=True)
        rc = main(argv)
        results.setdefault(name, {})["rc"] = rc
        if name == "budget" and rank == 0:  # keep the mid-epoch checkpoint for a 1-process resume too
            shutil.copytree(Path(root) / "mid", Path(root) / "mid21")
    (Path(root) / f"rank{rank}.json").write_text(json.dumps(results))


def _noise_dataset(root: Path, n: int = 20) -> Path:
    """Random-pixel images. On the smooth pictures of conftest the float32 rounding of any change of
    summation order (even 1 vs 2 threads in one process) grows to ~2e-4 in 5 Adam steps, so 1e-5 could
    not tell a correct all-reduce from a thread change there; on random pixels that floor stays ~1e-7."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 2)):
        for dom in ("A", "B"):
            (root / f"{split}{dom}").mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                    root / f"{split}{dom}" / f"{i:03d}.png"
                )
    return root


def _scenarios(root: Path, data: Path, data20: Path, sr: tuple[Path, Path]) -> list[tuple[str, list[str]]]:
    def cg(out: str, d: Path, *extra: str) -> list[str]:
        return ["train", "--data", str(d), "--preset", "model2", "--out", str(root / out), *COMMON, *extra]

    sr_args = tiny_args(*sr) + SR
    return [
        ("equiv", cg("eq2", data20, *EQUIV)),
        ("syncbn", cg("bn2", data20, *EQUIV, "--set", "disc.norm=batch", "--sync-bn")),
        ("nosync", cg("nosync2", data20, *EQUIV, "--set", "disc.norm=batch")),
        ("straight", cg("straight", data, *RECIPE, "--epochs", "2", "--set", "train.eval_images=2")),
        (
            "budget",
            cg("mid", data, *RECIPE, "--epochs", "2", "--minutes", "0.00001", "--set", "train.eval_images=2"),
        ),
        ("resume22", ["train", "--resume", str(root / "mid"), "--minutes", "10", "--quiet"]),
        ("resume12", ["train", "--resume", str(root / "one"), "--epochs", "2", "--quiet"]),
        ("ctrlc", cg("ctrlc", data, *RECIPE, "--epochs", "3")),
        ("sr", ["sr", "train", *sr_args, "--epochs", "1", "--out", str(root / "sr2")]),
        ("srgan", ["sr", "train", *sr_args, *SRGAN, "--out", str(root / "srgan2")]),
    ]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the scenarios in 2 spawned processes while the single-process references train here."""
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("ddp")
    data, data20 = make_dataset(root / "data6"), _noise_dataset(root / "noise20")
    sr_root = root / "srdata"
    rng = np.random.default_rng(0)
    for folder, n in (("hr", 3), ("test", 2)):
        (sr_root / folder).mkdir(parents=True)
        for i in range(n):
            _photo(rng, 40, 48).save(sr_root / folder / f"img{i}.png")
    sr = (sr_root / "hr", sr_root / "test")
    one = ["train", "--data", str(data), "--preset", "model2", *COMMON, *RECIPE]
    assert main([*one, "--epochs", "1", "--out", str(root / "one")]) == 0  # resumed by 2 processes
    scenarios = _scenarios(root, data, data20, sr)
    ctx = mp.start_processes(
        _worker,
        args=(str(root), _free_ports(len(scenarios)), scenarios),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    refs = {"eq1": EQUIV, "bn1": [*EQUIV, "--set", "disc.norm=batch"]}
    for out, extra in refs.items():
        argv = ["train", "--data", str(data20), "--preset", "model2", "--out", str(root / out), *COMMON]
        assert main([*argv, *extra, "--batch-size", "4"]) == 0
    sr1 = [*tiny_args(*sr), *SR, "--batch-size", "4"]
    assert main(["sr", "train", *sr1, "--epochs", "1", "--out", str(root / "sr1")]) == 0
    assert main(["sr", "train", *sr1, *SRGAN, "--out", str(root / "srgan1")]) == 0
    while not ctx.join():
        pass
    logs = [(root / f"rank{r}.log").read_text() for r in range(2)]
    results = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    return {"root": root, "logs": logs, "results": results}


def _weights(run: Path, name: str = "epoch_0001") -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"{name}.safetensors")


def _inert_biases() -> set[str]:
    """Biases of convolutions followed by an affine-free instance norm: the norm subtracts them again, so
    their gradient is zero up to rounding, and Adam turns that noise into +-lr steps that differ with any
    change of summation order. They do not change any output; every other weight is compared."""
    cfg = build_cyclegan_config(
        "model2", overrides={"model": {"hidden": 8}, "disc": {"hidden": 8, "n_layers": 2}}
    )
    out = set()
    for mname, mod in build_models(cfg).named_modules():
        kids = list(mod.named_children())
        for (n1, a), (_, b) in zip(kids, kids[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.InstanceNorm2d) and not b.affine:
                net, _, rest = f"{mname}.{n1}.bias".partition(".")
                out.add(f"model/{net}/{rest}")
    return out


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], skip: set[str] = frozenset()) -> float:
    keys = [k for k in a if k.startswith("model/") and k not in skip]
    assert keys and all(k in b for k in keys)
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


def test_all_scenarios_ran_on_both_ranks(ddp: dict[str, Any]) -> None:
    for r, res in enumerate(ddp["results"]):
        failed = {k: v for k, v in res.items() if v.get("rc") != 0}
        assert not failed, (r, failed, ddp["logs"][r][-2000:])


def test_two_processes_of_batch_2_equal_one_of_batch_4(ddp: dict[str, Any]) -> None:
    root, inert = ddp["root"], _inert_biases()
    assert len(inert) >= 4
    two, one = _weights(root / "eq2"), _weights(root / "eq1")
    assert _max_diff(two, one, inert) < 1e-5
    # The logged losses are every process's mean, i.e. the losses of the whole batch of 4.
    s2, s1 = read_metrics(root / "eq2", "step"), read_metrics(root / "eq1", "step")
    assert [r["step"] for r in s2] == [r["step"] for r in s1] == [1, 2, 3, 4, 5]
    for a, b in zip(s2, s1):
        assert abs(a["G_total"] - b["G_total"]) < 1e-5 and abs(a["D_A"] - b["D_A"]) < 1e-5


def test_sync_bn_makes_batch_norm_match_the_global_batch(ddp: dict[str, Any]) -> None:
    root, inert = ddp["root"], _inert_biases()
    one = _weights(root / "bn1")
    assert any("running_mean" in k for k in one)
    assert _max_diff(_weights(root / "bn2"), one, inert) < 1e-5  # weights and running statistics
    assert _max_diff(_weights(root / "nosync2"), one, inert) > 1e-4  # per-process statistics differ
    sr1, sr2 = _weights(ddp["root"] / "sr1"), _weights(ddp["root"] / "sr2")
    assert _max_diff(sr2, sr1) < 1e-5  # SR: the same holds
    # The GAN stage: a discriminator with synchronous batch norm, frozen while the generator learns.
    assert _max_diff(_weights(ddp["root"] / "srgan2"), _weights(ddp["root"] / "srgan1")) < 1e-4


def test_only_rank_0_writes_and_logs(ddp: dict[str, Any]) -> None:
    root, (log0, log1) = ddp["root"], ddp["logs"]
    assert "global batch 4" in log0 and log0.count(f"out: {root / 'eq2'}") == 1
    assert "training" not in log1 and "epoch 1" not in log1  # rank 1 prints nothing of its own
    records = read_metrics(root / "straight")
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4]  # one writer: no record twice
    epochs = [r for r in records if r["type"] == "epoch"]
    assert len(epochs) == 2 and all("eval_cycle_psnr" in r for r in epochs)  # rank 0 evaluated
    assert sorted(p.name for p in (root / "straight" / "samples").iterdir()) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]


def test_per_rank_state_is_saved_and_a_mid_epoch_stop_resumes_exactly(ddp: dict[str, Any]) -> None:
    root, results = ddp["root"], ddp["results"]
    assert [r["budget"]["step"] for r in results] == [1, 1]  # rank 0's clock stopped both after step 1
    assert all(r["budget"]["stopped"] == "budget" for r in results)
    a, b = _weights(root / "straight", "epoch_0002"), _weights(root / "mid", "epoch_0002")
    assert "rank1/pool/D_A/images" in a and "rank1/rng/torch" in a and "pool/D_A/images" in a
    assert not torch.equal(a["rank1/rng/torch"], a["rng/torch"])  # each process its own streams
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert a.keys() == b.keys() and not different, different[:5]
    assert (root / "mid" / "checkpoints" / "epoch_0001_step000001.safetensors").is_file()


def test_resume_with_another_number_of_processes(ddp: dict[str, Any]) -> None:
    root = ddp["root"]
    # 1 -> 2: a 1-process run (3 steps per epoch of batch 2) goes on with a global batch of 4.
    assert "resuming a 1-process checkpoint with 2 process(es)" in ddp["logs"][0]
    epochs = read_metrics(root / "one", "epoch")
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 3), (2, 5)]
    # 2 -> 1: the mid-epoch checkpoint (1 step of 4 images) goes on as step 2 of batch 2.
    assert main(["train", "--resume", str(root / "mid21"), "--minutes", "10", "--quiet"]) == 0
    steps = [r["step"] for r in read_metrics(root / "mid21", "step")]
    assert steps[0] == 1 and steps[1:] == [2, 3, 4, 5]  # the global step goes on from 1
    assert [r["step"] for r in read_metrics(root / "mid21", "epoch")] == [2, 5]


def test_ctrl_c_on_one_rank_stops_both_after_the_same_step(ddp: dict[str, Any]) -> None:
    root, results = ddp["root"], ddp["results"]
    assert [(r["ctrlc"]["step"], r["ctrlc"]["stopped"]) for r in results] == [(3, "interrupted")] * 2
    latest = json.loads((root / "ctrlc" / "checkpoints" / "latest.json").read_text())
    assert (latest["epoch"], latest["step_in_epoch"]) == (1, 1)
