"""Sigmoid and tanh over contiguous 1-D arrays, written so LLVM vectorises them.

numba turns ``np.exp``/``np.tanh`` into scalar library calls (about 15 ns an element here).
Both dtypes use an exp of their own instead: Cody-Waite range reduction, a polynomial and the
factor 2^k built from integer bits, fused with the gate formula in one branch-free loop.
float32 (degree 7): 0.66 ns an element for all four gates, measured against 1.9 ns for the
same math in separate passes; max |error| 1.8e-7 for σ and tanh near 1 (3 ulps). Its 2^k is
made in registers, 32-bit integers throughout (:func:`_pow2_32`), and every constant of a
float32 loop is a float32: numba computes ``2 * x`` or ``1 - x`` in float64 for a float32
x, 4 lanes a vector and conversions both ways (tanh_into did so until it took float32
constants; with the 2^k once stored to and read back from an int32 scratch array, a
(1, 32) LSTM step's gates took 217 ns, now 163). float64
(degree 12, its 2^k made through bit casts, as AVX2 has no vector conversion from float64
to int64): 1.9 ns an element for tanh against about 15 with ``np.exp``; relative error under
2e-15 for |z| < 40, where σ and tanh are not yet saturated (fastmath's reassociation makes
it grow with |z|, to 2.4e-14 at the clamp, where σ is 1 or e^z to within it). Every
nonlinearity is written as
shift + gain / (1 + e^(scale·z)): σ(z) = 1 / (1 + e^-z), tanh(z) = 1 - 2 / (1 + e^2z).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

FASTMATH = {"contract", "arcp", "nsz", "afn", "reassoc"}  # no nnan/ninf: NaN must propagate
JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": FASTMATH}

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 split in two so k * _LN2_HI is exact
_LN2_LO = np.float32(-2.12194440e-4)
_C2, _C3, _C4 = np.float32(1 / 2), np.float32(1 / 6), np.float32(1 / 24)  # Taylor of e^r
_C5, _C6, _C7 = np.float32(1 / 120), np.float32(1 / 720), np.float32(1 / 5040)
_ONE, _LIMIT = np.float32(1.0), np.float32(87.0)  # e^x stays a normal float32
_HALF, _TWO = np.float32(0.5), np.float32(2.0)


def gate_coefficients(
    hidden: int, dtype, blocks: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale, shift, gain) over the gate columns [i, f, g, o] (or a variant's three blocks,
    g always second to last) so that shift + gain / (1 + exp(scale * z)) is σ(z) for the gates
    and tanh(z) for g."""
    scale = np.full(blocks * hidden, -1.0, dtype)
    shift = np.zeros(blocks * hidden, dtype)
    gain = np.ones(blocks * hidden, dtype)
    g = slice((blocks - 2) * hidden, (blocks - 1) * hidden)
    scale[g], shift[g], gain[g] = 2.0, 1.0, -2.0  # tanh(z) = 1 - 2 / (1 + e^2z)
    return scale, shift, gain


def _constant_of(value: float, doc: str):
    """A function f(y) that numba compiles to the constant `value` in y's dtype (float32 or
    float64): ``1 - x`` with an int or Python float 1 is computed in float64 for a float32 x
    (numba's NumPy rules), 4 lanes a vector and two conversions."""

    def constant(y):  # pragma: no cover - typed below
        raise NotImplementedError

    @overload(constant, inline="always")
    def _impl(y):
        c = np.float32(value) if y.dtype == types.float32 else np.float64(value)
        return lambda y: c

    constant.__doc__ = doc
    return constant


zero_of = _constant_of(0.0, "0 in y's dtype, so that sums keep y's precision.")
one_of = _constant_of(1.0, "1 in y's dtype, for 1 - x in y's precision.")


@njit(inline="always", **JIT)
def copy(src, dst):
    """dst[:] = src for 1-D arrays of one length, as a loop: numba's slice assignment compiles
    its broadcasting checks with their error strings, seconds of a kernel's first compile."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(inline="always", **JIT)
def _clamp(v, limit):
    """v limited to [-limit, limit]; NaN stays NaN (min/max would turn it into a bound)."""
    w = limit if v > limit else v
    return -limit if w < -limit else w


@njit(inline="always", **JIT)
def _nearest_k(v):
    """k = round(v / ln 2) as a float32, by floor (vroundps): the int32 the exponent bits need
    comes from it, never the other way. numba widens int32 arithmetic to int64, which AVX2
    cannot convert to float in vectors (LLVM made it 8 scalar conversions a vector: the gates
    ran 3.5x slower there), and a float k made as n - 128 would let fastmath's reassociation
    split k * ln2 in the range reduction, which then loses its exactness."""
    return np.floor(v * _LOG2E + _HALF)


@njit(inline="always", **JIT)
def _exp32_poly(v, k):
    """e^v / 2^k for float32 v in [-87, 87] and k = round(v / ln 2), a float32."""
    r = v - k * _LN2_HI - k * _LN2_LO  # |r| <= ln2 / 2
    p = _C6 + r * _C7
    p = _C5 + r * p
    p = _C4 + r * p
    p = _C3 + r * p
    p = _C2 + r * p
    p = _ONE + r * p
    return _ONE + r * p


@intrinsic
def _pow2_32(typingctx, k):
    """2^k as a float32 for a float32 k holding an integer in [-126, 127]: the exponent field
    k + 127, in 32-bit integers throughout (numba's own int32 arithmetic widens to int64,
    which AVX2 cannot vectorise), so that the loops around it stay 8 floats a vector."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        n = builder.add(builder.fptosi(args[0], i32), i32(127))
        return builder.bitcast(builder.shl(n, i32(23)), ir.FloatType())

    return types.float32(types.float32), codegen


@njit(inline="always", **JIT)
def _exp32(v):
    """e^v for float32 v, clamped to [-87, 87]."""
    u = _clamp(v, _LIMIT)
    k = _nearest_k(u)
    return _exp32_poly(u, k) * _pow2_32(k)


_LN2_HI64 = 6.93147180369123816490e-01  # fdlibm's ln 2 in two parts: k * hi is exact
_LN2_LO64 = 1.90821492927058770002e-10
_INV_FACT = tuple(1.0 / float(np.prod(np.arange(1, n + 1))) for n in range(13))  # 1 / n!
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: an integer k added to it sits in the low bits
_MAGIC_BITS = np.int64(0x4338000000000000)  # its bits


@intrinsic
def _bits64(typingctx, v):
    """The bits of a float64 as an int64 (a cast, no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _float64(typingctx, bits):
    """An int64's bits as a float64 (a cast, no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(inline="always", **JIT)
def _exp64(v):
    """e^v for float64 v, clamped to [-700, 700]: Cody-Waite reduction to |r| <= ln2 / 2, the
    Taylor polynomial of degree 12 (remainder under 2e-16 relative), times 2^k built from
    its exponent bits. k's int64 comes from the bits of k + 1.5 * 2^52 (AVX2 converts no
    float64 vector to int64); k itself is a floor, so fastmath cannot fold that sum away."""
    u = _clamp(v, 700.0)
    k = np.floor(u * 1.4426950408889634 + 0.5)
    r = u - k * _LN2_HI64 - k * _LN2_LO64
    c = _INV_FACT
    p = c[11] + r * c[12]
    p = c[10] + r * p
    p = c[9] + r * p
    p = c[8] + r * p
    p = c[7] + r * p
    p = c[6] + r * p
    p = c[5] + r * p
    p = c[4] + r * p
    p = c[3] + r * p
    p = c[2] + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    n = _bits64(k + _MAGIC) - _MAGIC_BITS
    return p * _float64((n + 1023) << 52)


def affine_logistic(x, out, scale, shift, gain):  # pragma: no cover - typed below
    """out[j] = shift[j] + gain[j] / (1 + exp(scale[j] * x[j])); out may be x."""
    raise NotImplementedError


@overload(affine_logistic, inline="always")
def _affine_logistic(x, out, scale, shift, gain):
    if x.dtype == types.float32:

        def fast(x, out, scale, shift, gain):
            for j in range(x.shape[0]):
                out[j] = shift[j] + gain[j] / (_ONE + _exp32(scale[j] * x[j]))

        return fast

    def exact(x, out, scale, shift, gain):
        for j in range(x.shape[0]):
            out[j] = shift[j] + gain[j] / (1.0 + _exp64(scale[j] * x[j]))

    return exact


def tanh_into(x, out):  # pragma: no cover - typed below
    """out[:] = tanh(x); out may be x."""
    raise NotImplementedError


@overload(tanh_into, inline="always")
def _tanh_into(x, out):
    if x.dtype == types.float32:

        def fast(x, out):
            for j in range(x.shape[0]):
                out[j] = _ONE - _TWO / (_ONE + _exp32(_TWO * x[j]))

        return fast

    def exact(x, out):
        for j in range(x.shape[0]):
            out[j] = 1.0 - 2.0 / (1.0 + _exp64(2 * x[j]))

    return exact


def sigmoid_into(x, out):  # pragma: no cover - typed below
    """out[:] = σ(x); out may be x."""
    raise NotImplementedError


@overload(sigmoid_into, inline="always")
def _sigmoid_into(x, out):
    if x.dtype == types.float32:

        def fast(x, out):
            for j in range(x.shape[0]):
                out[j] = _ONE / (_ONE + _exp32(-x[j]))

        return fast

    def exact(x, out):
        for j in range(x.shape[0]):
            out[j] = 1.0 / (1.0 + _exp64(-x[j]))

    return exact


def gates_inplace(z, bias, scale, shift, gain):  # pragma: no cover - typed below
    """z + bias, then all four gate nonlinearities of one row z (4H,), in place, in one
    vectorised pass (the bias in a pass of its own cost a B = 1 step 130 of its 700 ns on a
    Zen 3: at B = 1 a step is a chain of dependent loops, each paid in latency)."""
    raise NotImplementedError


@overload(gates_inplace, inline="always")
def _gates_inplace(z, bias, scale, shift, gain):
    if z.dtype == types.float32:

        def fast(z, bias, scale, shift, gain):
            for j in range(z.shape[0]):
                e = _exp32(scale[j] * (z[j] + bias[j]))
                z[j] = shift[j] + gain[j] / (_ONE + e)

        return fast

    def exact(z, bias, scale, shift, gain):
        for j in range(z.shape[0]):
            z[j] = shift[j] + gain[j] / (1.0 + _exp64(scale[j] * (z[j] + bias[j])))

    return exact
