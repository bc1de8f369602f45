"""Progress of long loops: a bar in a terminal, periodic log lines everywhere else.

Simulation, preprocessing, embedding, posterior sampling and the probes run for
minutes to hours; without a sign of life a user cannot tell a slow step from a hung
one. Where a person watches a terminal, a tqdm bar on stderr is the clearest sign.
Where nobody does (a Snakemake step writing its log file, a SLURM job, stderr
redirected), a redrawn bar would only fill the log with carriage returns, so a
plain log line is written instead, at most every ``every_s`` seconds, plus one
final line with the count and the time taken. That final line is written in both
modes, so every log records how long each loop took.

The choice, made once per loop by :func:`show_bar`:

- ``WHATSREAL_PROGRESS=0``: log lines; ``WHATSREAL_PROGRESS=1``: the bar, whatever the rest says;
- under SLURM (``SLURM_JOB_ID`` set): log lines (the job's output is a file);
- in a pipeline step that logs to its file (:func:`whatsreal.logs.log_to_file`): log lines,
  so that the step's log shows the progress, even when Snakemake runs in a terminal;
- otherwise the bar when stderr is a terminal, log lines when it is not.

Progress only counts and reads the clock: it never touches a random generator or the
data, so a step's outputs are the same with or without it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

from whatsreal.logs import step_log

__all__ = ["DEFAULT_EVERY_S", "ENV_VAR", "Progress", "progress", "show_bar"]

DEFAULT_EVERY_S = 30.0
"""Seconds between two log lines: often enough to see a step move, rare enough that an
hour-long step writes about a hundred lines."""

ENV_VAR = "WHATSREAL_PROGRESS"
"""``0``: never draw a bar (log lines instead); ``1``: always draw it; unset: decide (see :func:`show_bar`)."""

T = TypeVar("T")

_log = logging.getLogger(__name__)


def show_bar(stream: object | None = None) -> bool:
    """Whether a loop should draw a tqdm bar on ``stream`` (default stderr) rather than log lines."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting == "0":
        return False
    if setting == "1":
        return True
    if os.environ.get("SLURM_JOB_ID") or step_log() is not None:
        return False
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _duration(seconds: float) -> str:
    """``35 s``, ``12.5 min``, ``3.2 h``: short enough to read at a glance in a log line."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Counts done items of one loop and shows them (a bar or log lines; see the module docstring).

    Use as a context manager and call :meth:`update` with the number of items each step
    finished; leaving the context writes the final line (or, after an exception, where the
    loop stopped). ``total`` may be None when unknown (no percentage or time left then).
    ``bar`` overrides :func:`show_bar`; ``clock`` is for tests.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "items",
        *,
        log: logging.Logger | None = None,
        every_s: float = DEFAULT_EVERY_S,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = None if total is None else int(total)
        self.desc = desc
        self.unit = unit
        self.log = log or _log
        self.every_s = float(every_s)
        self.clock = clock
        self.n = 0
        self.closed = False
        self.start = clock()
        self._last_line = self.start
        self._bar: tqdm | None = None
        if show_bar() if bar is None else bar:
            self._bar = tqdm(total=self.total, desc=desc, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the loop started."""
        return self.clock() - self.start

    def update(self, n: int = 1) -> None:
        """``n`` more items are done; a log line is due when ``every_s`` passed since the last one."""
        self.n += int(n)
        if self._bar is not None:
            self._bar.update(int(n))
            return
        now = self.clock()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            self.log.info("%s", self.line(now - self.start))

    def line(self, elapsed: float) -> str:
        """``desc: 120/500 stamps (24%), 35 s elapsed, ~110 s left`` (the parts that are known)."""
        if self.total:
            text = f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            text = f"{self.desc}: {self.n} {self.unit}"
        text += f", {_duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            text += f", ~{_duration(elapsed / self.n * (self.total - self.n))} left"
        return text

    def close(self, failed: bool = False) -> None:
        """Close the bar and write the final line (once)."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elapsed = self.elapsed
        if failed:
            self.log.info("%s (stopped)", self.line(elapsed))
            return
        rate = f" ({self.n / elapsed:.3g} {self.unit}/s)" if elapsed > 0 and self.n else ""
        total = f"/{self.total}" if self.total is not None else ""
        self.log.info("%s: %d%s %s in %s%s", self.desc, self.n, total, self.unit, _duration(elapsed), rate)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close(failed=kind is not None)


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    unit: str = "items",
    total: int | None = None,
    log: logging.Logger | None = None,
    every_s: float = DEFAULT_EVERY_S,
    bar: bool | None = None,
) -> Iterator[T]:
    """Yield the items of ``iterable`` unchanged, counting one per item (see :class:`Progress`).

    ``total`` defaults to ``len(iterable)`` when it has one. The final line is written when
    the iteration ends; breaking out early writes it when the generator is closed.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, log=log, every_s=every_s, bar=bar) as p:
        for item in iterable:
            yield item
            p.update(1)
