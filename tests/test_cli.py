from __future__ import annotations

import subprocess
import sys

from ganlab.cli import COMMANDS, build_parser, main


def test_every_command_is_registered() -> None:
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text


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
