"""Ordered, memory-bounded parallel map over worker processes.

Stages that render or decode many cutouts hand chunks to worker processes and
consume the results in order (to write them out). Only ``2 x workers`` chunks are
in flight at a time, so memory stays flat however large the dataset. Workers are
forked: Snakemake's ``script:`` files cannot be re-imported by spawned workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

from threadpoolctl import threadpool_limits

__all__ = ["ordered_map"]

T = TypeVar("T")


def _one_thread_per_worker() -> None:
    """The workers are the parallelism: BLAS/OpenMP pools inside each would oversubscribe the cores."""
    threadpool_limits(1)


def ordered_map(fn: Callable[..., T], items: Iterable[tuple[Any, ...]], workers: int = 1) -> Iterator[T]:
    """Yield ``fn(*item)`` for each item, in order; in ``workers`` processes when > 1."""
    if workers <= 1:
        for item in items:
            yield fn(*item)
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("fork"), initializer=_one_thread_per_worker
    ) as pool:
        pending: deque[Future[T]] = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, *nxt))
            yield result
