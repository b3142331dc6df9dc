"""The paired bootstrap on made-up scores whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from ganlab.core.stats import paired_bootstrap


def test_a_real_gain_is_found_and_bracketed() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(19.0, 2.0, size=48)  # tiles differ a lot from each other...
    model = base + 0.3 + rng.normal(0, 0.1, size=48)  # ...but the model gains 0.3 dB on each
    iv = paired_bootstrap(model, base)
    assert iv.verdict == "better" and iv.low < 0.3 < iv.high and iv.n == 48
    assert paired_bootstrap(base, model).verdict == "worse"


def test_noise_is_undecided() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(19.0, 2.0, size=48)
    twin = base + rng.normal(0.0005, 0.05, size=48)  # the identity with float noise
    assert paired_bootstrap(twin, base).verdict == "undecided"


def test_deterministic_and_checked() -> None:
    a, b = [1.0, 2.0, 3.5], [1.1, 1.9, 3.0]
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([1.0, 2.0], [1.0])
    iv = paired_bootstrap([1.0, float("nan"), 2.0], [0.0, 0.0, 1.0])
    assert iv.n == 2 and iv.mean == pytest.approx(1.0)
