"""The compiled CPU engine: the :class:`longshort.engine.types.Engine` functions of
:mod:`longshort.engine.reference`, with the recurrent loops in numba (:mod:`.lstm`, :mod:`.rnn`).

The loops split the batch rows across threads once per call (:mod:`.rows`); each thread's
per-step recurrent product runs on :mod:`.packed`'s micro-kernel, on weights packed once per
call. The large products (input projections of all steps, weight and input gradients over all
T*B rows) go to one BLAS (:mod:`.blas`), split across the same threads. Compiled code is
cached on disk by numba: only a first process compiles.

bfloat16: the products take bf16 operands and accumulate in float32. The loops' and the input
projection's run on :mod:`.packed`'s AVX512-BF16 kernel where the CPU has it, the gradients
as float32 products of the bf16 values; with ``longshort[mkl]`` installed, MKL's bf16 GEMM
(AMX where the CPU has it) runs those. The gates, the cell state and the recurrent state stay
float32; only the layer's outputs and gradients are rounded back to bf16.
:mod:`longshort.engine.dispatch` sends what this engine does not run (projections and the RNN
in bf16) to the reference engine.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading

import numpy as np
import torch
from torch import Tensor

from longshort.engine.cpu import cache

cache.refresh()
cache.announce_compiles()

from longshort.engine import reference  # noqa: E402
from longshort.engine.cpu import blas, gru, lstm, lstm_variant, packed, rnn, rows  # noqa: E402
from longshort.engine.cpu.activations import gate_coefficients  # noqa: E402
from longshort.engine.cpu.blas import BF16, matmul_at, matmul_w, matmul_wt  # noqa: E402
from longshort.engine.types import (  # noqa: E402
    GRUForward,
    GRUGrads,
    GRUWeights,
    LSTMForward,
    LSTMGrads,
    LSTMVariant,
    LSTMWeights,
    RNNForward,
    RNNGrads,
    RNNWeights,
    VariantForward,
    VariantLoopGrads,
    VariantMasks,
    VariantWeights,
)

__all__ = [
    "BF16",
    "BF16_PRODUCTS",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "lstm_infer",
    "rnn_backward",
    "rnn_forward",
]

name = "compiled"
BF16_PRODUCTS = BF16 or packed.BF16  # bfloat16 runs here: MKL's or the packed kernel's products
DTYPES = (torch.float32, torch.float64)


def supports_lstm(x: Tensor, w: LSTMWeights) -> bool:
    """float32 and float64; bfloat16 without projection, with bf16 products: the packed
    kernel's (AVX512-BF16) or MKL's."""
    if x.dtype == torch.bfloat16:
        return BF16_PRODUCTS and w.w_hr is None
    return x.dtype in DTYPES


def supports_variant(x: Tensor, w: VariantWeights) -> bool:
    """float32 and float64 without projection."""
    return x.dtype in DTYPES and w.w_hr is None


def supports_rnn(x: Tensor) -> bool:
    return x.dtype in DTYPES


def supports_gru(x: Tensor) -> bool:
    return x.dtype in DTYPES


def saved_dtype(x: Tensor) -> torch.dtype:
    """float32 for bfloat16 input (the state is kept in float32), else x's dtype."""
    return torch.float32 if x.dtype == torch.bfloat16 else x.dtype


_NO_BF16 = np.empty((1, 1), np.uint16)  # the bf16 scratch, unused by float32/float64 weights


@functools.lru_cache(maxsize=64)
def _coefficients(hidden: int, dtype: np.dtype, blocks: int = 4) -> np.ndarray:
    """(3, blocks * H) gate coefficients, made once per size and dtype (read-only)."""
    coef = np.stack(gate_coefficients(hidden, dtype, blocks))
    coef.flags.writeable = False
    return coef


@functools.lru_cache(maxsize=64)
def _sigmoid_coefficients(hidden: int, dtype: np.dtype) -> np.ndarray:
    """(3, 2H): σ's coefficients for the GRU's r and z blocks (read-only)."""
    coef = np.ascontiguousarray(_coefficients(hidden, dtype)[:, : 2 * hidden])
    coef.flags.writeable = False
    return coef


def _np(t: Tensor) -> np.ndarray:
    """A C-contiguous NumPy view (or copy, when t is strided) of a CPU tensor; bfloat16 as the
    uint16 bits the bf16 products take."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _acc(t: Tensor) -> torch.dtype:
    """The dtype the engine computes and keeps state in: float32 for bfloat16 tensors."""
    return torch.float32 if t.dtype == torch.bfloat16 else t.dtype


def _bf16_scratch(t: Tensor, rows: int, cols: int) -> np.ndarray:
    return np.empty((rows, cols), np.uint16) if t.dtype == torch.bfloat16 else _NO_BF16


_BUFFERS = threading.local()
MAX_BUFFER_BYTES = 16 << 20  # larger buffers are allocated anew at each call
KEPT_SHAPES = 4  # shapes kept per role and thread


def _kept(role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer of this thread's for the role, kept across calls when at most MAX_BUFFER_BYTES
    (new arrays' pages fault in at first write: a training step at (100, 32, 32, 128) took
    1,600 faults). A role keeps its KEPT_SHAPES most recent shapes (the layers of a model, a
    few sequence lengths), so memory stays bounded when every batch has a new length. Its
    content is whatever the last call left: the caller writes all of it, and nothing it
    returns may be a view of it."""
    cache = getattr(_BUFFERS, "cache", None)
    if cache is None:
        cache = _BUFFERS.cache = {}
    kept = cache.setdefault(role, collections.OrderedDict())
    key = (shape, np.dtype(dtype))
    out = kept.pop(key, None)
    if out is None:
        out = np.empty(shape, dtype)
        if out.nbytes > MAX_BUFFER_BYTES:
            return out
    kept[key] = out  # the most recent last
    while len(kept) > KEPT_SHAPES:
        kept.popitem(last=False)
    return out


def _packed(a: np.ndarray, role: str, rows_of_t: bool = False) -> np.ndarray:
    """packed.pack(a), or packed.pack_t(a) with rows_of_t, into a :func:`_kept` buffer of the
    role: new arrays' page faults cost 1 ms of a 3.6 ms two-layer call at (35, 20, 200, 200).
    Every element is written at each call, and the packing lives only inside the call."""
    n, k = (a.shape[1], a.shape[0]) if rows_of_t else a.shape
    dtype = np.uint32 if a.dtype == np.uint16 else a.dtype
    out = _kept(role, packed.packed_shape(n, k, a.dtype), dtype)
    return packed.pack_t(a, out) if rows_of_t else packed.pack(a, out)


def _recurrent(w: Tensor, steps: int, role: str = "recurrent") -> np.ndarray:
    """A loop's recurrent weight (N, K), for products x @ w.T: packed once for the per-step
    kernel of :mod:`.packed` when the loop runs more than one step; as it is for one step (a
    cell's call, where packing would cost as much as the product) and for bfloat16 bits
    with MKL, whose products take them as they are."""
    bf16 = w.dtype == torch.bfloat16
    if (steps > 1 and not bf16) or (bf16 and packed.BF16 and (steps > 1 or not BF16)):
        # BPTT's w = Uᵀ is a view: packed from U's rows (pack_t), not from a transposed copy
        rows_of_u = not w.is_contiguous() and w.t().is_contiguous()
        return _packed(_np(w.t() if rows_of_u else w), role, rows_of_u)
    return _np(w)


def _lengths(lengths: Tensor | None) -> np.ndarray:
    return np.empty(0, np.int64) if lengths is None else _np(lengths)


def _rows(a: np.ndarray) -> np.ndarray:
    """All leading dimensions as rows (also when an array holds no element)."""
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])


def _by_rows(kernel, x: np.ndarray, w: np.ndarray, y: np.ndarray, beta: float) -> None:
    """kernel(x, w, y, beta), a product y = x op w (+ beta y) of one row of y per row of x
    (matmul_wt, matmul_w), with the rows split across torch's threads, each on single-threaded
    BLAS. Not BLAS's own threads: after any parallel region torch's OpenMP threads spin for a
    while, and a BLAS thread sharing their core ran a (6400 x 256) @ (256 x 1024) product in
    15.6 ms against 9.0 ms with them asleep (2 cores)."""
    flops = 2 * x.shape[0] * x.shape[1] * y.shape[1]
    rows.run_jobs(kernel, [(x[a:b], w, y[a:b], beta) for a, b in rows.split(len(x), flops)])


def _summed(a: np.ndarray, b: np.ndarray, y: np.ndarray, beta: float) -> None:
    """y (N, K) = a.T @ b + beta * y, a sum over the M rows of a (M, N) and b (M, K), with
    the N rows of y split across torch's threads (see :func:`_by_rows`)."""
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    parts = rows.split(a.shape[1], flops)
    rows.run_jobs(matmul_at, [(a[:, n0:n1], b, y[n0:n1], beta) for n0, n1 in parts])


def _bias(w: LSTMWeights | RNNWeights, dtype: torch.dtype) -> np.ndarray:
    """b_ih + b_hh (zeros without bias) in the engine's dtype, (G,)."""
    if w.b_ih is None:
        return np.zeros(w.w_ih.shape[0], torch.empty(0, dtype=dtype).numpy().dtype)
    return (w.b_ih.detach().to(dtype) + w.b_hh.detach().to(dtype)).numpy()


def _project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """z = W·x_t + b for all T steps as one (T*B, I) @ (I, G) product: (T, B, G)."""
    steps, batch, _ = x.shape
    z = x.new_empty(steps, batch, w_ih.shape[0], dtype=_acc(x))
    zn, beta = z.numpy(), 0.0  # without a bias, z is not read: no pass to fill it
    if b_ih is not None:
        bias = b_ih.detach().to(z.dtype)
        zn[:] = (bias if b_hh is None else bias + b_hh.detach().to(z.dtype)).numpy()
        beta = 1.0
    xn, wn = _rows(_np(x)), _np(w_ih)
    if wn.dtype == np.uint16 and not BF16:  # bf16 without MKL: the packed kernel's products
        _by_rows(packed.matmul_wt, xn, _packed(wn, "input"), _rows(zn), beta)
    else:
        _by_rows(matmul_wt, xn, wn, _rows(zn), beta)
    return z


def project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """W x_t + bias for all T steps as one product: (T, B, G)."""
    return _project(x, w_ih, bias, None)


def _weight_products(d_in, d_rec, x, h_first, h_rest, w_ih, dx, dw_ih, dw_hh) -> None:
    """dx = d_in W_ih, dW_ih = d_inᵀ x, dW_hh = d_recᵀ [h_first; h_rest] over all T*B rows, in
    one parallel region (each costs 30-70 us of waking and joining torch's threads): each
    thread makes its rows of dx and its rows of dW_ih and dW_hh. Arrays: d_in (M, G), d_rec
    (M, G'), x (M, I), h_first (B, P) the states before the first B rows, h_rest (M - B, P)
    those before the others, w_ih (G, I); out dx (M, I), dw_ih (G, I), dw_hh (G', P)."""
    m, batch = d_in.shape[0], h_first.shape[0]
    flops = 2 * m * (d_in.shape[1] * 2 * x.shape[1] + d_rec.shape[1] * h_first.shape[1])
    count = min(len(rows.split(d_in.shape[1], flops)), max(1, m))  # (an empty batch: one part)
    parts = zip(
        rows.split(m, flops, count),
        rows.split(d_in.shape[1], flops, count),
        rows.split(d_rec.shape[1], flops, count),
        strict=True,
    )
    work = []
    for (r0, r1), (i0, i1), (j0, j1) in parts:
        calls = [(matmul_w, (d_in[r0:r1], w_ih, dx[r0:r1], 0.0))]  # dx = dz W
        calls.append((matmul_at, (d_in[:, i0:i1], x, dw_ih[i0:i1], 0.0)))  # dW = Σ dz_tᵀ x_t
        calls.append((matmul_at, (d_rec[:batch, j0:j1], h_first, dw_hh[j0:j1], 0.0)))  # h_0 ..
        if m > batch:  # ... then h_1 .. h_{T-1}
            calls.append((matmul_at, (d_rec[batch:, j0:j1], h_rest, dw_hh[j0:j1], 1.0)))
        work.append(calls)
    rows.run_work(work)


def product_grads(
    d_in: Tensor, d_rec: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """See :func:`longshort.engine.reference.product_grads` (float32 and float64)."""
    dx = x.new_empty(x.shape)
    dw_ih, dw_hh = torch.empty_like(w_ih), w_ih.new_empty(d_rec.shape[2], h_prev.shape[2])
    hp = _np(h_prev)
    ins = (_rows(_np(d_in)), _rows(_np(d_rec)), _rows(_np(x)), hp[0], _rows(hp[1:]), _np(w_ih))
    _weight_products(*ins, _rows(dx.numpy()), dw_ih.numpy(), dw_hh.numpy())
    return dx, dw_ih, dw_hh


def _input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx = dz W, dW_ih = Σ_t dz_tᵀ x_t, dW_hh = Σ_t dz_tᵀ h_{t-1}, db = Σ_t dz_t: one product
    each over all T*B rows, in x's dtype. hs (T, B, P) holds h_1 .. h_T."""
    acc, dtype = dz.dtype, x.dtype
    if dtype == torch.bfloat16 and not BF16:  # bf16 without MKL
        if packed.BF16:
            return _bf16_input_and_weight_grads(dz, x, h0, hs, w_ih)
        dz, x, h0, hs, w_ih = dz.to(dtype).float(), x.float(), h0.float(), hs.float(), w_ih.float()
    dz2 = _rows(_np(dz.to(x.dtype)))
    dx = x.new_empty(x.shape, dtype=acc)
    dw_ih = w_ih.new_empty(w_ih.shape, dtype=acc)
    dw_hh = w_ih.new_empty(dz.shape[2], h0.shape[1], dtype=acc)
    ins = (dz2, dz2, _rows(_np(x)), _np(h0), _rows(_np(hs)[:-1]), _np(w_ih))
    _weight_products(*ins, _rows(dx.numpy()), dw_ih.numpy(), dw_hh.numpy())
    db = dz.sum(dim=(0, 1))
    return dx.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype), db.to(dtype)


def _bf16_input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`_input_and_weight_grads` for bfloat16 on the packed kernel's bf16 products.
    The weight gradients as one product, [x_t | h_{t-1}]ᵀ over all T*B rows times dz packed
    row by row (pack_t): the small operand is transposed, not dz."""
    dtype, n_in = x.dtype, x.shape[2]
    dzb = dz.to(dtype)
    dzn = _rows(_np(dzb))
    dx = x.new_empty(x.shape, dtype=dz.dtype)
    _by_rows(packed.matmul_wt, dzn, _packed(_np(w_ih.t()), "input"), _rows(dx.numpy()), 0.0)
    inputs = torch.cat([x, torch.cat([h0[None].to(dtype), hs[:-1]])], dim=2)  # (T, B, I + P)
    dw_t = dz.new_empty(inputs.shape[2], dz.shape[2])  # [dW_ih | dW_hh]ᵀ
    xt = _np(inputs.reshape(-1, inputs.shape[2]).t())
    _by_rows(packed.matmul_wt, xt, _packed(dzn, "gradients", rows_of_t=True), dw_t.numpy(), 0.0)
    dw = dw_t.t().to(dtype)
    db = dz.sum(dim=(0, 1))
    return dx.to(dtype), dw[:, :n_in].contiguous(), dw[:, n_in:].contiguous(), db.to(dtype)


def lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """See :func:`longshort.engine.reference.lstm_forward`."""
    steps, batch, _ = x.shape
    hidden, out_size = c0.shape[1], h0.shape[1]
    gates = _project(x, w.w_ih, None, None)  # W x_t; becomes the gates in place
    out = x.new_empty(steps, batch, out_size, dtype=gates.dtype)
    cs = x.new_empty(steps + 1, batch, hidden, dtype=gates.dtype)
    cs[0] = c0
    h = h0.to(gates.dtype, memory_format=torch.contiguous_format, copy=True)
    dtype = out.numpy().dtype
    zn, hn, csn, outn, lens = gates.numpy(), h.numpy(), cs.numpy(), out.numpy(), _lengths(lengths)
    w_hh = _recurrent(w.w_hh, steps)
    w_hr = np.empty((0, 0), dtype) if w.w_hr is None else _np(w.w_hr)
    coef = _coefficients(hidden, dtype)
    bias = _bias(w, gates.dtype)

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        scratch = (np.empty((n, hidden), dtype), np.empty((n, out_size), dtype))
        bits, hb = np.empty(4 * hidden, np.int32), _bf16_scratch(x, n, out_size)
        return (zn, bias, hn, csn, w_hh, w_hr, lens, outn, *scratch, coef, bits, hb, b0, b1)

    flops = 2 * batch * 4 * hidden * out_size
    rows.run(lstm.forward, rows.ranges(batch, flops=flops * steps), args, flops)
    if x.dtype == out.dtype:
        return LSTMForward(out, h, cs[steps].clone(), gates, cs)
    return LSTMForward(out.to(x.dtype), h.to(x.dtype), cs[steps].to(x.dtype), gates, cs)


def _infer_pays(parts: list[tuple[int, int]], n_in: int, hidden: int, steps: int) -> bool:
    """Whether the per-step input product of :func:`.lstm.infer` beats one projection of all
    steps: over more than one step (a cell's call would pay for [W_ih | U] copied), with 4 rows
    a thread or more (the kernel's blocks), and with 16 or more or an input at most half the
    hidden size. Measured, 2 threads, ratio of the times: 0.71-0.90 at
    (100,32,32,128), (500,16,16,64), (100,64,256,256), (50,128,512,512); 1.09 at (35,20,200,200)
    (10 rows, I = H) and 1.10 at (200,4,64,256) (2 rows), which keep the projection."""
    least = min(b1 - b0 for b0, b1 in parts)
    return steps > 1 and least >= 4 and (least >= 16 or 2 * n_in <= hidden)


def lstm_infer(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """:func:`lstm_forward` for a call whose gates nothing will read (no BPTT, no trace):
    gates and cs come back empty, one product a step on [x_t | h_{t-1}] (:func:`.lstm.infer`).
    float32 and float64 without projection; the full forward runs the rest."""
    steps, batch, n_in = x.shape
    hidden = c0.shape[1]
    flops = 2 * batch * 4 * hidden * (hidden + n_in)
    parts = rows.ranges(batch, flops=flops * steps)
    if w.w_hr is not None or x.dtype not in DTYPES or not _infer_pays(parts, n_in, hidden, steps):
        return lstm_forward(x, h0, c0, w, lengths)
    out = x.new_empty(steps, batch, hidden)
    h = h0.to(x.dtype, memory_format=torch.contiguous_format, copy=True)
    c = c0.to(x.dtype, memory_format=torch.contiguous_format, copy=True)
    dtype = out.numpy().dtype
    w_cat = torch.cat([w.w_ih.detach().t(), w.w_hh.detach().t()]).t()  # rows of [W_ih | U]ᵀ
    w_cat = _recurrent(w_cat, steps)
    fixed = (_np(x), w_cat, _bias(w, x.dtype), h.numpy(), c.numpy(), _lengths(lengths))
    fixed += (out.numpy(),)
    coef = _coefficients(hidden, dtype)

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        xh, z = np.empty((n, n_in + hidden), dtype), np.empty((n, 4 * hidden), dtype)
        return (*fixed, xh, coef, np.empty(4 * hidden, np.int32), z, b0, b1)

    rows.run(lstm.infer, parts, args, flops)
    empty = x.new_empty(0)
    return LSTMForward(out, h, c, empty, empty)


def lstm_backward(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
    saved: LSTMForward,
) -> LSTMGrads:
    """See :func:`longshort.engine.reference.lstm_backward`."""
    out, gates, cs = saved.out, saved.gates, saved.cs
    steps, batch, _ = x.shape
    hidden, out_size = cs.shape[2], out.shape[2]
    proj = w.w_hr is not None
    acc = gates.dtype
    dh = d_hn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dc = d_cn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dz = torch.from_numpy(_kept("dz", tuple(gates.shape), _np(gates).dtype))  # BPTT writes all
    norms = x.new_empty(steps, batch, 2, dtype=acc)
    dh_t = x.new_empty(steps if proj else 1, batch, out_size, dtype=acc)
    dtype = dz.numpy().dtype
    fixed = (
        _np(d_out.to(acc)),
        dh.numpy(),
        dc.numpy(),
        _np(gates),
        _np(cs),
        _recurrent(w.w_hh.t(), steps),  # transposed once: each step's product reads rows
        _np(w.w_hr.t()) if proj else np.empty((0, 0), dtype),
        _lengths(lengths),
        dz.numpy(),
        dh_t.numpy(),
    )

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        dm, dhb, tc = (np.empty((n, k), dtype) for k in (hidden, out_size, hidden))
        bits, dzb = np.empty(hidden, np.int32), _bf16_scratch(x, n, 4 * hidden)
        return (*fixed, dm, dhb, tc, norms.numpy(), bits, dzb, b0, b1)

    flops = 2 * batch * 4 * hidden * out_size
    rows.run(lstm.backward, rows.ranges(batch, flops=flops * steps), args, flops)
    dx, dw_ih, dw_hh, db = _input_and_weight_grads(dz, x, h0, out, w.w_ih)
    dw_hr = None
    if proj:
        m = gates[..., 3 * hidden :] * torch.tanh(cs[1:])  # o_t ⊙ tanh(C_t), recomputed
        dw_hr = w.w_hr.new_empty(w.w_hr.shape)
        _summed(_rows(dh_t.numpy()), _rows(_np(m)), dw_hr.numpy(), 0.0)
    return LSTMGrads(dx, dh.to(x.dtype), dc.to(x.dtype), dw_ih, dw_hh, db, dw_hr, norms)


def rnn_forward(
    x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
) -> RNNForward:
    """See :func:`longshort.engine.reference.rnn_forward`."""
    hs = _project(x, w.w_ih, w.b_ih, w.b_hh)  # becomes h_1 .. h_T in place
    h = h0.clone(memory_format=torch.contiguous_format)
    batch, hidden = hs.shape[1], hs.shape[2]
    fixed = (hs.numpy(), h.numpy(), _lengths(lengths), _recurrent(w.w_hh, hs.shape[0]))
    fixed += (nonlinearity == "relu",)

    def args(b0: int, b1: int) -> tuple:
        return (*fixed, np.empty(hidden, np.int32), b0, b1)

    flops = 2 * batch * hidden**2
    rows.run(rnn.forward, rows.ranges(batch, flops=flops * hs.shape[0]), args, flops)
    return RNNForward(hs.clone(), h, hs)


def rnn_backward(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: RNNWeights,
    lengths: Tensor | None,
    saved: RNNForward,
    nonlinearity: str,
) -> RNNGrads:
    """See :func:`longshort.engine.reference.rnn_backward`."""
    hs = saved.hs
    batch, hidden = hs.shape[1], hs.shape[2]
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    da = torch.from_numpy(_kept("da", tuple(hs.shape), _np(hs).dtype))  # BPTT writes all
    norms = x.new_empty(hs.shape[0], batch, 1)
    fixed = (
        _np(d_out),
        dh.numpy(),
        _np(hs),
        _lengths(lengths),
        _recurrent(w.w_hh.t(), hs.shape[0]),  # transposed once: each step's product reads rows
        nonlinearity == "relu",
    )

    def args(b0: int, b1: int) -> tuple:
        return (
            *fixed,
            da.numpy(),
            np.empty((b1 - b0, hidden), hs.numpy().dtype),
            norms.numpy(),
            b0,
            b1,
        )

    flops = 2 * batch * hidden**2
    rows.run(rnn.backward, rows.ranges(batch, flops=flops * hs.shape[0]), args, flops)
    dx, dw_ih, dw_hh, db = _input_and_weight_grads(da, x, h0, hs, w.w_ih)
    return RNNGrads(dx, dh, dw_ih, dw_hh, db, norms)


def gru_forward(x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None) -> GRUForward:
    """See :func:`longshort.engine.reference.gru_forward`."""
    steps, batch, _ = x.shape
    hidden = h0.shape[1]
    xw = _project(x, w.w_ih, w.b_ih, None)  # b_hh stays inside: r scales W_hn h + b_hn
    gates = x.new_empty(steps, batch, 4 * hidden)
    hs = x.new_empty(steps, batch, hidden)
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = xw.numpy().dtype
    b_hh = np.empty(0, dtype) if w.b_hh is None else _np(w.b_hh)
    fixed = (xw.numpy(), h.numpy(), hs.numpy(), gates.numpy(), _recurrent(w.w_hh, steps), b_hh)
    coef = _sigmoid_coefficients(hidden, dtype)

    def args(b0: int, b1: int) -> tuple:
        hw = np.empty((b1 - b0, 3 * hidden), dtype)
        return (*fixed, _lengths(lengths), hw, coef, np.empty(3 * hidden, np.int32), b0, b1)

    flops = 2 * batch * 3 * hidden * hidden
    rows.run(gru.forward, rows.ranges(batch, flops=flops * steps), args, flops)
    out = hs.clone() if lengths is None else torch.where(reference.step_mask(lengths, steps), hs, 0)
    return GRUForward(out, h, gates, hs)


def gru_backward(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: GRUWeights,
    lengths: Tensor | None,
    saved: GRUForward,
) -> GRUGrads:
    """See :func:`longshort.engine.reference.gru_backward`."""
    steps, batch, _ = x.shape
    hidden = h0.shape[1]
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    shape, real = (steps, batch, 3 * hidden), _np(x).dtype  # BPTT writes all of both
    dgi, dgh = (torch.from_numpy(_kept(role, shape, real)) for role in ("dgi", "dgh"))
    norms = x.new_empty(steps, batch, 1)
    dtype = dgi.numpy().dtype
    fixed = (
        _np(d_out),
        dh.numpy(),
        _np(h0),
        _np(saved.hs),
        _np(saved.gates),
        _recurrent(w.w_hh.t(), steps),  # transposed once: each step's product reads rows
        _lengths(lengths),
        dgi.numpy(),
        dgh.numpy(),
    )

    def args(b0: int, b1: int) -> tuple:
        scratch = (np.empty((b1 - b0, hidden), dtype) for _ in range(2))
        return (*fixed, *scratch, norms.numpy(), b0, b1)

    flops = 2 * batch * 3 * hidden * hidden
    rows.run(gru.backward, rows.ranges(batch, flops=flops * steps), args, flops)
    dgin, dghn = _rows(dgi.numpy()), _rows(dgh.numpy())
    dx = x.new_empty(x.shape)
    dw_ih, dw_hh = torch.empty_like(w.w_ih), torch.empty_like(w.w_hh)
    # dx = dgi W_i, dW_i = Σ_t dgi_tᵀ x_t, dW_h = Σ_t dgh_tᵀ h_{t-1}
    ins = (dgin, dghn, _rows(_np(x)), _np(h0), _rows(_np(saved.hs)[:-1]), _np(w.w_ih))
    _weight_products(*ins, _rows(dx.numpy()), dw_ih.numpy(), dw_hh.numpy())
    db_ih = torch.from_numpy(dgin.sum(axis=0))
    db_hh = torch.from_numpy(dghn.sum(axis=0))
    return GRUGrads(dx, dh, dw_ih, dw_hh, db_ih, db_hh, norms)


def _opt(t: Tensor | None, dims: int, dtype: np.dtype) -> np.ndarray:
    """An optional operand of the variant kernels: its array, or an empty one of dims dims."""
    return np.empty((0,) * dims, dtype) if t is None else _np(t)


def _variant_operands(w: VariantWeights, v: LSTMVariant, masks: VariantMasks, dtype) -> tuple:
    """w_ch, ln_hh, ln_c (2, H), zone_c, zone_h, keep and the flags, as the kernels take them."""
    ln_c = None if w.ln_c_w is None else torch.stack((w.ln_c_w, w.ln_c_b))
    flags = np.array([v.has_input_gate, v.forget_gate, v.peephole, v.layer_norm], np.int64)
    return (
        _opt(w.w_ch if v.peephole else None, 1, dtype),
        _opt(w.ln_hh if v.layer_norm else None, 1, dtype),
        _opt(ln_c if v.layer_norm else None, 2, dtype),
        _opt(masks.zone_c, 3, dtype),
        _opt(masks.zone_h, 3, dtype),
        _opt(masks.keep, 2, dtype),
        flags,
    )


def variant_forward(
    xa: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """See :func:`longshort.engine.reference.variant_forward`."""
    steps, batch, n_gates = xa.shape
    hidden = c0.shape[1]
    gates = xa.contiguous()  # a tensor of the caller's own, which becomes the gates in place
    rec = torch.empty_like(gates) if v.layer_norm else gates.new_empty(0, 0, 0)
    out = xa.new_empty(steps, batch, hidden)
    cs = xa.new_empty(steps + 1, batch, hidden)
    cs[0] = c0
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = out.numpy().dtype
    w_ch, ln_hh, ln_c, zc, zh, keep, flags = _variant_operands(w, v, masks, dtype)
    coef = _coefficients(hidden, dtype, v.blocks)
    w_hh = _recurrent(w.w_hh, gates.shape[0])
    fixed = (gates.numpy(), rec.numpy(), h.numpy(), cs.numpy(), w_hh, w_ch, ln_hh, ln_c)
    fixed += (zc, zh, keep, _lengths(lengths), out.numpy())

    def args(b0: int, b1: int) -> tuple:
        scratch = (np.empty((b1 - b0, hidden), dtype) for _ in range(2))
        return (*fixed, *scratch, coef, np.empty(n_gates, np.int32), flags, b0, b1)

    flops = 2 * batch * n_gates * hidden
    rows.run(lstm_variant.forward, rows.ranges(batch, flops=flops * steps), args, flops)
    rec = rec if v.layer_norm else xa.new_empty(0)  # the reference engine's empty, for the ops
    return VariantForward(out, h, cs[steps].clone(), gates, cs, rec)


def variant_backward(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    h0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    saved: VariantForward,
) -> VariantLoopGrads:
    """See :func:`longshort.engine.reference.variant_backward`."""
    gates, cs = saved.gates, saved.cs
    steps, batch, n_gates = gates.shape
    hidden = cs.shape[2]
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    dc = d_cn.clone(memory_format=torch.contiguous_format)
    shape, real = tuple(gates.shape), _np(gates).dtype  # BPTT writes all of da and dr
    da = torch.from_numpy(_kept("variant_da", shape, real))
    dr = torch.from_numpy(_kept("variant_dr", shape, real)) if v.layer_norm else da
    peep, ln = v.peephole, v.layer_norm
    g_ch = gates.new_empty((batch, len(w.w_ch)) if peep else (0, 0))  # per row, summed below
    g_ln_hh = gates.new_empty((batch, n_gates) if ln else (0, 0))
    g_ln_c = gates.new_empty((batch, 2, hidden) if ln else (0, 0, 0))
    dht = torch.empty_like(dh)
    norms = gates.new_empty(steps, batch, 2)
    dtype = da.numpy().dtype
    w_ch, ln_hh, ln_c, zc, zh, keep, flags = _variant_operands(w, v, masks, dtype)
    rec = _np(saved.rec) if v.layer_norm else np.empty((0, 0, 0), dtype)
    fixed = (_np(d_out), dh.numpy(), dc.numpy(), _np(gates), _np(cs), rec)
    fixed += (_recurrent(w.w_hh.t(), steps), w_ch, ln_hh, ln_c, zc, zh, keep, _lengths(lengths))
    fixed += (da.numpy(), dr.numpy(), g_ch.numpy(), g_ln_hh.numpy(), g_ln_c.numpy(), dht.numpy())

    def args(b0: int, b1: int) -> tuple:
        scratch = (np.empty((b1 - b0, hidden), dtype) for _ in range(4))
        return (*fixed, *scratch, norms.numpy(), np.empty(n_gates, np.int32), flags, b0, b1)

    flops = 2 * batch * n_gates * hidden
    rows.run(lstm_variant.backward, rows.ranges(batch, flops=flops * steps), args, flops)
    grads = VariantLoopGrads(da, dr, None, dh, dc, norms)
    if peep:
        grads = grads._replace(w_ch=g_ch.sum(0))
    if ln:
        ln_c = g_ln_c.sum(0)
        grads = grads._replace(ln_hh=g_ln_hh.sum(0), ln_c_w=ln_c[0], ln_c_b=ln_c[1])
    return grads


def lstm_step(x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights) -> tuple[Tensor, ...]:
    """One LSTM step of an LSTMCell, float32/float64, no projection, in one compiled call:
    x (B, I), h0, c0 (B, H) -> h_1, C_1 (B, H) and the gates (B, 4H) BPTT reads."""
    batch, hidden = c0.shape
    z = x.new_empty(batch, 4 * hidden)
    h, c = torch.empty_like(c0), torch.empty_like(c0)
    coef = _coefficients(hidden, z.numpy().dtype)
    biases = (_np(w.b_ih), _np(w.b_hh)) if w.b_ih is not None else (_NO_BIAS[x.dtype],) * 2
    args = (_np(x), _np(h0), _np(c0), _np(w.w_ih), _np(w.w_hh), *biases)
    with _one_thread(batch * 4 * hidden * (hidden + x.shape[1])):
        lstm.step_forward(
            *args, z.numpy(), h.numpy(), c.numpy(), coef, np.empty(4 * hidden, np.int32)
        )
    return h, c, z


# numpy's dtypes named directly: a torch tensor made at import would be a fake one when the
# first import happens inside torch.compile's tracing (FakeTensorMode), and .numpy() fails there
_NO_BIAS = {torch.float32: np.empty(0, np.float32), torch.float64: np.empty(0, np.float64)}


def _one_thread(macs: int) -> contextlib.AbstractContextManager:
    """A step's products on one BLAS thread (BLAS's own threads would share cores with
    torch's); below OpenBLAS's own threshold for threading, nothing to set (2 ctypes calls
    saved at B = 1)."""
    return blas.threads(1) if macs >= 1 << 18 else contextlib.nullcontext()


def lstm_step_backward(
    dh: Tensor, dc: Tensor, x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, z: Tensor, c: Tensor
) -> tuple[Tensor, ...]:
    """BPTT of :func:`lstm_step`: dx, dh0, dc0, dW_ih, dW_hh, db and the norms (1, B, 2)."""
    batch, hidden = c0.shape
    dz = torch.empty_like(z)
    dx, dh0, dc0 = torch.empty_like(x), torch.empty_like(h0), torch.empty_like(c0)
    dw_ih, dw_hh = torch.empty_like(w.w_ih), torch.empty_like(w.w_hh)
    norms = x.new_empty(1, batch, 2)
    ins = (_np(dh), _np(dc), _np(x), _np(h0), _np(c0), _np(z), _np(c), _np(w.w_ih), _np(w.w_hh))
    outs = (dz.numpy(), dx.numpy(), dh0.numpy(), dc0.numpy(), dw_ih.numpy(), dw_hh.numpy())
    with _one_thread(batch * 4 * hidden * (hidden + x.shape[1])):
        lstm.step_backward(*ins, *outs, norms.numpy()[0], np.empty(hidden, np.int32))
    return dx, dh0, dc0, dw_ih, dw_hh, dz.sum(0), norms


def rnn_step(x: Tensor, h0: Tensor, w: RNNWeights, nonlinearity: str) -> Tensor:
    """One RNN step of an RNNCell, float32/float64, in one compiled call: h_1 (B, H)."""
    hidden = h0.shape[1]
    h = torch.empty_like(h0)
    args = (_np(x), _np(h0), _np(w.w_ih), _np(w.w_hh), _bias(w, x.dtype), nonlinearity == "relu")
    with _one_thread(x.shape[0] * hidden * (hidden + x.shape[1])):
        rnn.step_forward(*args, h.numpy(), np.empty(hidden, np.int32))
    return h


def rnn_step_backward(
    dh: Tensor, x: Tensor, h0: Tensor, h: Tensor, w: RNNWeights, nonlinearity: str
) -> tuple[Tensor, ...]:
    """BPTT of :func:`rnn_step`: dx, dh0, dW_ih, dW_hh, db and the norms (1, B, 1)."""
    da, dh0 = torch.empty_like(h), torch.empty_like(h0)
    dx, dw_ih, dw_hh = torch.empty_like(x), torch.empty_like(w.w_ih), torch.empty_like(w.w_hh)
    norms = x.new_empty(1, h.shape[0], 1)
    ins = (_np(dh), _np(x), _np(h0), _np(h), _np(w.w_ih), _np(w.w_hh), nonlinearity == "relu")
    with _one_thread(x.shape[0] * h.shape[1] * (h.shape[1] + x.shape[1])):
        rnn.step_backward(
            *ins,
            da.numpy(),
            dx.numpy(),
            dh0.numpy(),
            dw_ih.numpy(),
            dw_hh.numpy(),
            norms.numpy()[0, :, 0],
        )
    return dx, dh0, dw_ih, dw_hh, da.sum(0), norms
