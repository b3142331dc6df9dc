from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from ganlab.core import report as R

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode(uri: str) -> bytes:
    assert uri.startswith("data:image/png;base64,")
    return base64.b64decode(uri.split(",", 1)[1])


def _records(offset: float) -> list[dict]:
    return [
        {"type": "phase", "epoch": 1},
        *(
            {"type": "epoch", "epoch": e, "G_total": offset + 1 / e, "D_A": 0.25, "eval_cycle_psnr": 20 + e}
            for e in range(1, 5)
        ),
    ]


def test_image_data_uri_round_trips() -> None:
    img = Image.new("RGB", (7, 5), (10, 200, 30))
    back = Image.open(io.BytesIO(_decode(R.image_data_uri(img))))
    assert back.size == (7, 5) and back.getpixel((3, 2)) == (10, 200, 30)


def test_plots_render_to_png() -> None:
    runs = {"a": _records(0.0), "b": _records(0.5)}
    fig = R.plot_losses(runs, ["G_total", "D_A", "missing"], phase_epochs=[3])
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    # The phase line and the two runs are drawn on the first subplot.
    assert len(fig.axes[0].lines) == 3
    png = _decode(R.figure_data_uri(fig, close=True))
    assert png.startswith(PNG_MAGIC)
    fig = R.plot_metric_curves(runs, ["eval_cycle_psnr"], baselines={"identity": 21.0})
    assert len(fig.axes[0].lines) == 3
    assert R.figure_png_bytes(fig).startswith(PNG_MAGIC)


def test_image_grid_layout() -> None:
    a = Image.new("RGB", (40, 20), "red")
    b = Image.new("RGB", (10, 10), "blue")
    grid = R.image_grid([[a, b, b], [b, a, a]], ["row one", "row two"], ["orig", "x", "y"], cell=32, pad=2)
    # Columns as wide as their widest image at height 32 (a: 64 px wide), plus labels and padding.
    assert grid.height > 2 * 32 and grid.width > 3 * 64
    assert grid.mode == "RGB"
    colours = {c for _, c in grid.getcolors(1 << 16)}
    assert (255, 0, 0) in colours and (0, 0, 255) in colours
    assert any(max(c) < 64 for c in colours)  # dark (anti-aliased) label text


def test_tables_and_page(tmp_path: Path) -> None:
    rows = [{"run": "a|b", "psnr": 21.123456, "params": 12345}, {"run": "<x>", "psnr": None, "params": 7}]
    md = R.markdown_table(rows, ["run", "psnr", "params"])
    lines = md.strip().splitlines()
    assert lines[0] == "| run | psnr | params |" and lines[1] == "|---|---:|---:|"
    assert "a\\|b" in lines[2] and "21.12" in lines[2] and "12,345" in lines[2] and "| - |" in lines[3]
    table = R.html_table(rows, ["run", "psnr", "params"], fmt={"psnr": lambda v: "P" if v else "none"})
    assert "&lt;x&gt;" in table and '<td class="num">P</td>' in table and "none" in table
    uri = R.image_data_uri(Image.new("RGB", (4, 4)))
    page = R.html_page("A <report>", [("Table", table), ("Image", R.img_tag(uri, "grid"))])

    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.srcs: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag not in ("img", "meta", "br"):
                self.stack.append(tag)
            self.srcs += [v for k, v in attrs if k in ("src", "href")]

        def handle_endtag(self, tag) -> None:
            assert self.stack and self.stack.pop() == tag, tag

    checker = Checker()
    checker.feed(page)
    assert checker.stack == []  # well nested and closed
    assert checker.srcs == [uri]
    assert "<title>A &lt;report&gt;</title>" in page
    assert not re.search(r"(https?:)?//", page)
    out = tmp_path / "sub" / "r.html"
    R.write_text_atomic(out, page)
    assert out.read_text() == page and list(out.parent.iterdir()) == [out]


# TensorBoard mirroring of a run's epoch records (train/tensorboard.py) is reporting too.


def test_tensorboard_logger_writes_scalars_and_images(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ganlab.core.tensorboard import TensorBoardLogger

    with TensorBoardLogger(tmp_path) as tb:
        for e in (1, 2):
            tb.log_epoch(
                {
                    "type": "epoch",
                    "epoch": e,
                    "step": 10 * e,
                    "G_total": 3.0 / e,
                    "eval_cycle_psnr": 20.0 + e,
                    "weights": {"identity": 0.5, "gan": 1.0},
                    "phase": 0,
                    "note": "text is skipped",
                    "bad": float("nan"),
                }
            )
        tb.log_image("samples", Image.new("RGB", (8, 6), "red"), 2)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"G_total", "eval_cycle_psnr", "weights/identity", "weights/gan", "phase"} <= set(tags["scalars"])
    assert not {"epoch", "step", "note", "bad", "type"} & set(tags["scalars"])
    assert [(s.step, s.value) for s in acc.Scalars("G_total")] == [(1, 3.0), (2, 1.5)]
    assert tags["images"] == ["samples"]
    img = acc.Images("samples")[0]
    assert (img.step, img.width, img.height) == (2, 8, 6)


def test_tensorboard_missing_package_message(tmp_path: Path, monkeypatch) -> None:
    import sys

    from ganlab.core import tensorboard as tbmod
    from ganlab.core.errors import MissingExtraError

    # A None entry in sys.modules makes `import` raise ImportError, as if the package were not installed.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert not tbmod.tensorboard_available()
    with pytest.raises(MissingExtraError) as info:
        tbmod.TensorBoardLogger(tmp_path)
    assert str(info.value) == "--tensorboard needs the tensorboard package: pip install 'ganlab[tensorboard]'"
    assert not (tmp_path / "tb").exists()
