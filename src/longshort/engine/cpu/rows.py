"""Batch rows on several threads: each thread runs the whole loop, all T steps, for its rows.

The recurrence of one sequence never reads another's, so the batch is split once per call into
as many row ranges as torch has threads; the main thread runs the first range and pooled worker
threads the others, each with single-threaded BLAS. No step forks, joins or waits on a barrier,
so a busy core slows its own rows and nothing else. The loop kernels release the GIL (numba
``nogil``); one compiled without it would run the ranges one after another.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from longshort.engine.cpu import blas

_pool: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()

# Fewer rows than this per thread and the split stops paying: the per-step product becomes a
# matrix-vector product bound by reading the recurrent weights, which every thread must do.
MIN_ROWS = 2
# Below this many flops in the whole loop, handing rows to a worker (tens of microseconds)
# costs more than it saves: one step of a small cell, say.
MIN_SPLIT_FLOPS = 4 << 20


def ranges(
    batch: int, threads: int | None = None, flops: int | None = None
) -> list[tuple[int, int]]:
    """Near-equal row ranges [b0, b1) covering the batch, one per thread that gets rows.
    flops: the loop's total work; below MIN_SPLIT_FLOPS the batch stays on one thread."""
    threads = torch.get_num_threads() if threads is None else threads
    if flops is not None and flops < MIN_SPLIT_FLOPS:
        threads = 1
    count = max(1, min(threads, batch // MIN_ROWS))
    bounds = [batch * k // count for k in range(count + 1)]
    return list(itertools.pairwise(bounds))


def _workers(count: int) -> ThreadPoolExecutor:
    with _lock:
        if count not in _pool:
            _pool[count] = ThreadPoolExecutor(
                count, "longshort-rows", initializer=blas.set_thread_local_single
            )
        return _pool[count]


def run(
    kernel: Callable[..., None],
    parts: Sequence[tuple[int, int]],
    args: Callable[[int, int], tuple],
    step_flops: int,
) -> None:
    """kernel(*args(b0, b1)) for every range; the first on this thread. step_flops: the
    per-step product's flops over the whole batch, for the single-range case's thread count."""
    if len(parts) == 1:
        with blas.step_threads(step_flops):
            kernel(*args(*parts[0]))
        return
    with blas.threads(1):  # before the workers start: OpenBLAS's setting is process-wide
        pool = _workers(len(parts) - 1)
        futures = [pool.submit(kernel, *args(b0, b1)) for b0, b1 in parts[1:]]
        try:
            kernel(*args(*parts[0]))
        finally:
            for future in futures:
                future.result()
