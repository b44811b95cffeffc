"""Sigmoid and tanh over contiguous 1-D arrays, written so LLVM vectorises them.

numba turns ``np.exp``/``np.tanh`` into scalar library calls; here float32 uses an exp of
its own (Cody-Waite range reduction, a degree-7 polynomial and the exponent set through integer
bits), accurate to a few float32 ulps, in loops with no branches that compile to SIMD code.
float64 keeps ``np.exp``, exact. Both use sigmoid(x) = 1 / (1 + e^-x) and
tanh(x) = (e^2x - 1) / (e^2x + 1), with arguments clamped to keep e^x finite.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

FASTMATH = {"contract", "arcp", "nsz", "afn", "reassoc"}  # no nnan/ninf: NaN must propagate
JIT = {"cache": True, "error_model": "numpy", "fastmath": FASTMATH}

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split in two so k * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_LO, _HI = np.float32(-87.0), np.float32(88.0)  # e^x stays a normal float32
_C2, _C3, _C4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)  # Taylor of e^r
_C5, _C6, _C7 = np.float32(1 / 120), np.float32(1 / 720), np.float32(1 / 5040)
_ONE = np.float32(1.0)


def exp_inplace(x, bits):  # pragma: no cover - typed below
    """x[:] = e^x; bits: int32 scratch at least as long as x."""
    raise NotImplementedError


@overload(exp_inplace, jit_options=JIT)
def _exp_inplace(x, bits):
    if x.dtype == types.float32:

        def exp32(x, bits):
            n = x.shape[0]
            for j in range(n):
                v = min(max(x[j], _LO), _HI)
                ki = np.int32(v * _LOG2E + np.float32(128.5)) - 128  # round(v / ln 2), >= 0 trunc
                k = np.float32(ki)
                r = v - k * _LN2_HI - k * _LN2_LO  # e^v = 2^k e^r, |r| <= ln2 / 2
                p = _C6 + r * _C7
                p = _C5 + r * p
                p = _C4 + r * p
                p = _C3 + r * p
                p = _C2 + r * p
                p = _ONE + r * p
                x[j] = _ONE + r * p
                bits[j] = (ki + 127) << 23  # the float32 2^k
            scale = bits[:n].view(np.float32)
            for j in range(n):
                x[j] *= scale[j]

        return exp32

    def exp64(x, bits):
        for j in range(x.shape[0]):
            x[j] = np.exp(min(max(x[j], -700.0), 700.0))

    return exp64


@njit(inline="always", **JIT)
def sigmoid_inplace(x, bits):
    """x[:] = σ(x)."""
    for j in range(x.shape[0]):
        x[j] = -x[j]
    exp_inplace(x, bits)
    for j in range(x.shape[0]):
        x[j] = 1 / (1 + x[j])


@njit(inline="always", **JIT)
def tanh_into(x, out, bits):
    """out[:] = tanh(x); out may be x."""
    for j in range(x.shape[0]):
        out[j] = 2 * min(max(x[j], -44.0), 44.0)
    exp_inplace(out, bits)
    for j in range(x.shape[0]):
        out[j] = (out[j] - 1) / (out[j] + 1)
