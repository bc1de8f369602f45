"""The README's figures: small copies of four figures of a finished demo run.

A newcomer should see what ``make run`` produces before spending half an hour on it, so the
README shows the synthetic sky, Fig 4 (the probes) and Fig 6 (the counterfactuals) of run
``main``, and the methods comparison. The full-size PNGs are 0.2-1.3 MB each, too heavy to commit and to load inline, so
this module downsizes them (at most ``max_width`` pixels wide) and stores each as a palette PNG
under a byte budget. It reads the figures where :class:`~whatsreal.layout.DatasetLayout` puts
them, so it never spells a results file name, and it names the missing ones (and the command
that makes them) instead of copying a partial set.

``python -m whatsreal.plots.readme_figures RESULTS DEST`` (``make readme-figures``) runs it.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path

# Pillow, not a direct dependency: matplotlib requires it, so it is installed wherever the
# package is, and it resizes and quantises without drawing a figure.
from PIL import Image

from whatsreal.io import atomic_path
from whatsreal.layout import DatasetLayout

__all__ = ["MissingFigureError", "ReadmeFigure", "readme_figures", "readme_sources", "shrink_png"]

MAX_WIDTH = 900
"""Pixels: about the width of GitHub's README column; wider would only cost bytes."""
MAX_BYTES = 250_000
"""Per figure: four of them keep the repository's history light and the README quick to load."""
PALETTES = (256, 128)
"""Colours tried in turn: the largest palette that fits the byte budget wins. Fewer posterise
the cutouts' faint outskirts, so below 128 the width shrinks instead: the demo's cutouts are
48 pixels, drawn larger than that even in a 600-pixel-wide figure."""
KMEANS_PASSES = 3
"""k-means refinements of the median-cut palette: on the demo's Fig 6 they cut the mean colour
error by a tenth and the bytes slightly; they cost seconds per figure, which a make target can spare."""
MIN_WIDTH = 300
"""Below this the labels are unreadable: the figure is kept at this width even over budget."""


class MissingFigureError(FileNotFoundError):
    """A figure the README shows is not in the results tree (the run is unfinished or elsewhere)."""


@dataclass(frozen=True)
class ReadmeFigure:
    """One figure the README shows: where the run wrote it and what it is (for messages)."""

    source: Path
    what: str


def readme_sources(results: DatasetLayout | str | Path, run: str = "main") -> list[ReadmeFigure]:
    """The figures the README shows, in the order it shows them, at their places in ``results``."""
    data = DatasetLayout.of(results)
    figures = data.run(run)
    return [
        ReadmeFigure(data.sky_figure, "the synthetic sky overview"),
        ReadmeFigure(figures.figure("fig4_probes"), f"Fig 4 (probes) of run '{run}'"),
        ReadmeFigure(figures.figure("fig6_counterfactuals"), f"Fig 6 (counterfactuals) of run '{run}'"),
        ReadmeFigure(data.comparison_figure, "the methods comparison"),
    ]


def _png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG with zlib's best effort (PIL writes no timestamp, so reruns are byte-identical)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shrink_png(source: Path, max_width: int = MAX_WIDTH, max_bytes: int = MAX_BYTES) -> bytes:
    """``source`` as PNG bytes at most ``max_width`` wide, within ``max_bytes`` where possible.

    Transparency is flattened onto white (what matplotlib's figures sit on), then the image is
    quantised to a palette: the figures are mostly flat colour and text, which a palette stores
    in a fraction of the RGB bytes. Median cut refined by a few k-means passes keeps the
    cutouts' colour gradients smooth; Pillow's smaller max-coverage palettes posterise them into
    blotches that read as structure. The largest palette of :data:`PALETTES` within budget
    wins; if none fits, the width drops by 15% and the palettes are tried again, down to
    :data:`MIN_WIDTH` (then the smallest attempt is returned, over budget: a readable figure
    beats a tiny one).
    """
    with Image.open(source) as opened:
        rgba = opened.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    width = min(max_width, flat.width)
    while True:
        height = max(1, round(flat.height * width / flat.width))
        small = flat if width == flat.width else flat.resize((width, height), Image.Resampling.LANCZOS)
        for colours in PALETTES:
            data = _png_bytes(small.quantize(colours, method=Image.Quantize.MEDIANCUT, kmeans=KMEANS_PASSES))
            if len(data) <= max_bytes:
                return data
        if width <= MIN_WIDTH:
            return data
        width = max(MIN_WIDTH, int(width * 0.85))


def readme_figures(
    results: DatasetLayout | str | Path,
    dest: str | Path,
    run: str = "main",
    max_width: int = MAX_WIDTH,
    max_bytes: int = MAX_BYTES,
) -> list[Path]:
    """Write small copies of :func:`readme_sources` into ``dest`` (each under its source's file
    name) and return their paths.

    Every source is checked before anything is written, so a half-finished run never leaves
    the README showing figures of two different runs.
    """
    sources = readme_sources(results, run)
    missing = [f for f in sources if not f.source.is_file()]
    if missing:
        lines = "\n".join(f"  {f.what}: {f.source}" for f in missing)
        raise MissingFigureError(
            f"the README's figures need a finished demo run in {DatasetLayout.of(results).root}; missing:\n{lines}\n"
            "Make them with `make run` (the demo, config/config.yaml), or one at a time with "
            f"`snakemake {missing[0].source} --cores all`, then rerun `make readme-figures`."
        )
    dest = Path(dest)
    written = []
    for fig in sources:
        data = shrink_png(fig.source, max_width, max_bytes)
        out = dest / fig.source.name
        with atomic_path(out, suffix=out.suffix) as tmp:
            tmp.write_bytes(data)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m whatsreal.plots.readme_figures RESULTS DEST [--run NAME]``: refresh the README's
    figures from a finished run (exit 1 naming each missing figure and the command that makes it)."""
    parser = argparse.ArgumentParser(prog="python -m whatsreal.plots.readme_figures", description=main.__doc__)
    parser.add_argument("results", type=Path, help="a dataset's results directory, e.g. results/sim")
    parser.add_argument("dest", type=Path, help="where the small PNGs go, e.g. docs/figures")
    parser.add_argument("--run", default="main", help="the trained run whose figures to show (default: main)")
    parser.add_argument("--max-width", type=int, default=MAX_WIDTH, help=f"pixels (default: {MAX_WIDTH})")
    parser.add_argument("--max-kb", type=int, default=MAX_BYTES // 1000, help="budget per PNG (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        written = readme_figures(args.results, args.dest, args.run, args.max_width, args.max_kb * 1000)
    except MissingFigureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in written:
        with Image.open(path) as im:
            print(f"{path}: {im.width}x{im.height}, {path.stat().st_size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
