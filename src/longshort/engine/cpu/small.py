"""Products with few rows, written for numba, on weights as they are: a one-step call's (a cell's)
products with a small batch. The loops, which reuse their weights at every step, pack them once
and run :mod:`.packed`'s micro-kernel instead.

A BLAS ``gemm`` packs its operands on every call; with a handful of rows that packing of the
recurrent weights (4H x P, a megabyte at H = 256) is most of the time: OpenBLAS took 67 us for a
(2 x 256) @ (256 x 1024) product that these loops do in 16 us (AMD EPYC Zen 5, one thread).
Each weight row is read once per call and used for every row of x, the sums over K vectorised
by LLVM (fastmath reassoc lets it split them). Above SMALL_ROWS rows BLAS wins again, and so it
does for weights under MIN_WEIGHT elements, whose packing is cheap: (8 x 64) @ (64 x 256) took
1.5 us in OpenBLAS and 3.8 us here.
"""

from __future__ import annotations

from numba import njit, types
from numba.extending import overload

from longshort.engine.cpu.activations import FASTMATH, zero_of

SMALL_ROWS = 12
MIN_WEIGHT = 1 << 16
# Up to this many rows the loops run whatever the weight's size: a BLAS call's own cost is
# most of such a product. Measured on a Zen 3 (AVX2), one thread, OpenBLAS against these
# loops: (1 x 32) @ (32 x 256) 5.98 against 0.57 us, (4 x 64) @ (64 x 256) 11.1 against 2.7.
FEW_ROWS = 4
_JIT = {"cache": True, "nogil": True, "fastmath": FASTMATH, "error_model": "numpy"}


def handles(x) -> bool:  # pragma: no cover - typed below
    """True at compile time for float operands (bf16 bits go to BLAS)."""
    raise NotImplementedError


@overload(handles, inline="always")
def _handles(x):
    ok = x.dtype in (types.float32, types.float64)
    return lambda x: ok


@njit(**_JIT)
def few_rows_wt(x, w, y, beta):
    """y (M, N) = x (M, K) @ w.T + beta * y, with w (N, K); beta 0 or 1 (y not read at 0)."""
    m, k = x.shape
    n = w.shape[0]
    zero = zero_of(y)
    j = 0
    while j + 4 <= n:
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        for r in range(m):
            xr = x[r]
            a0 = a1 = a2 = a3 = zero
            for i in range(k):
                xi = xr[i]
                a0 += xi * w0[i]
                a1 += xi * w1[i]
                a2 += xi * w2[i]
                a3 += xi * w3[i]
            if beta != 0:
                a0 += y[r, j]
                a1 += y[r, j + 1]
                a2 += y[r, j + 2]
                a3 += y[r, j + 3]
            y[r, j], y[r, j + 1], y[r, j + 2], y[r, j + 3] = a0, a1, a2, a3
        j += 4
    for jj in range(j, n):
        for r in range(m):
            a = zero
            for i in range(k):
                a += x[r, i] * w[jj, i]
            y[r, jj] = a + y[r, jj] if beta != 0 else a


@njit(**_JIT)
def few_rows_w(x, w, y, beta):
    """y (M, N) = x (M, K) @ w + beta * y, with w (K, N): each row of y a sum of w's rows,
    vectorised along N; beta 0 or 1 (y not read at 0)."""
    m, k = x.shape
    for r in range(m):
        yr = y[r]
        if beta == 0:
            yr[:] = 0
        for i in range(k):
            xi, wi = x[r, i], w[i]
            for j in range(yr.shape[0]):
                yr[j] += xi * wi[j]


@njit(**_JIT)
def few_rows_at(a, b, y, beta):
    """y (N, K) = a.T @ b + beta * y, a sum over the M rows of a (M, N) and b (M, K), for few
    M: each row of y a sum of b's rows, vectorised along K; beta 0 or 1 (y not read at 0)."""
    m, n = a.shape
    for j in range(n):
        yj = y[j]
        if beta == 0:
            yj[:] = 0
        for r in range(m):
            ar, br = a[r, j], b[r]
            for i in range(yj.shape[0]):
                yj[i] += ar * br[i]
