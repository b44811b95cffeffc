"""Row-major matrix products for the compiled loops, through the BLAS that SciPy ships.

Called from numba code with preallocated outputs and a small scratch (``Scratch``), so a step
of the recurrent loop allocates nothing. ``?gemm`` is reached through
``scipy.linalg.cython_blas``, the documented route numba itself uses for ``np.dot``.
"""

from __future__ import annotations

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
    return np.empty(5, np.int32), np.empty(2, dtype)


def _call(y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc):  # pragma: no cover - typed below
    raise NotImplementedError


@overload(_call)
def _call_impl(y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc):
    gemm = _sgemm if y.dtype == types.float32 else _dgemm
    return lambda y, ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc: gemm(
        ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc
    )


@njit(cache=True)
def _gemm(trans, x, w, y, beta, n_out, k, ldw, ints, scal):
    """y (B, N) = x (B, K) @ op(w) + beta * y, all C-contiguous, via column-major BLAS."""
    ints[0], ints[1], ints[2], ints[3], ints[4] = n_out, x.shape[0], k, ldw, n_out
    scal[0], scal[1] = 1.0, beta
    ip, sp = ints.ctypes.data, scal.ctypes.data
    isz, ssz = ints.itemsize, scal.itemsize
    _call(
        y,
        trans.ctypes.data,
        _N.ctypes.data,
        ip,
        ip + isz,
        ip + 2 * isz,
        sp,
        w.ctypes.data,
        ip + 3 * isz,
        x.ctypes.data,
        ip + 2 * isz,
        sp + ssz,
        y.ctypes.data,
        ip + 4 * isz,
    )


@njit(cache=True)
def matmul_wt(x, w, y, beta, ints, scal):
    """y (B, N) = x (B, K) @ w.T + beta * y, with w (N, K)."""
    _gemm(_T, x, w, y, beta, w.shape[0], w.shape[1], w.shape[1], ints, scal)


@njit(cache=True)
def matmul_w(x, w, y, beta, ints, scal):
    """y (B, N) = x (B, K) @ w + beta * y, with w (K, N)."""
    _gemm(_N, x, w, y, beta, w.shape[1], w.shape[0], w.shape[1], ints, scal)
