from __future__ import annotations

import pytest

from ganlab.core.config import ConfigError, parse_set
from ganlab.cyclegan.config import build_cyclegan_config
from ganlab.cyclegan.schedule import lr_factor, phase_at, phase_boundaries


def test_precedence_defaults_preset_yaml_set(tmp_path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("preset: model1\nmodel:\n  hidden: 32\ntrain:\n  lr: 0.001\n  batch_size: 4\n")
    cfg = build_cyclegan_config(
        files=[f], overrides=parse_set(["train.lr=5e-4", "model.upsample=resize_conv"])
    )
    assert cfg.preset == "model1" and cfg.model.n_residual == 9  # from the preset
    assert cfg.model.hidden == 32  # file wins over preset
    assert cfg.train.lr == 5e-4 and cfg.train.batch_size == 4  # --set wins over file
    assert cfg.model.upsample == "resize_conv"


def test_unknown_key_names_key_and_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"train\.lrr.*valid keys in train: epochs"):
        build_cyclegan_config(overrides=parse_set(["train.lrr=1"]))
    with pytest.raises(ConfigError, match=r"unknown config key bogus"):
        build_cyclegan_config(overrides={"bogus": 1})


def test_invalid_values_are_named() -> None:
    with pytest.raises(ConfigError, match=r"model\.upsample.*valid values: pixelshuffle"):
        build_cyclegan_config(overrides=parse_set(["model.upsample=bilinear"]))
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected an integer"):
        build_cyclegan_config(overrides=parse_set(["train.batch_size=two"]))
    with pytest.raises(ConfigError, match="batch_size: must be >= 1"):
        build_cyclegan_config(overrides=parse_set(["train.batch_size=0"]))
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_set(["train.lr"])


def test_documented_schedule_over_100_epochs() -> None:
    cfg = build_cyclegan_config(preset="model2", overrides={"train": {"epochs": 100}})
    s = cfg.train.schedule
    assert phase_boundaries(s, 100) == [(1, 0), (51, 1), (97, 2)]
    assert (phase_at(s, 50, 100)[1].gan, phase_at(s, 51, 100)[1].identity) == (1.0, 0.3)
    assert (phase_at(s, 97, 100)[1].cycle, phase_at(s, 96, 100)[1].cycle) == (12.0, 10.0)


def test_schedule_from_set_and_lr_decay() -> None:
    cfg = build_cyclegan_config(
        overrides=parse_set(["train.schedule=[{start: 1, gan: 1}, {start: 3, gan: 2}]"])
    )
    assert [p.gan for p in cfg.train.schedule] == [1.0, 2.0]
    assert lr_factor(5, 5, 5) == 1.0 and lr_factor(6, 5, 5) == pytest.approx(1 - 1 / 6)
    assert lr_factor(10, 5, 5) == pytest.approx(1 / 6)
