"""The wheel ships the whole package: every module, every shipped YAML config and the serve page.

The wheel is built offline from a copy of the build inputs (pyproject.toml, README.md, src/), so the
test neither writes build/ or egg-info into the working tree nor packs stale files a previous build
left in build/lib.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "ganlab"
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.py", "setup.cfg")


def _missing_build_tools() -> str | None:
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools is not installed (needed to build the wheel offline)"
    import setuptools

    major, minor = (int(p) for p in setuptools.__version__.split(".")[:2])
    # setuptools >= 70.1 has its own bdist_wheel; older ones need the wheel package.
    if (major, minor) < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"the wheel package is not installed (setuptools {setuptools.__version__} needs it)"
    return None


def _package_files(pattern: str) -> set[str]:
    return {
        p.relative_to(PKG.parent).as_posix()
        for p in PKG.rglob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    missing = _missing_build_tools()
    if missing:
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("project")
    for name in BUILD_INPUTS:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, root / name)
    shutil.copytree(
        REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    )
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    proc = subprocess.run(
        [*cmd, "-q", "-w", str(out), str(root)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("ganlab-*.whl"))
    assert len(wheels) == 1, f"expected one ganlab wheel, got {wheels}"
    with zipfile.ZipFile(wheels[0]) as zf:
        return set(zf.namelist())


def test_wheel_ships_every_config(wheel_names: set[str]) -> None:
    on_disk = _package_files("*.yaml") | _package_files("*.yml")
    assert any(name.startswith("ganlab/configs/") for name in on_disk), "no YAML under src/ganlab/configs"
    missing = sorted(on_disk - wheel_names)
    assert not missing, "YAML files missing from the wheel:\n  " + "\n  ".join(missing)


def test_wheel_ships_the_serve_page(wheel_names: set[str]) -> None:
    on_disk = _package_files("*.html")
    assert "ganlab/serve/page.html" in on_disk
    missing = sorted(on_disk - wheel_names)
    assert not missing, "HTML files missing from the wheel:\n  " + "\n  ".join(missing)


def test_wheel_ships_every_module(wheel_names: set[str]) -> None:
    on_disk = _package_files("*.py")
    missing = sorted(on_disk - wheel_names)
    assert not missing, "modules missing from the wheel:\n  " + "\n  ".join(missing)
    extra = sorted(n for n in wheel_names if n.endswith(".py") and n not in on_disk)
    assert not extra, "modules in the wheel that are not in src/ganlab:\n  " + "\n  ".join(extra)


def test_wheel_has_console_script(wheel_names: set[str]) -> None:
    assert any(n.endswith(".dist-info/entry_points.txt") for n in wheel_names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in wheel_names)
