"""Row-major matrix products for the compiled loops, through the BLAS that SciPy ships.

Called from numba code with preallocated outputs and a small scratch (``Scratch``), so a step
of the recurrent loop allocates nothing. ``?gemm`` is reached through
``scipy.linalg.cython_blas``, the documented route numba itself uses for ``np.dot``.
"""

from __future__ import annotations

import os

# OpenBLAS worker threads spin for about 2^28 cycles after each call before they sleep; on a
# 2-core machine that spinning slowed every torch op after a longshort layer 2-3x (a training
# step of the sentiment task: 26 ms -> 10 ms with 2^4). Read once, when SciPy's BLAS loads below;
# a value the user set wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import llvmlite.binding
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address, overload

# Bound by symbol name (not by a pointer baked into the code) so numba can cache to disk.
for _name in ("sgemm", "dgemm"):
    llvmlite.binding.add_symbol(
        f"longshort_{_name}", get_cython_function_address("scipy.linalg.cython_blas", _name)
    )
_SIG = types.void(*([types.intp] * 13))  # Fortran ABI: every argument by address
_sgemm = types.ExternalFunction("longshort_sgemm", _SIG)
_dgemm = types.ExternalFunction("longshort_dgemm", _SIG)

_N, _T = np.array([ord("N")], np.uint8), np.array([ord("T")], np.uint8)


def scratch(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The (ints, scalars) scratch every gemm call below takes; allocate once per loop."""
    return np.empty(6, np.int32), np.empty(2, dtype)


def _call(y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc):  # pragma: no cover - typed below
    raise NotImplementedError


@overload(_call)
def _call_impl(y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc):
    gemm = _sgemm if y.dtype == types.float32 else _dgemm
    return lambda y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc: gemm(
        ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc
    )


@njit(cache=True)
def _gemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc, ints, scal):
    """Column-major c (m, n) = op(a) @ op(b) + beta * c, every argument passed by address."""
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = m, n, k, lda, ldb, ldc
    scal[0], scal[1] = 1.0, beta
    ip, sp = ints.ctypes.data, scal.ctypes.data
    isz, ssz = ints.itemsize, scal.itemsize
    _call(
        c,
        ta.ctypes.data,
        tb.ctypes.data,
        ip,
        ip + isz,
        ip + 2 * isz,
        sp,
        a.ctypes.data,
        ip + 3 * isz,
        b.ctypes.data,
        ip + 4 * isz,
        sp + ssz,
        c.ctypes.data,
        ip + 5 * isz,
    )


# Row-major products as column-major BLAS calls: a row-major (r, s) array is a column-major
# (s, r) one, its transpose, so y = x @ w.T is computed as y.T = w @ x.T.


@njit(cache=True)
def matmul_wt(x, w, y, beta, ints, scal):
    """y (B, N) = x (B, K) @ w.T + beta * y, with w (N, K)."""
    n, k = w.shape
    _gemm(_T, _N, n, x.shape[0], k, w, k, x, k, beta, y, n, ints, scal)


@njit(cache=True)
def matmul_w(x, w, y, beta, ints, scal):
    """y (B, N) = x (B, K) @ w + beta * y, with w (K, N)."""
    k, n = w.shape
    _gemm(_N, _N, n, x.shape[0], k, w, n, x, k, beta, y, n, ints, scal)


@njit(cache=True)
def matmul_at(a, b, y, beta, ints, scal):
    """y (N, K) = a.T @ b + beta * y, with a (M, N) and b (M, K): a sum over the M rows."""
    m, n = a.shape
    k = b.shape[1]
    _gemm(_N, _T, k, n, m, b, k, a, n, beta, y, k, ints, scal)
