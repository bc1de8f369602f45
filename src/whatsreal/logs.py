"""Logging for pipeline steps: everything a step says goes to its Snakemake log file.

Two things make a log useful after a failure, and both are handled here:

- **The traceback is in the log.** Snakemake runs a ``script:`` as a separate
  ``python <tmpfile>`` process, so an uncaught exception would only reach stderr
  (mixed into Snakemake's own output, or a SLURM job file) while Snakemake points
  the user at the log. :func:`log_to_file` installs a :data:`sys.excepthook` that
  writes the exception with its full traceback to the log first, then calls the
  previous hook (which prints it to stderr as usual).
- **A rerun keeps the previous attempts.** Snakemake deletes a job's log files
  before it runs the job again, so opening the log anew would lose the one record
  of why the last attempt failed. Each attempt's log therefore has a second, hidden
  name (a hard link, ``.{name}.current`` beside it) that Snakemake does not know
  about; the next attempt finds it and renames it to ``{name}.1`` (older attempts
  move to ``.2``, ``.3``, ... up to ``keep``). A hard link shares the file's
  content as it is written, so even an attempt killed without warning (SIGKILL,
  an out-of-memory kill, a SLURM time limit) leaves its log behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["DEFAULT_KEEP", "log_to_file", "rotate_log", "step_log"]

DEFAULT_KEEP = 3
"""Previous attempts' logs kept beside a step's log (``X.log.1`` newest .. ``X.log.3``)."""

_HANDLER_MARK = "_whatsreal_log_to_file"
"""Attribute set on the handlers log_to_file installs, so a second call replaces them."""

_step_log: Path | None = None
"""The log file of the step running in this process, once :func:`log_to_file` set it up."""

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]

_UNCAUGHT = "whatsreal_uncaught"
"""Attribute of the log record of an uncaught exception; stderr's handler skips it, because
the chained excepthook prints the same traceback there."""


def step_log() -> Path | None:
    """The log file :func:`log_to_file` set up in this process, or None.

    A step with a log file is a pipeline job: its progress belongs in that file as log
    lines (whatsreal.progress), not in a terminal bar that no log keeps."""
    return _step_log


def _attempt_link(path: Path) -> Path:
    """The hidden second name of the current attempt's log."""
    return path.with_name(f".{path.name}.current")


def _shift(path: Path, keep: int) -> None:
    """Make room for a new ``path.1``: ``.keep`` is deleted, ``.i`` becomes ``.i+1``."""
    Path(f"{path}.{keep}").unlink(missing_ok=True)
    for i in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")


def rotate_log(path: str | Path, keep: int = DEFAULT_KEEP) -> list[Path]:
    """Move the previous attempt's log of ``path`` to ``path.1`` (older ones up by one).

    The previous attempt is the hidden link left by :func:`log_to_file` (which survives
    Snakemake deleting ``path`` before a rerun), and ``path`` itself if it is a different
    file (a log written by anything else). Empty logs are not kept; a missing file is
    fine. At most ``keep`` old logs remain (``keep=0``: none). Afterwards neither ``path``
    nor the link exists, so opening ``path`` can never truncate a kept log through a
    shared inode. Returns the kept logs' new paths.
    """
    path = Path(path)
    link = _attempt_link(path)
    previous = [p for p in (link, path) if p.exists()]
    if len(previous) == 2 and os.path.samefile(*previous):
        previous = [link]  # one attempt under two names
    n_kept = 0
    for old in previous:  # the link (older) first, so the newer ends up as .1
        if keep > 0 and old.stat().st_size > 0:
            _shift(path, keep)
            os.replace(old, f"{path}.1")
            n_kept += 1
    for old in (link, path):
        old.unlink(missing_ok=True)
    return [Path(f"{path}.{i}") for i in range(1, min(n_kept, keep) + 1)]


class _NotUncaught(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, _UNCAUGHT, False)


def _log_uncaught(
    previous: ExceptHook, kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    """Write an uncaught exception to the log, then hand it to the hook that was there before."""
    try:
        logging.getLogger("whatsreal").critical(
            "uncaught %s, the step failed:", kind.__name__, exc_info=(kind, value, tb), extra={_UNCAUGHT: True}
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        previous(kind, value, tb)


def _install_excepthook() -> None:
    """Chain :func:`_log_uncaught` in front of the current hook, once per process."""
    if getattr(sys.excepthook, _HANDLER_MARK, False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        _log_uncaught(previous, kind, value, tb)

    setattr(hook, _HANDLER_MARK, True)
    sys.excepthook = hook


def log_to_file(path: str | Path, level: int = logging.INFO, keep: int = DEFAULT_KEEP) -> logging.Logger:
    """Send the root logger, Python warnings and uncaught exceptions to ``path`` (and stderr).

    Call it first in a step, before importing anything that could fail, so the log exists
    and holds the traceback whatever goes wrong. The previous attempt's log is kept as
    ``path.1`` (see :func:`rotate_log`; ``keep`` old logs at most). A second call in the
    same process replaces the handlers of the first. Returns the root logger.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(path, keep)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(path, mode="w")
    stderr_handler = logging.StreamHandler()
    stderr_handler.addFilter(_NotUncaught())
    for handler in (file_handler, stderr_handler):
        handler.setFormatter(fmt)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    if keep > 0:
        with contextlib.suppress(OSError):  # a filesystem without hard links: no history kept
            os.link(path, _attempt_link(path))
    root.setLevel(level)
    global _step_log
    _step_log = path
    logging.captureWarnings(True)
    _install_excepthook()
    return root
