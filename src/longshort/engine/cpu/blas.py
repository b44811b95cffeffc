"""Row-major matrix products for the compiled loops, through the CBLAS ``?gemm`` interface.

Which BLAS: SciPy's bundled OpenBLAS by default; Intel MKL (the optional ``longshort[mkl]``
extra) on Intel CPUs where it is installed, or wherever ``LONGSHORT_BLAS=mkl`` asks for it, run
on the GNU OpenMP threading layer, the same thread pool torch uses. MKL buys the bfloat16
products (``cblas_gemm_bf16bf16f32``, AMX on Intel); OpenBLAS's AVX-512 kernels are twice as
fast as MKL on AMD (single thread, AMD EPYC Zen 5: 134 against 80 GFLOP/s at 32x256x1024,
212 against 116 at 128x512x2048; benchmarks/README.md). ``LONGSHORT_BLAS=openblas`` forces
OpenBLAS. Both are bound by symbol name, so numba can cache the loops on disk. Called with
preallocated outputs, a step of the recurrent loop allocates nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
from collections.abc import Iterator

import llvmlite.binding
import numpy as np
import torch  # noqa: F401  - loads the GNU OpenMP runtime MKL's layer links against
from numba import njit, types
from numba.extending import overload

from longshort.engine.cpu import small

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _intel() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any("GenuineIntel" in line for line in f if line.startswith("vendor_id"))
    except OSError:
        return False


def _want_mkl() -> bool:
    choice = os.environ.get("LONGSHORT_BLAS", "")
    if choice in ("mkl", "openblas"):
        return choice == "mkl"
    return _intel()


def _load() -> tuple[str, ctypes.CDLL, str]:
    """(name, library, symbol prefix) of the BLAS to use: see the module's docstring."""
    mkl = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*"))) if _want_mkl() else []
    # MKL's threading layer must be chosen before it loads (GNU OpenMP: torch's own pool);
    # OpenBLAS's worker threads spin for about 2^28 cycles after each call unless told
    # otherwise, which on 2 cores slowed the torch ops after a layer 2-3x. Set only for the
    # library about to load, and values the user set win.
    for path in mkl:
        os.environ.setdefault("MKL_THREADING_LAYER", "GNU")
        try:
            return "mkl", ctypes.CDLL(path), ""
        except OSError:
            continue
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    import scipy.linalg

    libs = os.path.join(
        os.path.dirname(os.path.dirname(scipy.linalg.__file__)),
        "..",
        "scipy.libs",
        "libscipy_openblas*.so",
    )
    return "openblas", ctypes.CDLL(sorted(glob.glob(libs))[0]), "scipy_"


PROVIDER, _lib, _prefix = _load()
_set_threads_local = getattr(_lib, "MKL_Set_Num_Threads_Local", None)
if _set_threads_local is not None:
    _set_threads_local.restype, _set_threads_local.argtypes = ctypes.c_int, [ctypes.c_int]
_set_threads_global = getattr(_lib, f"{_prefix}openblas_set_num_threads", None)
_get_threads_global = getattr(_lib, f"{_prefix}openblas_get_num_threads", None)

# Below this many flops a product runs faster on one thread than split across two: waking the
# other thread costs more than it saves. MKL, 2 cores: 16x64x256 took 6.6 us on two threads,
# less on one. OpenBLAS, whose threads sleep between calls (OPENBLAS_THREAD_TIMEOUT below),
# 2 cores of an AMD EPYC Zen 5: (16 x 64) @ (64 x 512) 41 us on two threads against 12 on one,
# (16 x 128) @ (128 x 512) 48 against 23; two threads win from about 16 MFLOP.
SMALL_GEMM_FLOPS = 1 << 20 if PROVIDER == "mkl" else 12 << 20


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Run this thread's BLAS products on ``count`` threads inside the block. MKL's setting
    is per calling thread; OpenBLAS has only a process-wide one, restored on exit."""
    if _set_threads_local is not None:
        previous = _set_threads_local(count)
        try:
            yield
        finally:
            _set_threads_local(previous)
    elif _set_threads_global is not None and _get_threads_global is not None:
        previous = _get_threads_global()
        _set_threads_global(count)
        try:
            yield
        finally:
            _set_threads_global(previous)
    else:  # pragma: no cover - every supported BLAS has one of the two
        yield


def set_thread_local_single() -> None:
    """For a worker thread that only ever runs per-row loops: MKL on one thread, for good."""
    if _set_threads_local is not None:
        _set_threads_local(1)


@contextlib.contextmanager
def step_threads(flops: int) -> Iterator[None]:
    """Run the products inside the block on one thread when each has under SMALL_GEMM_FLOPS
    (a loop's per-step products, or one small product)."""
    if flops >= SMALL_GEMM_FLOPS:
        yield
        return
    with threads(1):
        yield


for _t in ("s", "d"):
    _fn = getattr(_lib, f"{_prefix}cblas_{_t}gemm")
    llvmlite.binding.add_symbol(
        f"longshort_cblas_{_t}gemm", ctypes.cast(_fn, ctypes.c_void_p).value
    )


def _sig(real):
    i, p = types.int32, types.intp
    return types.void(i, i, i, i, i, i, real, p, i, p, i, real, p, i)


_sgemm = types.ExternalFunction("longshort_cblas_sgemm", _sig(types.float32))
_dgemm = types.ExternalFunction("longshort_cblas_dgemm", _sig(types.float64))

# bfloat16 inputs, float32 accumulation and output (AMX on CPUs that have it): MKL only. The
# bf16 operands are passed as uint16 arrays of their bits.
BF16 = hasattr(_lib, "cblas_gemm_bf16bf16f32")
if BF16:
    llvmlite.binding.add_symbol(
        "longshort_cblas_gemm_bf16",
        ctypes.cast(_lib.cblas_gemm_bf16bf16f32, ctypes.c_void_p).value,
    )
_bf16gemm = types.ExternalFunction("longshort_cblas_gemm_bf16", _sig(types.float32))


def _gemm(y, ta, tb, m, n, k, a, lda, b, ldb, beta, ldc):  # pragma: no cover - typed below
    raise NotImplementedError


@overload(_gemm)
def _gemm_impl(y, ta, tb, m, n, k, a, lda, b, ldb, beta, ldc):
    if a.dtype == types.uint16:

        def bf16gemm(y, ta, tb, m, n, k, a, lda, b, ldb, beta, ldc):
            _bf16gemm(
                ROW_MAJOR,
                ta,
                tb,
                m,
                n,
                k,
                np.float32(1.0),
                a.ctypes.data,
                lda,
                b.ctypes.data,
                ldb,
                np.float32(beta),
                y.ctypes.data,
                ldc,
            )

        return bf16gemm
    if y.dtype == types.float32:

        def sgemm(y, ta, tb, m, n, k, a, lda, b, ldb, beta, ldc):
            _sgemm(
                ROW_MAJOR,
                ta,
                tb,
                m,
                n,
                k,
                np.float32(1.0),
                a.ctypes.data,
                lda,
                b.ctypes.data,
                ldb,
                np.float32(beta),
                y.ctypes.data,
                ldc,
            )

        return sgemm

    def dgemm(y, ta, tb, m, n, k, a, lda, b, ldb, beta, ldc):
        _dgemm(
            ROW_MAJOR,
            ta,
            tb,
            m,
            n,
            k,
            1.0,
            a.ctypes.data,
            lda,
            b.ctypes.data,
            ldb,
            np.float64(beta),
            y.ctypes.data,
            ldc,
        )

    return dgemm


@njit(cache=True, nogil=True)
def gemm_wt(x, w, y, beta):
    """y (B, N) = x (B, K) @ w.T + beta * y, with w (N, K); all C-contiguous. Up to
    small.SMALL_ROWS float rows times a weight of small.MIN_WEIGHT elements or more run on
    :mod:`.small`'s loops, the rest on BLAS."""
    n, k = w.shape
    rows = x.shape[0]
    if small.handles(x) and (rows <= small.FEW_ROWS or (
        rows <= small.SMALL_ROWS and n * k >= small.MIN_WEIGHT
    )):  # fmt: skip
        small.few_rows_wt(x, w, y, beta)
        return
    _gemm(y, NO_TRANS, TRANS, rows, n, k, x, k, w, k, beta, n)


@njit(cache=True, nogil=True)
def gemm_w(x, w, y, beta):
    """y (B, N) = x (B, K) @ w + beta * y, with w (K, N); up to small.FEW_ROWS float rows on
    :mod:`.small`'s loops."""
    k, n = w.shape
    if small.handles(x) and x.shape[0] <= small.FEW_ROWS:
        small.few_rows_w(x, w, y, beta)
        return
    _gemm(y, NO_TRANS, NO_TRANS, x.shape[0], n, k, x, k, w, n, beta, n)


@njit(cache=True, nogil=True)
def gemm_at(a, b, y, beta):
    """y (N, K) = a.T @ b + beta * y, with a (M, N) and b (M, K): a sum over the M rows.
    a may be a column slice of a wider array (rows a.strides[0] apart); b, y C-contiguous.
    Up to small.FEW_ROWS float rows on :mod:`.small`'s loops."""
    m, n = a.shape
    if small.handles(a) and m <= small.FEW_ROWS:
        small.few_rows_at(a, b, y, beta)
        return
    k = b.shape[1]
    lda = max(a.strides[0] // a.itemsize, n, 1)  # an empty a's strides may say anything
    _gemm(y, TRANS, NO_TRANS, n, k, m, a, lda, b, k, beta, k)


@njit(cache=True, nogil=True)
def to_bf16(x, out):
    """out (uint16 bits) = x (float32) rounded to bfloat16, nearest-even; NaN stays NaN.
    Branch-free (a select for NaN), so LLVM vectorises it."""
    bits = x.view(np.uint32)
    for j in range(x.shape[0]):
        u = bits[j]
        nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
        rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        quiet = (u >> np.uint32(16)) | np.uint32(0x40)
        out[j] = np.uint16(quiet if nan else rounded)


def as_operand(x, w, xb):  # pragma: no cover - typed below
    """x as an operand of a product with w: x itself for float weights; for bf16 weights
    (uint16 bits, or packed.pack's uint32 pairs of them), x rounded to bf16 into the scratch xb,
    which is returned."""
    raise NotImplementedError


@overload(as_operand, inline="always")
def _as_operand(x, w, xb):
    if w.dtype in (types.uint16, types.uint32):  # bf16 bits, or packed pairs of them

        def cast(x, w, xb):
            to_bf16(x.reshape(-1), xb.reshape(-1))
            return xb

        return cast
    return lambda x, w, xb: x
