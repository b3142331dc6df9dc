"""`ganlab pretrained` and `translate --pretrained` against a throwaway HTTP server on 127.0.0.1 serving a
reference-layout generator made here (no real network, no real pretrained file)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import ganlab
from ganlab.cli import main
from ganlab.cyclegan.pretrained import PRETRAINED, cached_path

from .reference_nets import RefGenerator, randomized
from .test_download import no_proxy, server  # noqa: F401 (fixtures: loopback server, no proxies)

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "horse2zebra"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def reference(server):  # noqa: F811 (the imported fixture)
    """The server holds a reference 6-block generator as pretrained_models/horse2zebra.pth."""
    net = randomized(RefGenerator(8, 6), 7)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    server.files[f"/pretrained_models/{NAME}.pth"] = buf.getvalue()
    server.base_url = server.base_url.replace("/datasets", "/pretrained_models")
    return net


def test_list_names_all_eighteen(cache, capsys) -> None:
    assert main(["pretrained", "list"]) == 0
    out = capsys.readouterr().out
    assert len(PRETRAINED) == 18 and all(name in out for name in PRETRAINED)


def test_get_caches_imports_and_translates_in_one_line(server, reference, cache, tmp_path, capsys) -> None:  # noqa: F811
    run = tmp_path / "run"
    assert main(["pretrained", "get", NAME, "--out", str(run), "--base-url", server.base_url]) == 0
    assert cached_path(NAME).is_file() and cached_path(NAME).is_relative_to(cache)
    assert (run / "checkpoints" / "latest.json").is_file()
    assert len(server.requests) == 1

    img = np.random.default_rng(1).integers(0, 255, (33, 27, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    # From the cache: no second download, no --base-url needed.
    argv = ["translate", "--pretrained", NAME, str(tmp_path / "photo.png"), "--out", str(out), "--quiet"]
    assert main([*argv, "--precision", "fp32"]) == 0
    assert len(server.requests) == 1
    got = np.asarray(Image.open(out / "photo.png"))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    x = torch.nn.functional.pad(x, (0, 1, 0, 3), mode="reflect")  # the reference on a multiple of 4
    with torch.no_grad():
        ref = reference(x)[0, :, :33, :27]
    expected = ((ref.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(got.astype(float) - expected).max() <= 1  # 8-bit rounding only

    m = ganlab.load(f"pretrained:{NAME}", precision="fp32")
    assert m.directions == ("a2b",)
    assert np.array_equal(m.translate(img), got)
    capsys.readouterr()
    assert main([*argv, "--direction", "b2a"]) == 2
    assert "no b2a generator" in capsys.readouterr().err


def test_a_partial_download_resumes(server, reference, cache, tmp_path) -> None:  # noqa: F811
    data = server.files[f"/pretrained_models/{NAME}.pth"]
    part = cached_path(NAME).with_name(f"{NAME}.pth.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(data[: len(data) // 3])
    assert main(["pretrained", "get", NAME, "--out", str(tmp_path / "r"), "--base-url", server.base_url]) == 0
    assert server.requests == [(f"/pretrained_models/{NAME}.pth", f"bytes={len(data) // 3}-")]
    assert cached_path(NAME).read_bytes() == data and not part.exists()


def test_errors_unknown_offline_and_not_a_generator(server, cache, tmp_path, capsys) -> None:  # noqa: F811
    assert main(["pretrained", "get", "cats2dogs", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown pretrained model 'cats2dogs'" in err and "style_monet" in err
    assert main(["pretrained", "get", NAME, "--base-url", "http://127.0.0.1:9/x", "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    assert "offline" in capsys.readouterr().err
    server.files[f"/datasets/{NAME}.pth"] = b"<html>moved</html>"
    assert main(["pretrained", "get", NAME, "--base-url", server.base_url, "--out", str(tmp_path / "r")]) == 2
    assert "not a usable generator" in capsys.readouterr().err
    assert not cached_path(NAME).exists() and not (tmp_path / "r").exists()
    assert not any(cache.rglob("*.part"))
