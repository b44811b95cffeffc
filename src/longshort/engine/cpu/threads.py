"""Batch rows on several threads: each thread runs the whole loop, all T steps, for its rows.

The recurrence of one sequence never reads another's, so the batch is split once per call into
as many row ranges as torch has threads, each run with single-threaded BLAS. No step forks, joins
or waits on a barrier, so a busy core slows its own rows and nothing else. The loop kernels
release the GIL (numba ``nogil``); one compiled without it would run the ranges one after another.

The exception: with at most two rows a thread and recurrent weights that fill a core's L2, the
LSTM's loops give each thread a share of the hidden units instead (:func:`split_units`,
:func:`unit_ranges`, :func:`run_team`), whose threads meet at a barrier every step: the
training forward, the no-grad forward, and BPTT where the rows would leave a thread idle.

The one-off products of a call (input projection, dL/dx) are split across the same threads
(:func:`split`, :func:`run_work`), each part on single-threaded BLAS; the float weight
gradients run on torch's matmul (:func:`.host.weight_products`).

The ranges run on torch's own OpenMP threads (one ``GOMP_parallel`` region per call, entered
through a ctypes callback): after each parallel torch op those threads spin for a while waiting
for more work, and a thread of our own would have to share a core with one of them. Measured on
2 cores: a backward call took 9.9 ms on a worker thread of our own against 6.3 ms with torch's
threads made passive. Where torch's runtime is not GNU OpenMP, a thread pool of our own runs them.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from longshort.engine.cpu import blas

_pool: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()
_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _torch_gomp() -> ctypes.CDLL | None:
    """torch's GNU OpenMP runtime, already loaded by torch; None if torch uses another."""
    for path in sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, f) for f in ("GOMP_parallel", "omp_get_thread_num")):
            lib.GOMP_parallel.argtypes = [_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            lib.GOMP_parallel.restype = None
            return lib
    return None


_gomp = _torch_gomp() if os.environ.get("LONGSHORT_ROW_THREADS") != "pool" else None

# Fewer rows than this per thread and the split stops paying: the per-step product becomes a
# matrix-vector product bound by reading the recurrent weights, which every thread must do.
MIN_ROWS = 2
# Below this many flops in the whole loop, handing rows to a worker (tens of microseconds)
# costs more than it saves: one step of a small cell, say.
MIN_SPLIT_FLOPS = 4 << 20


def _l2_bytes() -> int:
    """One core's L2 cache, from Linux's sysfs; 1 MiB where it cannot be read."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    for index in sorted(glob.glob(os.path.join(base, "index*"))):
        try:
            with open(os.path.join(index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(index, "size")) as f:
                size = f.read().strip()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
        return int(size.rstrip("KM")) * scale
    return 1 << 20


L2_BYTES = _l2_bytes()


def unit_ranges(hidden: int, count: int) -> list[tuple[int, int]]:
    """Near-equal ranges of hidden units, one per thread (at most count, none empty), each a
    multiple of 8 units where it can be (whole vectors in the gate loops)."""
    count = max(1, min(count, hidden))
    blocks = hidden // 8
    if blocks < count:
        return [(hidden * k // count, hidden * (k + 1) // count) for k in range(count)]
    bounds = [8 * (blocks * k // count) for k in range(count)] + [hidden]
    return [(bounds[k], bounds[k + 1]) for k in range(count)]


# Rows a thread at or under which the hidden-unit split can pay (see split_units).
UNIT_ROWS = 2
# The least [W_ih | U] for which inference splits the hidden units (see split_units). Units
# against rows, inference, 2 threads, Zen 4, AVX-512 build / AVX2 build: (200, 2, 64, 192)
# 0.66x / 0.63x and (500, 1, 16, 192) 0.71x / 0.80x ([W_ih | U] 786 and 639 KB); (1000, 1, 8,
# 128) 1.00x / 0.69x (278 KB); (200, 4, 64, 128) 0.99x / 1.01x (393 KB); (1000, 1, 8, 64)
# 1.10x (74 KB), too short a step for a barrier.
INFER_UNIT_BYTES = L2_BYTES // 4


def training_unit_bytes(batch: int) -> int:
    """The least U for which a training loop (forward and BPTT) splits the hidden units: one
    core's L2, or a quarter of it for a lone row, which the row split runs on one thread.
    Units against rows, a training step, Zen 4: 0.81x at (500, 1, 16, 192) and 0.83x at
    (1000, 1, 8, 128) (U 590 and 256 KB); 1.00x at (1000, 1, 8, 64) (64 KB); with 2 and 3
    rows, 1.05x at (200, 2, 64, 192) and 1.12x at (200, 3, 32, 160)."""
    return L2_BYTES // 4 if batch == 1 else L2_BYTES


def split_units(
    batch: int, weight_bytes: int, flops: int, least: int = L2_BYTES, idle_only: bool = False
) -> bool:
    """Whether a loop should split the hidden units across the threads rather than the batch
    rows (:func:`.lstm.lstm_forward_units`): when the row split gives a thread at most
    UNIT_ROWS rows (or leaves one idle) and the weights the loop reads every step take at least
    ``least`` bytes (by default one core's L2: the training loop's U), so that halving them
    across the threads' caches pays for a barrier a step. Inference's loop reads [W_ih | U]
    and pays from a quarter of L2 (:func:`.lstm.lstm_infer_units`, INFER_UNIT_BYTES). BPTT's
    (``idle_only``) pays only where the row split would leave a thread idle: units against
    rows, a training step on a Zen 4, 0.86x at (1000, 1, 8, 256) and 0.89x at (200, 2, 64,
    512), but 0.98-1.08x at (200, 4, 64, 256) and 1.03x at (200, 4, 256, 512), 2 rows a thread.
    ``LONGSHORT_LAYOUT=rows`` or ``units`` forces a layout (benchmarks). Measured on 2
    threads, units against rows (the inference figures from before inference had a unit loop
    of its own, when it ran the forward's):
    Zen 3 (512 KB L2), 0.84x at (500, 1, 8, 256), 0.72x at (200, 2, 64, 512); 1.09x at
    (1000, 1, 8, 128) and 1.67x at (1000, 1, 8, 32), whose U fits in L2 and whose step is too
    short for a barrier; 1.03-1.40x wherever the rows filled the threads, before the unit
    loop's gate copies were vectorised. Zen 4 (1 MB L2), inference / training: 0.90x / 0.95x at
    (200, 4, 64, 256) and 0.97x / 0.99x at (200, 4, 256, 512), whose U is 1 and 4 MB; 1.08-1.22x
    at (200, 4, 64, 128) and (200, 4, 64, 192), whose U fits; 1.11x / 1.02x at (200, 6, 64,
    256) and 1.30x / 1.06x at (200, 8, 64, 256), 3 and 4 rows a thread."""
    count = torch.get_num_threads()
    forced = os.environ.get("LONGSHORT_LAYOUT", "")
    if forced not in ("", "rows", "units"):
        raise ValueError(
            f"LONGSHORT_LAYOUT={forced!r}: expected 'rows' or 'units', or leave it unset to "
            "let each call choose"
        )
    if count < 2 or forced == "rows":
        return False
    if forced == "units":
        return True
    if _gomp is None or flops < MIN_SPLIT_FLOPS:
        return False
    if idle_only and len(ranges(batch, count, flops)) >= count:
        return False
    return batch <= UNIT_ROWS * count and weight_bytes >= least


def ranges(
    batch: int, threads: int | None = None, flops: int | None = None
) -> list[tuple[int, int]]:
    """Near-equal row ranges [b0, b1) covering the batch, one per thread that gets rows.
    flops: the loop's total work; below MIN_SPLIT_FLOPS the batch stays on one thread."""
    if batch < 2 * MIN_ROWS or (flops is not None and flops < MIN_SPLIT_FLOPS):
        return [(0, batch)]  # one thread's (a one-row stream asks at every call)
    threads = torch.get_num_threads() if threads is None else threads
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
    run_jobs(kernel, [args(b0, b1) for b0, b1 in parts])


def run_jobs(kernel: Callable[..., None], jobs: list[tuple]) -> None:
    """kernel(*job) for every job at once, one job a thread, each with single-threaded BLAS."""
    run_work([[(kernel, job)] for job in jobs])


def run_work(work: list[list[tuple[Callable[..., None], tuple]]]) -> None:
    """One list of (kernel, args) calls a thread, all threads at once, each list in order and
    with single-threaded BLAS: several products in one parallel region (each region costs
    30-70 us of waking and joining torch's threads)."""

    def each(calls: list[tuple[Callable[..., None], tuple]]) -> None:
        for kernel, args in calls:
            kernel(*args)

    with blas.threads(1):  # before the workers start: OpenBLAS's setting is process-wide
        if len(work) == 1:
            each(work[0])
        elif _gomp is not None:
            _on_torch_threads(each, [(calls,) for calls in work])
        else:
            pool = _workers(len(work) - 1)
            futures = [pool.submit(each, calls) for calls in work[1:]]
            try:
                each(work[0])
            finally:
                for future in futures:
                    future.result()


def split(size: int, flops: int, count: int | None = None) -> list[tuple[int, int]]:
    """Near-equal ranges [a, b) of size rows (or columns) for a product of ``flops``, one per
    thread (or count of them); a single range below blas.SMALL_GEMM_FLOPS."""
    if count is None:
        count = torch.get_num_threads() if flops >= blas.SMALL_GEMM_FLOPS else 1
    count = max(1, min(count, size))
    bounds = [size * k // count for k in range(count + 1)]
    return list(itertools.pairwise(bounds))


def run_team(kernel: Callable[..., None], jobs: list[tuple], alone: Callable[[], tuple]) -> None:
    """kernel(*job) for every job at once, each on its own thread of one OpenMP team, each with
    single-threaded BLAS: for loops whose threads meet at a barrier (:mod:`.sync`), which need
    every member running at once. Where the team comes smaller than asked (called inside
    another parallel region, an OpenMP thread limit) or torch's runtime is not GNU OpenMP, one
    thread runs kernel(*alone()) instead: all the work, with no barrier."""
    gomp = _gomp
    if gomp is None or len(jobs) == 1:
        with blas.threads(1):
            kernel(*(jobs[0] if len(jobs) == 1 else alone()))
        return
    errors: list[BaseException] = []

    def body(_data: int | None) -> None:
        me, team = gomp.omp_get_thread_num(), gomp.omp_get_num_threads()
        try:
            if team == len(jobs):
                kernel(*jobs[me])
            elif me == 0:
                kernel(*alone())
        except BaseException as e:
            errors.append(e)

    with blas.threads(1):
        gomp.GOMP_parallel(_BODY(body), None, len(jobs), 0)
    if errors:
        raise errors[0]


def _on_torch_threads(kernel: Callable[..., None], jobs: list[tuple]) -> None:
    """kernel(*job) for every job, spread over one OpenMP team of len(jobs) threads."""
    errors: list[BaseException] = []

    gomp = _gomp
    assert gomp is not None, "called only where torch runs on GNU OpenMP"

    def body(_data: int | None) -> None:
        me, team = gomp.omp_get_thread_num(), gomp.omp_get_num_threads()
        for k in range(me, len(jobs), team):  # a smaller team than asked for takes more each
            try:
                kernel(*jobs[k])
            except BaseException as e:
                errors.append(e)

    callback = _BODY(body)
    gomp.GOMP_parallel(callback, None, len(jobs), 0)
    if errors:
        raise errors[0]
