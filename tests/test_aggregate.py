"""Configurations from seeds, their intervals and the noise marks, on made-up per-tile scores whose answer
is known; and the compute side of an equal-compute comparison (budget -> steps, score-vs-compute data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ganlab.core.stats import t_interval, t_quantile, welch_interval
from ganlab.experiments import aggregate as A
from ganlab.experiments import compute

N_TILES = 48
NAMES = [f"{i:03d}.png" for i in range(N_TILES)]


def make_runs(
    rng: np.random.Generator,
    config: str,
    gain: float,
    difficulty: np.ndarray,
    seeds: int = 3,
    seed_sd: float = 0.05,
    tile_sd: float = 0.1,
) -> list[A.RunScores]:
    """``seeds`` runs of one configuration: each tile scores its difficulty + the configuration's gain +
    a per-seed offset (training noise) + per-tile noise."""
    identity = dict(zip(NAMES, map(float, difficulty)))
    runs = []
    for s in range(seeds):
        scores = difficulty + gain + rng.normal(0, seed_sd) + rng.normal(0, tile_sd, N_TILES)
        tiles = dict(zip(NAMES, map(float, scores)))
        compute_cols = {"steps": 100, "images_seen": 400, "train_gflops": 50.0}
        runs.append(
            A.RunScores(f"{config},seed={s}", config, s, float(scores.mean()), tiles, identity, compute_cols)
        )
    return runs


@pytest.fixture
def difficulty() -> np.ndarray:
    # Tiles differ far more from each other than the configurations do: only pairing can see the gains.
    return np.random.default_rng(0).normal(19.0, 2.0, N_TILES)


def by_config(summaries: list[A.ConfigSummary]) -> dict[str, A.ConfigSummary]:
    return {s.config: s for s in summaries}


def test_a_clearly_better_configuration_is_marked_and_twins_are_indistinguishable(difficulty) -> None:
    rng = np.random.default_rng(1)
    runs = make_runs(rng, "good", 1.0, difficulty)
    runs += make_runs(rng, "twin_a", 0.3, difficulty) + make_runs(rng, "twin_b", 0.3, difficulty)
    runs += make_runs(rng, "useless", 0.0, difficulty)
    s = by_config(A.summarize(runs))
    assert s["good"].is_best and [x.config for x in A.summarize(runs)][0] == "good"
    for name in ("twin_a", "twin_b", "useless"):
        assert s[name].vs_best is not None and s[name].vs_best.verdict == "worse", name
    assert s["good"].vs_identity.verdict == "better"
    assert s["useless"].vs_identity.verdict == "indistinguishable"  # gain 0: noise around the identity
    # The twins against each other (drawn alike): the better of the two is best, the other is noise.
    twins = by_config(A.summarize([r for r in runs if r.config.startswith("twin")]))
    loser = next(x for x in twins.values() if not x.is_best)
    assert loser.vs_best.verdict == "indistinguishable"


def test_mean_and_intervals(difficulty) -> None:
    runs = make_runs(np.random.default_rng(2), "c", 0.5, difficulty)
    (s,) = A.summarize(runs)
    values = [r.value for r in runs]
    assert s.mean == pytest.approx(np.mean(values)) and len(s.runs) == 3 and s.n_tiles == N_TILES
    half = 4.303 * np.std(values, ddof=1) / math.sqrt(3)  # t(0.975, 2 df) from any t table
    assert s.seed_ci.low == pytest.approx(s.mean - half, rel=1e-3)
    assert s.seed_ci.high == pytest.approx(s.mean + half, rel=1e-3)
    assert s.tile_ci.low < s.mean < s.tile_ci.high
    assert s.compute == {"steps": 100.0, "images_seen": 400.0, "train_gflops": 50.0}
    row = A.summary_rows([s], "gt_psnr")[0]
    assert row["best_verdict"] == "best" and row["seed_ci"].startswith("[") and row["images_seen"] == "400"


def test_seed_noise_cannot_make_a_verdict(difficulty) -> None:
    """Tiles alone would call this gain real; its seeds scatter too much for it to be told from chance."""
    rng = np.random.default_rng(3)
    runs = make_runs(rng, "noisy", 0.3, difficulty, seeds=3, seed_sd=1.0, tile_sd=0.05)
    (s,) = A.summarize(runs)
    c = s.vs_identity
    assert c.tiles.low > 0 or c.tiles.high < 0  # the paired tile test alone is sure...
    assert c.seeds.low < 0 < c.seeds.high  # ...the seeds are not
    assert c.verdict == "indistinguishable"


def test_one_seed_verdict_says_so(difficulty) -> None:
    rng = np.random.default_rng(4)
    runs = make_runs(rng, "a", 1.0, difficulty, seeds=1) + make_runs(rng, "b", 0.0, difficulty, seeds=1)
    s = by_config(A.summarize(runs))
    assert s["a"].seed_ci is None and s["b"].vs_best.seeds is None
    assert s["b"].vs_best.verdict == "worse (1 seed)" and s["a"].vs_identity.verdict == "better (1 seed)"
    assert A.summary_rows([s["a"]], "gt_psnr")[0]["seed_ci"] == "1 seed"


def test_configurations_group_by_config_without_the_seed() -> None:
    cfg = {"model": {"hidden": 8}, "train": {"seed": 0, "device": "cpu", "lr": 2e-4}}
    other_seed = {"model": {"hidden": 8}, "train": {"seed": 1, "device": "cuda", "lr": 2e-4}}
    other_lr = {"model": {"hidden": 8}, "train": {"seed": 0, "device": "cpu", "lr": 1e-4}}
    assert A.config_key(cfg) == A.config_key(other_seed) != A.config_key(other_lr)
    assert A.config_label(["n_down=1,seed=0", "n_down=1,seed=1"]) == "n_down=1"
    assert A.config_label(["seed=0", "seed=2"]) == "base"
    assert A.config_label(["x", "y"]) == "x (+1)"


def test_t_quantiles_and_intervals() -> None:
    for df, q in ((1, 12.706), (2, 4.303), (4, 2.776), (30, 2.042)):  # a printed t table
        assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)
    assert t_quantile(0.025, 3) == pytest.approx(-t_quantile(0.975, 3))
    assert t_interval([1.0]) is None and welch_interval([1.0, 2.0], [3.0]) is None
    iv = welch_interval([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert iv.mean == 0 and iv.low < 0 < iv.high
    assert welch_interval([5.0, 5.1, 5.2], [1.0, 1.1, 1.2]).verdict == "better"


def test_gflop_budget_to_steps() -> None:
    assert compute.steps_for_gflops(10.0, 3.0) == 3  # rounded down: no run spends more than the budget
    assert compute.steps_for_gflops(0.3, 0.1) == 3  # float division must not lose the last whole step
    with pytest.raises(ValueError, match="less than one training step"):
        compute.steps_for_gflops(2.0, 3.0)


def test_score_vs_compute_data() -> None:
    # Two seeds of one configuration at 2 GFLOPs per step; the second seed stopped after epoch 1.
    seed0 = [
        {"type": "epoch", "epoch": 1, "step": 10, "eval_gt_psnr": 18.0},
        {"type": "epoch", "epoch": 2, "step": 20, "eval_gt_psnr": 19.0},
    ]
    seed1 = [{"type": "epoch", "epoch": 1, "step": 10, "eval_gt_psnr": 17.0}, {"type": "epoch", "epoch": 2}]
    p0, p1 = (compute.epoch_points(r, "eval_gt_psnr", 2.0) for r in (seed0, seed1))
    assert p0 == [(20.0, 18.0, 1), (40.0, 19.0, 2)] and p1 == [(20.0, 17.0, 1)]
    assert compute.config_curve([p0, p1]) == [(20.0, 17.5, 2), (40.0, 19.0, 1)]
    assert compute.spent(20, 4, 2.0) == {"steps": 20, "images_seen": 80, "train_gflops": 40.0}
    fig = compute.plot_score_vs_compute(
        {"c": compute.config_curve([p0, p1])}, {"c": [(40.0, 19.2)]}, "gt_psnr", 18.5
    )
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training GFLOPs" and len(ax.lines) == 3  # curve, run points, identity
