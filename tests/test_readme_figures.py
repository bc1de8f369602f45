"""The README's figures script (whatsreal.plots.readme_figures) on tiny fake figures written
where the layout puts a finished run's: it downsizes them under the byte budget, and it names
each missing figure and the command that makes it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
from PIL import Image

from whatsreal.plots.readme_figures import (
    MIN_WIDTH,
    MissingFigureError,
    main,
    readme_figures,
    readme_sources,
    shrink_png,
)


def fake_figure(path: Path, width_px: int, height_px: int) -> None:
    """A small matplotlib PNG (a line, an image, a title) standing in for a pipeline figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(width_px / 100, height_px / 100), dpi=100)
    ax1.plot([0, 1, 2], [0, 1, 0])
    ax2.imshow([[0.0, 1.0], [1.0, 0.5]])
    fig.suptitle(path.stem)
    fig.savefig(path, dpi=100)
    plt.close(fig)


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    """A results tree holding just the four figures the README shows."""
    results = tmp_path / "results" / "sim"
    for fig in readme_sources(results):
        fake_figure(fig.source, 1200, 300)
    return results


def test_writes_small_copies_of_the_four_figures(finished_run, tmp_path):
    dest = tmp_path / "docs" / "figures"
    written = readme_figures(finished_run, dest, max_width=900)
    assert [p.name for p in written] == [f.source.name for f in readme_sources(finished_run)]
    for path in written:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "P"  # a palette, not 4 bytes a pixel
            assert im.size == (900, 225)  # downsized, aspect kept
        assert path.stat().st_size < 100_000
    assert sorted(dest.iterdir()) == sorted(written)  # no temporary files left behind
    again = readme_figures(finished_run, tmp_path / "again", max_width=900)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]  # reruns commit no churn


def test_a_narrow_figure_is_not_upscaled(tmp_path):
    src = tmp_path / "narrow.png"
    fake_figure(src, 400, 300)
    out = tmp_path / "out.png"
    out.write_bytes(shrink_png(src, max_width=900))
    with Image.open(out) as im:
        assert im.size == (400, 300)


def test_over_budget_shrinks_to_the_minimum_width_and_stops(tmp_path):
    src = tmp_path / "wide.png"
    fake_figure(src, 1200, 300)
    out = tmp_path / "out.png"
    out.write_bytes(shrink_png(src, max_width=900, max_bytes=1))  # no PNG fits: it must still end
    with Image.open(out) as im:
        assert im.width == MIN_WIDTH


def test_missing_figure_is_named_with_the_command_that_makes_it(finished_run, tmp_path, capsys):
    fig4 = readme_sources(finished_run)[1].source
    fig4.unlink()
    dest = tmp_path / "figures"
    with pytest.raises(MissingFigureError) as err:
        readme_figures(finished_run, dest)
    message = str(err.value)
    assert str(fig4) in message and "Fig 4" in message and "make run" in message
    assert str(readme_sources(finished_run)[0].source) not in message  # only what is missing
    assert not dest.exists()  # nothing half-written

    assert main([str(finished_run), str(dest)]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and str(fig4) in stderr and "make run" in stderr


def test_command_line_prints_what_it_wrote(finished_run, tmp_path, capsys):
    assert main([str(finished_run), str(tmp_path / "figures"), "--max-width", "600"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(readme_sources(finished_run)) == 4 and all("600x150" in line for line in out)
