from __future__ import annotations

import subprocess
import sys

import pytest

from ganlab.cli import COMMANDS, build_parser, main

EXPECTED_COMMANDS = {
    "train",
    "translate",
    "import",
    "pretrained",
    "info",
    "eval",
    "demo",
    "data",
    "sr",
    "compare",
    "sweep",
    "bench",
    "serve",
    "export",
}


def test_exact_command_set_is_registered() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == EXPECTED_COMMANDS
    assert set(COMMANDS) == EXPECTED_COMMANDS


def test_a_missing_command_module_fails_loudly(monkeypatch) -> None:
    # A command listed but not importable must be an error, never a silently shorter --help.
    monkeypatch.setattr("ganlab.cli.COMMANDS", [*COMMANDS, "nosuchcommand"])
    with pytest.raises(ModuleNotFoundError):
        build_parser()


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ganlab", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ganlab ")


def test_download_unknown_name_lists_known(tmp_path, capsys) -> None:
    assert main(["data", "download", "cats2dogs", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cats2dogs" in err and "horse2zebra" in err


def test_download_offline_is_a_clear_error(tmp_path, capsys) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    rc = main(["data", "download", "facades", "--out", str(tmp_path), "--base-url", "http://127.0.0.1:9/x"])
    assert rc == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["translate", "x.png", "--run", "RUN", "--out", "o", "--device", "cuda:7"], "device 'cuda:7'"),
        (
            ["sr", "upscale", "x.png", "--run", "RUN", "--out", "o", "--device", "cuda"],
            "CUDA is not available",
        ),
        (["train", "--data", "D", "--device", "tpu"], "device"),
        (["info", "--preset", "nope"], "unknown preset 'nope'"),
        (["eval", "--run", "no/such/run"], "run directory not found"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, needle, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANLAB_DEBUG", raising=False)
    if "cuda" in " ".join(argv):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ganlab {argv[0]}: error: ") and needle in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(monkeypatch) -> None:
    monkeypatch.delenv("GANLAB_DEBUG", raising=False)
    from ganlab.core.errors import GanlabError

    with pytest.raises(GanlabError, match="unknown preset"):
        main(["--debug", "info", "--preset", "nope"])
    monkeypatch.setenv("GANLAB_DEBUG", "1")
    with pytest.raises(GanlabError, match="unknown preset"):
        main(["info", "--preset", "nope"])


def test_missing_extra_names_the_pip_extra(monkeypatch, capsys) -> None:
    from ganlab.core.errors import MissingExtraError, require

    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'ganlab\[demo\]'"):
        require("skimage", "the demo", "demo")
