"""The loops' per-step recurrent product on weights packed once per call: a register-blocked
micro-kernel written in LLVM IR through numba, so it stays in registers and in vectors.

A BLAS ``gemm`` packs both operands on every call. In a recurrent loop the weights are the same
at every step, and the rows are few (a thread's share of the batch), so that packing and the
call itself were most of a step: OpenBLAS reached 90 GFLOP/s on a (16 x 128) @ (128 x 512)
product on one core of an AMD EPYC Zen 5, whose 1024^3 peak is about 240. Here the weights are
packed once per call into panels of NR columns (:func:`pack`), and each block of up to 4 rows
times one panel is one :func:`_block`: 4 x NV vector accumulators kept in registers, per k one
load of the panel row and one broadcast of each row's x[r, k], NV fused multiply-adds per row.
Measured on that core: 240 GFLOP/s at (16 x 128) @ (128 x 512), 230 at (32 x 256) @ (256 x 1024).
(numba's own loops could not be made to keep such accumulators in registers: LLVM left them in
memory at 35 GFLOP/s.)

The vector width follows the CPU numba compiles for: 64-byte vectors and NV = 4 with AVX-512
(4 x 4 accumulators of the 32 registers), 32-byte vectors and NV = 3 with AVX2 (12 of 16),
16-byte vectors and NV = 4 elsewhere (and for NUMBA_CPU_NAME=generic). numba's disk cache is
keyed on the CPU, so a cached kernel is never run on a CPU it was not built for.

An AVX2 build on an AVX-512 machine needs both variables: NUMBA_CPU_NAME=haswell
NUMBA_CPU_FEATURES=+avx,+avx2,+fma,+sse4.2. With NUMBA_CPU_NAME alone numba keeps the host's
features (its rule for every name but "generic"), so its code and this kernel stay AVX-512.
"""

from __future__ import annotations

import functools
import math

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload

from longshort.engine.cpu import blas
from longshort.engine.cpu.activations import zero_of

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}
MR = 4  # rows of one block (BLIS's MR): MR x NV vector accumulators


def _features() -> dict[str, bool]:
    """The CPU features numba compiles for, by numba's own rule: NUMBA_CPU_FEATURES when set
    (numba sets it empty for NUMBA_CPU_NAME=generic: a portable cache, the 16-byte kernel),
    else the host's, whatever NUMBA_CPU_NAME says."""
    if config.CPU_FEATURES is not None:
        items = (f.strip() for f in config.CPU_FEATURES.split(",") if f.strip())
        return {f[1:]: f[0] == "+" for f in items}
    return dict(llvmlite.binding.get_host_cpu_features())


_FEATURES = _features()


def _vector_shape() -> tuple[int, int]:
    """(bytes per vector, vectors per panel row) for the CPU numba compiles for."""
    features = _FEATURES
    if features.get("avx512f"):
        return 64, 4
    if features.get("avx2") or features.get("avx"):
        return 32, 3
    return 16, 4


VECTOR_BYTES, NV = _vector_shape()
# bfloat16 products (AVX512-BF16's dot product of bf16 pairs into float32): on CPUs that have it.
BF16 = VECTOR_BYTES == 64 and bool(_FEATURES.get("avx512bf16"))


class _BFloat(ir.Type):
    """LLVM's bfloat, which llvmlite's IR builder does not name."""

    def _to_string(self):
        return "bfloat"

    def __eq__(self, other):
        return isinstance(other, _BFloat)

    def __hash__(self):
        return hash("bfloat")


def panel_width(dtype: np.dtype) -> int:
    """NR, the columns of one packed panel, for float32 or float64 weights."""
    return NV * VECTOR_BYTES // np.dtype(dtype).itemsize


class _Emit:
    """LLVM IR for one block: the vector type, constants and addressing of :func:`_block`."""

    def __init__(self, context, builder, real):
        self.b = builder
        self.ft = context.get_value_type(real)
        bits = 32 if real == types.float32 else 64
        self.lanes = VECTOR_BYTES * 8 // bits
        self.width = NV * self.lanes
        self.vt = ir.VectorType(self.ft, self.lanes)
        self.intp = context.get_value_type(types.intp)
        fn = ir.FunctionType(self.vt, [self.vt] * 3)
        name = f"llvm.fma.v{self.lanes}f{bits}"
        self.fma = cgutils.get_or_insert_function(builder.module, fn, name)

    def const(self, n):
        return ir.Constant(self.intp, n)

    def ptr(self, address):
        return self.b.inttoptr(address, self.ft.as_pointer())

    def at(self, ptr, row, ld, col):
        """The element pointer ptr + row * ld + col (row a constant, ld and col values)."""
        return self.b.gep(ptr, [self.b.add(self.b.mul(self.const(row), ld), col)])

    def vec(self, ptr, offset):
        """A vector pointer at ptr + offset elements (unaligned: loads and stores align=4)."""
        return self.b.bitcast(self.b.gep(ptr, [offset]), self.vt.as_pointer())

    def splat(self, x):
        v = self.b.insert_element(ir.Constant(self.vt, ir.Undefined), x, ir.IntType(32)(0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), [0] * self.lanes)
        return self.b.shuffle_vector(v, ir.Constant(self.vt, ir.Undefined), zeros)


# Independent chains of accumulators over k by the rows of a block: an FMA waits for the one
# before it on its accumulator (4-5 cycles) while two issue a cycle, so one row's NV chains
# leave the units idle 2/3 of the time. A block of 1 row (a B = 1 step) sums k in 4 interleaved
# chains, 2 rows in 2. Measured on a Zen 3 (AVX2, one thread), (1 x 32) @ (32 x 128) from L1:
# 424 ns a product with one chain, 354 with four; from L2 (H = 128) both read at L2 speed.
CHAINS = {1: 4, 2: 2}


def _multiply(e: _Emit, rows: int, k, a, lda, b, nv: int) -> list[list]:
    """Accumulators acc[r][v] = Σ_κ a[r, κ] b[κ, v-th vector] for the first nv vectors of
    the panel, as allocas that LLVM keeps in registers: per κ, nv loads of the panel row, one
    broadcast and nv FMAs per row; the κ's dealt round-robin to CHAINS[rows] sets of
    accumulators, summed at the end. a, b: addresses."""
    a, b = e.ptr(a), e.ptr(b)
    chains = CHAINS.get(rows, 1)
    zero = ir.Constant(e.vt, [ir.Constant(e.ft, 0.0)] * e.lanes)
    accs = [
        [[cgutils.alloca_once_value(e.b, zero) for _ in range(nv)] for _ in range(rows)]
        for _ in range(chains)
    ]

    def one_k(kk, chain):
        base = e.b.mul(kk, e.const(e.width))
        panel = [
            e.b.load(e.vec(b, e.b.add(base, e.const(v * e.lanes))), align=4) for v in range(nv)
        ]
        for r in range(rows):
            x = e.splat(e.b.load(e.at(a, r, lda, kk)))
            for v in range(nv):
                acc = chain[r][v]
                e.b.store(e.b.call(e.fma, [x, panel[v], e.b.load(acc)]), acc)

    rounds = e.b.udiv(k, e.const(chains))
    with cgutils.for_range(e.b, rounds) as loop:
        first = e.b.mul(loop.index, e.const(chains))
        for c in range(chains):
            one_k(e.b.add(first, e.const(c)), accs[c])
    done = e.b.mul(rounds, e.const(chains))
    with cgutils.for_range_slice(e.b, done, k, e.const(1)) as (kk, _):
        one_k(kk, accs[0])
    for chain in accs[1:]:
        for r in range(rows):
            for v in range(nv):
                total = e.b.fadd(e.b.load(accs[0][r][v]), e.b.load(chain[r][v]))
                e.b.store(total, accs[0][r][v])
    return accs[0]


def _multiply_bf16(e: _Emit, rows: int, k, a, lda, b, nv: int) -> list[list]:
    """As :func:`_multiply` for bfloat16 bits: a (uint16) rows, b a panel of bf16 pairs
    (ceil(k / 2), NR) uint32. Per pair of k's, one dot product of pairs per vector and row
    (vdpbf16ps: float32 accumulators, exact products); an odd k's last pair pads a with 0."""
    i16, i32 = ir.IntType(16), ir.IntType(32)
    vi, vb = ir.VectorType(i32, e.lanes), ir.VectorType(_BFloat(), 2 * e.lanes)
    fn = ir.FunctionType(e.vt, [e.vt, vb, vb])
    dot = cgutils.get_or_insert_function(e.b.module, fn, "llvm.x86.avx512bf16.dpbf16ps.512")
    a16, b_vecs = e.b.inttoptr(a, i16.as_pointer()), e.b.inttoptr(b, vi.as_pointer())
    zero = ir.Constant(e.vt, [ir.Constant(e.ft, 0.0)] * e.lanes)
    accs = [[cgutils.alloca_once_value(e.b, zero) for _ in range(nv)] for _ in range(rows)]
    splat = ir.Constant(ir.VectorType(i32, e.lanes), [0] * e.lanes)

    def pair_step(kp, pairs):
        base = e.b.mul(kp, e.const(NV))
        panel = [e.b.load(e.b.gep(b_vecs, [e.b.add(base, e.const(v))]), align=4) for v in range(nv)]
        for r, pair in enumerate(pairs):
            x = e.b.insert_element(ir.Constant(vi, ir.Undefined), pair, i32(0))
            x = e.b.bitcast(e.b.shuffle_vector(x, ir.Constant(vi, ir.Undefined), splat), vb)
            for v in range(nv):
                acc = accs[r][v]
                e.b.store(e.b.call(dot, [e.b.load(acc), x, e.b.bitcast(panel[v], vb)]), acc)

    pairs_k = e.b.lshr(k, e.const(1))
    with cgutils.for_range(e.b, pairs_k) as loop:
        kk = e.b.shl(loop.index, e.const(1))
        ptrs = [e.b.bitcast(e.at(a16, r, lda, kk), i32.as_pointer()) for r in range(rows)]
        pair_step(loop.index, [e.b.load(p, align=2) for p in ptrs])
    odd = e.b.icmp_signed("!=", e.b.and_(k, e.const(1)), e.const(0))
    with e.b.if_then(odd):
        last = e.b.sub(k, e.const(1))
        pair_step(pairs_k, [e.b.zext(e.b.load(e.at(a16, r, lda, last)), i32) for r in range(rows)])
    return accs


def _store_whole(e: _Emit, accs, add: bool, c, ldc) -> None:
    """Every column of the panel: one vector store per accumulator (c read first if add)."""
    for r, row in enumerate(accs):
        for v, acc in enumerate(row):
            dst = e.vec(e.at(c, r, ldc, e.const(0)), e.const(v * e.lanes))
            val = e.b.load(acc)
            if add:
                val = e.b.fadd(val, e.b.load(dst, align=4))
            e.b.store(val, dst, align=4)


def _store_part(e: _Emit, accs, add: bool, cols, c, ldc) -> None:
    """The first ``cols`` columns only (the last panel of a width NR does not divide): the
    accumulators go to a tile on the stack, then element by element to c."""
    tile = cgutils.alloca_once(e.b, e.ft, size=len(accs) * e.width)
    for r, row in enumerate(accs):
        for v, acc in enumerate(row):
            e.b.store(e.b.load(acc), e.vec(tile, e.const(r * e.width + v * e.lanes)), align=4)
    for r in range(len(accs)):
        with cgutils.for_range(e.b, cols) as col:
            dst = e.at(c, r, ldc, col.index)
            val = e.b.load(e.at(tile, r, e.const(e.width), col.index))
            if add:
                val = e.b.fadd(val, e.b.load(dst))
            e.b.store(val, dst)


@intrinsic
def _block(typingctx, rows, nv, add, cols, k, a, lda, b, c, ldc, zero, wp):
    """c[r, :cols] (+)= Σ_κ a[r, κ] b[κ, :cols] for r < rows (a literal, 1..MR), from the
    panel's first nv vectors (a literal, 1..NV; cols <= nv vectors' lanes): a last panel
    that N does not fill computes only the vectors it needs.
    a, b, c: addresses (intp); c holds zero's type (float32/float64), and so do a and b
    unless wp, the packed weights (read for their type only), hold bf16 pairs (uint32):
    then a holds bf16 bits (uint16) and b is a panel of bf16 pairs. a: rows of k elements, lda
    apart. b: one packed panel, (k, NR) contiguous. c: rows ldc apart, cols <= NR columns
    written. add: a bool, False to overwrite c (not read), True to add to it."""
    if not isinstance(rows, types.IntegerLiteral) or not isinstance(nv, types.IntegerLiteral):
        return None
    n_rows, n_vec = rows.literal_value, nv.literal_value
    multiply = _multiply_bf16 if wp.dtype == types.uint32 else _multiply
    sig = types.void(rows, nv, add, cols, k, a, lda, b, c, ldc, zero, wp)

    def codegen(context, builder, signature, args):
        _, _, add_v, cols_v, k_v, a_v, lda_v, b_v, c_v, ldc_v, _, _ = args
        e = _Emit(context, builder, zero)
        accs = multiply(e, n_rows, k_v, a_v, lda_v, b_v, n_vec)
        c_p = e.ptr(c_v)
        whole_panel = builder.icmp_signed("==", cols_v, e.const(n_vec * e.lanes))
        adding = builder.icmp_unsigned("!=", add_v, ir.Constant(add_v.type, 0))
        for flag in (True, False):  # once per block, outside the k loop: a branch is free
            taken = adding if flag else builder.not_(adding)
            with builder.if_then(taken), builder.if_else(whole_panel) as (whole, part):
                with whole:
                    _store_whole(e, accs, flag, c_p, ldc_v)
                with part:
                    _store_part(e, accs, flag, cols_v, c_p, ldc_v)
        return context.get_dummy_value()

    return sig, codegen


def _width(w):  # pragma: no cover - typed below
    """NR for w's dtype, as a compile-time constant (itemsize is read at run time)."""
    raise NotImplementedError


@overload(_width, inline="always")
def _width_impl(w):
    # bf16 bits (uint16) and pairs (uint32): as many columns as float32 accumulators
    bits = 32 if w.dtype in (types.uint16, types.uint32) else w.dtype.bitwidth
    width = NV * VECTOR_BYTES * 8 // bits
    return lambda w: width


ALIGN = 64  # bytes: a cache line, and an AVX-512 vector


def aligned_empty(shape: int | tuple[int, ...], dtype) -> np.ndarray:
    """np.empty whose first element sits at a multiple of ALIGN bytes. NumPy aligns to 16: an
    array at 16 mod 32 makes every 32-byte load of a panel span two cache lines, and a
    (1000, 1, 8, 32) inference took 0.83-1.07 ms with its packed weights there against
    0.60-0.66 ms aligned (Zen 3, the same code, whichever a process happened to get)."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    size = math.prod(shape) * dtype.itemsize
    raw = np.empty(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


@functools.lru_cache(maxsize=256)
def packed_shape(n: int, k: int, dtype) -> tuple[int, int, int]:
    """The shape of pack(w) for w (N, K) of dtype: float32/float64, or uint16 (bfloat16
    bits, packed in pairs). Cached: a one-row stream asks at every call."""
    bf16 = np.dtype(dtype) == np.uint16
    width = NV * VECTOR_BYTES // (4 if bf16 else np.dtype(dtype).itemsize)
    return (n + width - 1) // width, (k + 1) // 2 if bf16 else k, width


def pack(w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Panels (ceil(N / NR), K, NR) of w.T for w (N, K) float32/float64, zero past column N;
    for bfloat16 bits (uint16), panels (ceil(N / NR), ceil(K / 2), NR) of pairs, one a uint32:
    out[p, κ, j] = w[p NR + j, 2κ] | w[p NR + j, 2κ + 1] << 16 (the low half first, as the
    dot product of pairs reads them), zero past N and K. Into out (every element written:
    a buffer may be reused) or a new array."""
    bf16 = w.dtype == np.uint16
    if out is None:
        n, k = w.shape
        out = aligned_empty(packed_shape(n, k, w.dtype), np.uint32 if bf16 else w.dtype)
    (_pack_bf16 if bf16 else _pack)(w, out)
    return out


def pack_t(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """pack(a.T) for a (K, N), read row by row (no transposed copy): BPTT's dz_t U packed from
    U's rows (1024 x 256: 49 us, against 570 for pack of a transposed copy; the forward's
    pack(U) reads U itself, 89 us), and bf16 dz for the weight gradients Σ_k x[k]ᵀ dz[k]."""
    bf16 = a.dtype == np.uint16
    if out is None:
        out = aligned_empty(
            packed_shape(a.shape[1], a.shape[0], a.dtype), np.uint32 if bf16 else a.dtype
        )
    (_pack_bf16_t if bf16 else pack_t_into)(a, out)
    return out


def pack_pair(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """pack([a | b]) for a (N, Ka), b (N, Kb) float32/float64, without the (N, Ka + Kb) copy
    that joining them costs: inference's [W_ih | U], 8 MB at (I, H) = (512, 512)."""
    if out is None:
        shape = packed_shape(a.shape[0], a.shape[1] + b.shape[1], a.dtype)
        out = aligned_empty(shape, a.dtype)
    pair_panels(a, b, out)
    return out


@njit(**_JIT)
def pair_panels(a, b, out):
    """:func:`pack_pair` into out, compiled (kernels that pack inside a call use it).
    Panels of [a | b]ᵀ, a's columns then b's: written in order, read across NR rows (whose
    lines stay in L1 for 16 k's), twice as fast as reading in order (800 x 200: 37 against
    88 us)."""
    pair_panels_in(a, b, out, 0, out.shape[0])


@njit(**_JIT)
def pair_panels_in(a, b, out, p0, p1):
    """The panels [p0, p1) of :func:`pair_panels`, so that threads can pack one weight at
    once, each its own panels."""
    n, ka = a.shape
    width = _width(a)
    if p1 == out.shape[0] and p1 > p0:
        out[-1] = 0  # the last panel's columns past N
    for p in range(p0, p1):
        cols = min(width, n - p * width)
        for kk in range(ka):
            for jj in range(cols):
                out[p, kk, jj] = a[p * width + jj, kk]
        for kk in range(b.shape[1]):
            for jj in range(cols):
                out[p, ka + kk, jj] = b[p * width + jj, kk]


@njit(**_JIT)
def pack_rows(a, b, rows, out):
    """pack([a | b][rows]) into out without the copies: rows (N,) int64 indices into the rows
    of a (·, Ka) and b (·, Kb); b may have no column (then pack(a[rows]))."""
    n, ka, kb = rows.shape[0], a.shape[1], b.shape[1]
    width = _width(a)
    out[-1] = 0  # the last panel's columns past N
    for p in range(out.shape[0]):
        cols = min(width, n - p * width)
        for kk in range(ka):
            for jj in range(cols):
                out[p, kk, jj] = a[rows[p * width + jj], kk]
        for kk in range(kb):
            for jj in range(cols):
                out[p, ka + kk, jj] = b[rows[p * width + jj], kk]


@njit(**_JIT)
def _pack(w, out):
    """:func:`pair_panels` of w alone."""
    pair_panels(w, w[:, :0], out)


@njit(**_JIT)
def _pack_bf16(w, out):
    n, k = w.shape
    width = _width(w)
    out[-1] = 0
    for p in range(out.shape[0]):
        for jj in range(min(width, n - p * width)):
            row = w[p * width + jj]
            for kp in range(k // 2):
                out[p, kp, jj] = np.uint32(row[2 * kp]) | (np.uint32(row[2 * kp + 1]) << 16)
            if k % 2:
                out[p, k // 2, jj] = np.uint32(row[k - 1])


@njit(**_JIT)
def _pack_bf16_t(a, out):
    """Two rows at a time into every panel, so a (tens of MB) is read once, in order."""
    k, n = a.shape
    width = _width(a)
    out[-1] = 0
    none = np.zeros(n, a.dtype)  # the pad of an odd K's last pair
    full = n // width  # whole panels: a loop of constant length, which LLVM vectorises
    for kp in range((k + 1) // 2):
        lo = a[2 * kp]
        hi = a[2 * kp + 1] if 2 * kp + 1 < k else none
        for p in range(full):
            for jj in range(width):
                j = p * width + jj
                out[p, kp, jj] = np.uint32(lo[j]) | (np.uint32(hi[j]) << np.uint32(16))
        for j in range(full * width, n):
            out[full, kp, j - full * width] = np.uint32(lo[j]) | (np.uint32(hi[j]) << np.uint32(16))


@njit(**_JIT)
def pack_t_into(a, out):
    """:func:`pack_t` of float32/float64 a (K, N), any row stride, into out, compiled (the
    unit split's BPTT packs its columns of U with it inside its loop call)."""
    k, n = a.shape
    width = _width(a)
    out[-1] = 0
    full = n // width  # whole panels: a loop of constant length, which LLVM vectorises
    for kk in range(k):
        row = a[kk]
        for p in range(full):
            for jj in range(width):
                out[p, kk, jj] = row[p * width + jj]
        for j in range(full * width, n):
            out[full, kk, j - full * width] = row[j]


def _pairs(w):  # pragma: no cover - typed below
    """k's per packed panel row: 2 for bf16 pairs, else 1 (a compile-time constant)."""
    raise NotImplementedError


@overload(_pairs, inline="always")
def _pairs_impl(w):
    pairs = 2 if w.dtype == types.uint32 else 1
    return lambda w: pairs


KC = 128  # panel rows per block of k: 128 x NR x 4 bytes = 32 KB, held in L1 for every row


@njit(**_JIT)
def packed_wt(x, wp, y, beta):
    """y (M, N) = x (M, K) @ w.T + beta * y for wp = pack(w) (float32/float64 x and y) or
    wp = pack(w) of bf16 bits (bf16 bits x, float32 y), w (N, K); beta 0 or 1 (y not read at 0).
    x and y: rows with contiguous elements (any row stride). Over KC panel rows at a time, so
    that a long K (a sum over all T*B rows) reads each block of the panel from L1."""
    m, k = x.shape
    width, pairs = _width(wp), _pairs(wp)
    n = y.shape[1]
    lda, ldc = x.strides[0] // x.itemsize, y.strides[0] // y.itemsize
    zero = zero_of(y)
    for p in range(wp.shape[0]):
        cols = min(width, n - p * width)
        for k0 in range(0, k, KC * pairs):
            kn = min(KC * pairs, k - k0)
            b = wp.ctypes.data + p * wp.strides[0] + (k0 // pairs) * wp.strides[1]
            xa = x.ctypes.data + k0 * x.itemsize
            add = beta != 0 or k0 > 0
            _row_blocks(m, add, cols, kn, xa, lda, x.itemsize, b, y, p * width, ldc, zero, wp)


@njit(inline="always", **_JIT)
def _row_blocks(m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp):
    """All M rows (x's at address xa, lda elements of xsize bytes apart) against one block
    of a panel (at b), into y's columns from col0: blocks of MR rows, then the rest. A panel
    of fewer than NR columns (the last, where NR does not divide N) runs on as many vectors
    as its columns fill: at H = 200 with 64-column panels, dL/dh_{t-1} = dz_t U computes 208
    columns a row, not 256."""
    vectors = (cols * NV + _width(wp) - 1) // _width(wp)
    if vectors == NV:
        _rows_of(NV, m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp)
    elif vectors == 1:
        _rows_of(1, m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp)
    elif vectors == 2:
        _rows_of(2, m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp)
    else:  # 3 of 4 (with NV = 3, vectors == NV above)
        _rows_of(3, m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp)


@njit(inline="always", **_JIT)
def _rows_of(nv, m, add, cols, k, xa, lda, xsize, b, y, col0, ldc, zero, wp):
    """:func:`_row_blocks` on nv vectors of the panel (a literal)."""
    r = 0
    while r < m:
        a = xa + r * lda * xsize
        c = y.ctypes.data + r * y.strides[0] + col0 * y.itemsize
        left = m - r
        if left >= 4:
            _block(4, nv, add, cols, k, a, lda, b, c, ldc, zero, wp)
        elif left == 3:
            _block(3, nv, add, cols, k, a, lda, b, c, ldc, zero, wp)
        elif left == 2:
            _block(2, nv, add, cols, k, a, lda, b, c, ldc, zero, wp)
        else:
            _block(1, nv, add, cols, k, a, lda, b, c, ldc, zero, wp)
        r += min(left, MR)


def product(x, w, y, beta):  # pragma: no cover - typed below
    """y (M, N) = x (M, K) @ w.T + beta * y: on the packed kernel when w is pack(w) (3-D),
    through :func:`longshort.engine.cpu.blas.gemm_wt` when w is the
    (N, K) weight itself (one step of a cell, where packing would cost more than it saves,
    or bfloat16 bits for MKL's products)."""
    raise NotImplementedError


@overload(product, inline="always")
def _product(x, w, y, beta):
    if w.ndim == 3:
        return lambda x, w, y, beta: packed_wt(x, w, y, beta)
    return lambda x, w, y, beta: blas.gemm_wt(x, w, y, beta)
