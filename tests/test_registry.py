"""The one preset registry, over every preset of both tasks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ganlab.cli import main
from ganlab.models import ResnetGenerator
from ganlab.models.registry import TASKS, UnknownPresetError, get_preset, preset_config, preset_names
from ganlab.models.sr import SRResNet

ALL = preset_names(None)


def test_both_tasks_have_presets_and_names_are_unique() -> None:
    assert set(preset_names("cyclegan")) >= {"model1", "model2", "resnet9", "resnet6"}
    assert set(preset_names("sr")) >= {"srresnet", "srresnet-small"}
    assert sorted(preset_names("cyclegan") + preset_names("sr")) == ALL
    assert {get_preset(n).task for n in ALL} == set(TASKS)


@pytest.mark.parametrize("name", ALL)
def test_every_preset_builds_and_runs(name: str) -> None:
    task = get_preset(name).task
    cfg = dataclasses.replace(preset_config(name, task), hidden=8)  # narrow: the layout, not the width
    if task == "sr":
        y = SRResNet(cfg)(torch.rand(1, 3, 7, 9))
        assert y.shape == (1, 3, 7 * cfg.scale, 9 * cfg.scale)
    else:
        y = ResnetGenerator(cfg)(torch.rand(1, 3, 20, 28) * 2 - 1)
        assert y.shape == (1, 3, 20, 28)


@pytest.mark.parametrize("name", ALL)
def test_info_knows_every_preset(name: str, capsys) -> None:
    assert main(["info", "--preset", name, "--set", "model.hidden=8", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preset"] == name and info["generator_params"] > 0


def test_a_preset_of_the_other_task_is_refused_by_name() -> None:
    with pytest.raises(UnknownPresetError, match="srresnet.*is an SR preset"):
        preset_config("srresnet", "cyclegan")
    with pytest.raises(UnknownPresetError, match="known SR presets: srresnet, srresnet-small"):
        preset_config("model2", "sr")
