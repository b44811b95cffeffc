"""The compiled vanilla RNN: its forward and BPTT loops and the one-call cell step side by side,
and the host code that lays out their buffers and runs them.

h_t = tanh(W x_t + U h_{t-1} + b) (or relu), as ``longshort.cells.rnn``. Shapes: T steps,
B batch, I input, H hidden, N = b1 - b0 rows of a thread. ``lengths`` is (B,) int64, or empty
when all sequences run T steps. Kernel arguments come in the four bundles of
:mod:`longshort.engine.cpu`, then the rows [b0, b1) for the loops (see :mod:`.lstm`).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine.cpu import address, host, packed, threads
from longshort.engine.cpu.activations import JIT, copy, one_of, tanh_into, zero_of
from longshort.engine.cpu.address import view
from longshort.engine.cpu.blas import gemm_at, gemm_w, gemm_wt
from longshort.engine.cpu.packed import product
from longshort.engine.types import RNNForward, RNNGrads, RNNWeights


@njit(**JIT)
def forward(weights, io, saved, scratch, b0, b1):
    """The forward loop over all T steps for rows [b0, b1).

    weights = (w_hh, relu): w_hh packed (or (H, H) as it is); relu: the nonlinearity is relu
      (else tanh).
    io = (h, lengths): h (B, H) h_0 in, h_n out.
    saved = (z,): z (T, B, H) W x_t + b on entry, h_t on return (zero at padding).
    scratch = (): none.
    """
    w_hh, relu = weights
    h, lengths = io
    (z,) = saved
    steps, _, hidden = z.shape
    for t in range(steps):
        zt = z[t]
        product(h[b0:b1], w_hh, zt[b0:b1], 1.0)  # a_t = W x_t + b + U h_{t-1}
        for b in range(b0, b1):
            a = zt[b]
            if lengths.shape[0] and t >= lengths[b]:
                a[:] = 0.0  # padding: output zero, state carried
                continue
            if relu:
                for j in range(hidden):
                    a[j] = max(a[j], 0.0)  # h_t = relu(a_t)
            else:
                tanh_into(a, a)  # h_t = tanh(a_t)
            copy(a, h[b])


@njit(**JIT)
def backward(weights, io, saved, scratch, b0, b1):
    """BPTT of :func:`forward` for rows [b0, b1).

    weights = (w_hh_t, relu): w_hh_t (H, H) = Uᵀ, packed or not.
    io = (d_out, dh, lengths, da, norms): d_out (T, B, H); dh (B, H) dL/dh_T in, dL/dh_0 out;
      da (T, B, H) out: dL/da_t; norms (T, B, 1) out: ||dL/dh_t|| (0 at padding).
    saved = (hs,): hs (T, B, H) as :func:`forward` left them.
    scratch = (dh_buf,): (N, H).
    """
    w_hh_t, relu = weights
    d_out, dh, lengths, da, norms = io
    (hs,) = saved
    (dh_buf,) = scratch
    steps, _, hidden = hs.shape
    for t in range(steps - 1, -1, -1):
        for b in range(b0, b1):
            dab = da[t, b]
            if lengths.shape[0] and t >= lengths[b]:
                dab[:] = 0.0
                norms[t, b, 0] = 0.0
                continue
            hb, dhb, gb = hs[t, b], dh[b], d_out[t, b]
            one, zero = one_of(hb), zero_of(hb)
            sq = zero
            for j in range(hidden):
                slope = (one if hb[j] > 0 else zero) if relu else one - hb[j] * hb[j]  # σ'(a_t)
                dab[j] = (dhb[j] + gb[j]) * slope
                sq += (dhb[j] + gb[j]) * (dhb[j] + gb[j])
            norms[t, b, 0] = np.sqrt(sq)
        product(da[t, b0:b1], w_hh_t, dh_buf, 0.0)  # dL/dh_{t-1} = σ'(a_t) U
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                copy(dh_buf[b - b0], dh[b])


@njit(**JIT)
def step_forward(weights, io, saved, scratch):
    """One step for every row (an RNNCell's call).

    weights = (w_ih, w_hh, b_ih, b_hh, relu): w_ih (H, I), w_hh (H, H) as they are, or both
      (0, 0) when h holds W x_t + U h_{t-1} on entry (the host ran the products:
      :func:`.host.torch_products`); b_ih, b_hh (H,), or both empty without bias.
    io = (x, h0, h): x (B, I), h0 (B, H) in; h (B, H) out: h_1.
    saved = (): h itself is what BPTT reads.
    scratch = (): none.
    """
    w_ih, w_hh, b_ih, b_hh, relu = weights
    x, h0, h = io
    if w_ih.shape[0]:
        gemm_wt(x, w_ih, h, 0.0)  # W x_t
        gemm_wt(h0, w_hh, h, 1.0)  # a_t = W x_t + U h_{t-1} (+ b below)
    for b in range(h.shape[0]):
        a = h[b]
        for j in range(b_ih.shape[0]):
            a[j] += b_ih[j] + b_hh[j]
        if relu:
            for j in range(a.shape[0]):
                a[j] = max(a[j], 0.0)  # h_t = relu(a_t)
        else:
            tanh_into(a, a)  # h_t = tanh(a_t)


@njit(**JIT)
def step_backward(weights, io, saved, relu):
    """BPTT of :func:`step_forward`: the gradient at the pre-activation, then the products
    unless the host runs them (weights empty).

    weights = (w_ih, w_hh): (H, I), (H, H), or both (0, 0).
    io = (dh, x, h0, da, dx, dh0, dw_ih, dw_hh, db, norms): dh (B, H) the gradient at h_1; x,
      h0 the step's inputs. Out: da (B, H), the gradient at a_1; dx (B, I), dh0 (B, H), dw_ih
      (H, I), dw_hh (H, H) unless the host runs the products; db (H,) the sum of da's rows
      (or empty without bias); norms (B,): ||dL/dh_1|| per row.
    saved = (h,): the step's h_1 (B, H).
    """
    w_ih, w_hh = weights
    dh, x, h0, da, dx, dh0, dw_ih, dw_hh, db, norms = io
    (h,) = saved
    for b in range(h.shape[0]):
        one, zero = one_of(h), zero_of(h)
        sq = zero
        for j in range(h.shape[1]):
            slope = (one if h[b, j] > 0 else zero) if relu else one - h[b, j] * h[b, j]  # σ'(a_t)
            da[b, j] = dh[b, j] * slope
            sq += dh[b, j] * dh[b, j]
        norms[b] = np.sqrt(sq)
    db[:] = 0.0
    for b in range(h.shape[0] if db.shape[0] else 0):
        for j in range(db.shape[0]):
            db[j] += da[b, j]  # dL/db = Σ_b da_b (row by row: vectorised)
    if w_ih.shape[0]:
        gemm_w(da, w_ih, dx, 0.0)  # dL/dx_t = σ'(a_t) W
        gemm_w(da, w_hh, dh0, 0.0)  # dL/dh_{t-1} = σ'(a_t) U
        gemm_at(da, x, dw_ih, 0.0)  # dW = daᵀ x_t
        gemm_at(da, h0, dw_hh, 0.0)  # dU = daᵀ h_{t-1}


# the cell's step kernels called by address (:mod:`.address`), as the LSTM's


@njit(**JIT)
def step_forward_at(x, h0, w_ih, w_hh, b_ih, b_hh, h, like, sizes, relu):
    """:func:`step_forward`. Addresses: x (B, I); h0 in, h (B, H) out (or the products in);
    w_ih (H, I), w_hh (H, H), or both NONE when h holds the products; b_ih, b_hh (H,), or
    both NONE without bias. like: a scalar of the dtype; sizes = (B, I, H)."""
    batch, n_in, hidden = sizes
    nb, ng = hidden if b_ih else 0, hidden if w_ih else 0
    weights = (
        view(w_ih, (ng, n_in), like), view(w_hh, (ng, hidden), like),
        view(b_ih, nb, like), view(b_hh, nb, like), relu,
    )  # fmt: skip
    io = (
        view(x, (batch, n_in), like), view(h0, (batch, hidden), like),
        view(h, (batch, hidden), like),
    )  # fmt: skip
    step_forward(weights, io, (), ())


@njit(**JIT)
def step_backward_at(dh, h, ins, outs, like, sizes, relu):
    """:func:`step_backward`. Addresses: dh, h (B, H); ins = (x (B, I), h0 (B, H), w_ih
    (H, I), w_hh (H, H)), the weights NONE when the host runs the products; outs = (da
    (B, H), dx (B, I), dh0 (B, H), dw_ih (H, I), dw_hh (H, H), db (H,) or NONE without
    bias, norms (B,)), dx, dh0, dw_ih, dw_hh NONE when the host runs the products.
    sizes = (B, I, H)."""
    batch, n_in, hidden = sizes
    ng = hidden if ins[2] else 0
    da, dx, dh0, dw_ih, dw_hh, db, norms = outs
    state = (batch, hidden)
    io = (
        view(dh, state, like), view(ins[0], (batch, n_in), like), view(ins[1], state, like),
        view(da, state, like), view(dx, (batch if ng else 0, n_in), like),
        view(dh0, (batch if ng else 0, hidden), like), view(dw_ih, (ng, n_in), like),
        view(dw_hh, (ng, hidden), like), view(db, hidden if db else 0, like),
        view(norms, batch, like),
    )  # fmt: skip
    weights = (view(ins[2], (ng, n_in), like), view(ins[3], (ng, hidden), like))
    step_backward(weights, io, (view(h, state, like),), relu)


# host: the engine functions ------------------------------------------------------------------


def rnn_forward(
    x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
) -> RNNForward:
    """See :func:`longshort.engine.reference.rnn_forward`."""
    hs = host.project_all(x, w.w_ih, w.b_ih, w.b_hh)  # becomes h_1 .. h_T in place
    h = h0.clone(memory_format=torch.contiguous_format)
    steps, batch, hidden = hs.shape
    weights = (host.recurrent(w.w_hh, steps), nonlinearity == "relu")
    io = (h.numpy(), host.lengths_array(lengths))

    def args(b0: int, b1: int) -> tuple:
        return weights, io, (hs.numpy(),), (), b0, b1

    flops = 2 * batch * hidden**2
    threads.run(forward, threads.ranges(batch, flops=flops * steps), args, flops)
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
    steps, batch, hidden = hs.shape
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    da = torch.from_numpy(host.kept("da", tuple(hs.shape), host.array(hs).dtype))  # all written
    norms = x.new_empty(steps, batch, 1)
    # Uᵀ transposed once: each step's product reads rows
    weights = (host.recurrent(w.w_hh.t(), steps), nonlinearity == "relu")
    io = (host.array(d_out), dh.numpy(), host.lengths_array(lengths), da.numpy(), norms.numpy())
    saved_arrays = (host.array(hs),)

    def args(b0: int, b1: int) -> tuple:
        scratch = (packed.aligned_empty((b1 - b0, hidden), hs.numpy().dtype),)
        return weights, io, saved_arrays, scratch, b0, b1

    flops = 2 * batch * hidden**2
    threads.run(backward, threads.ranges(batch, flops=flops * steps), args, flops)
    dx, dw_ih, dw_hh, db = host.input_and_weight_grads(da, x, h0, hs, w.w_ih)
    assert dx is not None  # need_dx left True
    return RNNGrads(dx, dh, dw_ih, dw_hh, db, norms)


def rnn_step(x: Tensor, h0: Tensor, w: RNNWeights, nonlinearity: str) -> Tensor:
    """One RNN step of an RNNCell, float32/float64, in one compiled call: h_1 (B, H). Above
    a few rows the products run first on torch's GEMM (:func:`.host.torch_products`)."""
    (batch, hidden), n_in = h0.shape, x.shape[1]
    x, h0 = x.contiguous(), h0.contiguous()
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    b_ih, b_hh = (None if t is None else t.contiguous() for t in (w.b_ih, w.b_hh))
    h = x.new_empty(batch, hidden)
    weights = (w_ih.data_ptr(), w_hh.data_ptr())
    if host.torch_products(batch):
        torch.mm(x, w_ih.t(), out=h)  # W x_t
        h.addmm_(h0, w_hh.t())  # + U h_{t-1}
        weights = (address.NONE, address.NONE)
    step_forward_at(
        x.data_ptr(), h0.data_ptr(), *weights, address.optional(b_ih), address.optional(b_hh),
        h.data_ptr(), address.LIKE[x.dtype], (batch, n_in, hidden), nonlinearity == "relu",
    )  # fmt: skip
    return h


def rnn_step_backward(
    dh: Tensor,
    x: Tensor,
    h0: Tensor,
    h: Tensor,
    w: RNNWeights,
    nonlinearity: str,
    need_dx: bool = True,
    need_dh0: bool = True,
) -> tuple[Tensor | None, ...]:
    """BPTT of :func:`rnn_step`: dx, dh0, dW_ih, dW_hh, db (None without bias) and the norms
    (1, B, 1); the products on torch's GEMM where the forward's ran there."""
    (batch, hidden), n_in = h0.shape, x.shape[1]
    dh, x, h0 = dh.contiguous(), x.contiguous(), h0.contiguous()
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    da, norms = x.new_empty(batch, hidden), x.new_empty(1, batch, 1)
    db = None if w.b_ih is None else x.new_empty(hidden)
    dx: Tensor | None  # None from torch's GEMM unless need_dx (dh0: need_dh0)
    dh0: Tensor | None
    on_torch = host.torch_products(batch)
    if on_torch:
        weights, grads = (address.NONE,) * 2, (address.NONE,) * 4
    else:
        dx, dh0 = x.new_empty(batch, n_in), x.new_empty(batch, hidden)
        dw_ih, dw_hh = x.new_empty(hidden, n_in), x.new_empty(hidden, hidden)
        weights = (w_ih.data_ptr(), w_hh.data_ptr())
        grads = (dx.data_ptr(), dh0.data_ptr(), dw_ih.data_ptr(), dw_hh.data_ptr())
    step_backward_at(
        dh.data_ptr(), h.data_ptr(), (x.data_ptr(), h0.data_ptr(), *weights),
        (da.data_ptr(), *grads, address.optional(db), norms.data_ptr()),
        address.LIKE[x.dtype], (batch, n_in, hidden), nonlinearity == "relu",
    )  # fmt: skip
    if on_torch:  # σ'(a_t) W, σ'(a_t) U, daᵀ x_t, daᵀ h_{t-1}
        dx, dh0, dw_ih, dw_hh = host.torch_step_grads(
            da, da, x, h0, w_ih, w_hh, None, need_dx, need_dh0
        )
    return dx, dh0, dw_ih, dw_hh, db, norms
