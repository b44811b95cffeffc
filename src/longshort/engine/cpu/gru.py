"""The compiled GRU: its forward and BPTT loops side by side, and the host code that lays out
their buffers and runs them.

Same equations as ``longshort.cells.gru`` (Cho et al. 2014, torch's formulation): per step one
recurrent product on :mod:`.packed`'s micro-kernel (W_h·h_{t-1} for the three gates at once),
then the gate math fused per batch row. Kernel arguments come in the four bundles of
:mod:`longshort.engine.cpu`, then the rows [b0, b1) (see :mod:`.lstm`).

Shapes: T steps, B batch, H hidden, G = 3H, N = b1 - b0 rows of a thread. ``lengths`` is (B,)
int64, or empty when every sequence runs all T steps; ``b_hh`` is (G,), or empty without bias.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine import reference
from longshort.engine.cpu import address, host, packed, threads
from longshort.engine.cpu.activations import (
    JIT,
    affine_logistic,
    copy,
    one_of,
    tanh_into,
    zero_of,
)
from longshort.engine.cpu.address import view
from longshort.engine.cpu.blas import gemm_at, gemm_w, gemm_wt
from longshort.engine.cpu.packed import product
from longshort.engine.types import GRUForward, GRUGrads, GRUWeights


@njit(inline="always", **JIT)
def _row(xb, hwb, gb, h_prev, h, scale, shift, gain):
    """One row's step from xb (G,) = W_i·x_t + b_i and hwb (G,) = W_h·h_{t-1} + b_h: the
    gates [r, z, n, W_hn h_{t-1} + b_hn] into gb (4H,), h_t into h (which may be h_prev).
    Inlined into the loop and the cell's step."""
    hidden = h.shape[0]
    for j in range(2 * hidden):
        gb[j] = xb[j] + hwb[j]
    rz = gb[0 : 2 * hidden]
    affine_logistic(rz, rz, scale, shift, gain)  # r_t, z_t = σ(·)
    n, hn = gb[2 * hidden : 3 * hidden], gb[3 * hidden :]
    for j in range(hidden):
        hn[j] = hwb[2 * hidden + j]  # W_hn h_{t-1} + b_hn, saved for BPTT
        n[j] = xb[2 * hidden + j] + gb[j] * hn[j]  # W_in x + b_in + r ⊙ (W_hn h + b_hn)
    tanh_into(n, n)  # n_t = tanh(·)
    one = one_of(h)
    for j in range(hidden):
        z = gb[hidden + j]
        h[j] = (one - z) * n[j] + z * h_prev[j]  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}


@njit(inline="always", **JIT)
def _row_grads(gb, hp, d, dgib, dghb):
    """One row's BPTT step: from its gates gb (4H,), h_{t-1} in hp and d = dL/dh_t, the
    gradients at the input-side and hidden-side pre-activations into dgib, dghb (G,). Returns
    ||dL/dh_t||. The path through z_t ⊙ h_{t-1} (d ⊙ z_t) is the caller's to add."""
    hidden = hp.shape[0]
    one, sq = one_of(hp), zero_of(hp)  # constants of the dtype: no float64 arithmetic
    for j in range(hidden):
        sq += d[j] * d[j]
        r, z, n, hn = gb[j], gb[hidden + j], gb[2 * hidden + j], gb[3 * hidden + j]
        dan = d[j] * (one - z) * (one - n * n)  # through h = (1-z) n + z h_{t-1}, tanh'
        dar = dan * hn * r * (one - r)  # n's pre-activation holds r ⊙ (W_hn h + b_hn)
        daz = d[j] * (hp[j] - n) * z * (one - z)
        dgib[j], dgib[hidden + j], dgib[2 * hidden + j] = dar, daz, dan
        dghb[j], dghb[hidden + j], dghb[2 * hidden + j] = dar, daz, dan * r
    return np.sqrt(sq)


@njit(**JIT)
def forward(weights, io, saved, scratch, b0, b1):
    """The forward loop over all T steps for rows [b0, b1).

    weights = (w_hh, b_hh, coef): w_hh packed (or (G, H) as it is); b_hh (G,) or empty;
      coef (3, 2H) σ's coefficients (activations.gate_coefficients rows).
    io = (xw, h, lengths): xw (T, B, G) W_i·x_t + b_i; h (B, H) h_0 in, h_n out.
    saved = (hs, gates): hs (T, B, H) out, h_t carried through padded steps; gates (T, B, 4H)
      out, [r, z, n, W_hn h_{t-1} + b_hn].
    scratch = (hw,): hw (N, G).
    """
    w_hh, b_hh, coef = weights
    xw, h, lengths = io
    hs, gates = saved
    (hw,) = scratch
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps = xw.shape[0]
    for t in range(steps):
        for r in range(b1 - b0):
            if b_hh.shape[0]:
                copy(b_hh, hw[r])
            else:
                hw[r, :] = 0.0
        product(h[b0:b1], w_hh, hw, 1.0)  # W_h·h_{t-1} + b_h for r, z, n at once
        for b in range(b0, b1):
            gb, hb, xb, hwb = gates[t, b], h[b], xw[t, b], hw[b - b0]
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, gates zeroed
                gb[:] = 0.0
                copy(hb, hs[t, b])
                continue
            _row(xb, hwb, gb, hb, hb, scale, shift, gain)
            copy(hb, hs[t, b])


@njit(**JIT)
def backward(weights, io, saved, scratch, b0, b1):
    """BPTT of :func:`forward` for rows [b0, b1).

    weights = (w_hh_t,): (H, G) = W_hᵀ, packed or not.
    io = (d_out, dh, h0, lengths, dgi, dgh, norms): d_out (T, B, H); dh (B, H) dL/dh_T in,
      dL/dh_0 out; h0 (B, H); dgi, dgh (T, B, G) out: the gradients at the input-side and
      hidden-side pre-activations; norms (T, B, 1) out: ||dL/dh_t|| (0 at padding).
    saved = (hs, gates): as :func:`forward` left them.
    scratch = (dh_t, dh_buf): (N, H) each.
    """
    (w_hh_t,) = weights
    d_out, dh, h0, lengths, dgi, dgh, norms = io
    hs, gates = saved
    dh_t, dh_buf = scratch
    steps, _, g4 = gates.shape
    hidden = g4 // 4
    for t in range(steps - 1, -1, -1):
        for b in range(b0, b1):
            dgib, dghb, dht = dgi[t, b], dgh[t, b], dh_t[b - b0]
            if lengths.shape[0] and t >= lengths[b]:  # padding: the gradient passes untouched
                dgib[:] = 0.0
                dghb[:] = 0.0
                dht[:] = 0.0
                norms[t, b, 0] = 0.0
                continue
            hp = hs[t - 1, b] if t > 0 else h0[b]
            for j in range(hidden):
                dht[j] = dh[b, j] + d_out[t, b, j]  # from the output at t and from step t+1
            norms[t, b, 0] = _row_grads(gates[t, b], hp, dht, dgib, dghb)
        product(dgh[t, b0:b1], w_hh_t, dh_buf, 0.0)  # the gates' path: dgh_t W_h
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                gb = gates[t, b]
                for j in range(hidden):
                    # ∂h_t/∂h_{t-1} = z_t along the additive path, plus the gates' path
                    dh[b, j] = dh_t[b - b0, j] * gb[hidden + j] + dh_buf[b - b0, j]


# kernels: one step of a GRUCell, every row in one call -----------------------------------------


@njit(**JIT)
def step_forward(weights, io, saved, scratch):
    """One step for every row (a GRUCell's call).

    weights = (w_ih, w_hh, b_ih, b_hh, coef): w_ih (G, I), w_hh (G, H) as they are (a step
      reads them once: no packing), or both (0, 0) when xw, hw hold the products on entry
      (the host ran them: :func:`.host.torch_products`); b_ih, b_hh (G,), or both empty
      without bias; coef (3, 2H).
    io = (x, h0, h): x (B, I), h0 (B, H) in; h (B, H) out: h_1.
    saved = (gates,): gates (B, 4H) out, [r, z, n, W_hn h_0 + b_hn].
    scratch = (xw, hw): xw, hw (B, G), W_i·x and W_h·h_0.
    """
    w_ih, w_hh, b_ih, b_hh, coef = weights
    x, h0, h = io
    (gates,) = saved
    xw, hw = scratch
    scale, shift, gain = coef[0], coef[1], coef[2]
    if w_ih.shape[0]:
        gemm_wt(x, w_ih, xw, 0.0)  # W_i·x
        gemm_wt(h0, w_hh, hw, 0.0)  # W_h·h_0
    for b in range(x.shape[0]):
        xb, hwb = xw[b], hw[b]
        for j in range(b_ih.shape[0]):
            xb[j] += b_ih[j]  # + b_i
            hwb[j] += b_hh[j]  # + b_h
        _row(xb, hwb, gates[b], h0[b], h[b], scale, shift, gain)


@njit(**JIT)
def step_backward(weights, io, saved):
    """BPTT of :func:`step_forward`: every row's gate gradients, then the products unless
    the host runs them (weights empty).

    weights = (w_ih, w_hh): (G, I), (G, H), or both (0, 0).
    io = (dh, x, h0, dgi, dgh, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, norms): dh (B, H)
      dL/dh_1, x (B, I), h0 (B, H) in. Out: dgi, dgh (B, G), the gradients at the
      input-side and hidden-side pre-activations; dh0 (B, H): dh ⊙ z, plus dgh W_h unless
      the host runs the products, as for dx (B, I), dw_ih (G, I), dw_hh (G, H); db_ih, db_hh
      (G,) the sums of dgi's and dgh's rows (or empty without bias); norms (B, 1).
    saved = (gates,): as :func:`step_forward` left them.
    """
    w_ih, w_hh = weights
    dh, x, h0, dgi, dgh, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, norms = io
    (gates,) = saved
    hidden = h0.shape[1]
    for b in range(h0.shape[0]):
        norms[b, 0] = _row_grads(gates[b], h0[b], dh[b], dgi[b], dgh[b])
        for j in range(hidden):
            dh0[b, j] = dh[b, j] * gates[b, hidden + j]  # ∂h_1/∂h_0 = z along the additive path
    db_ih[:] = 0.0
    db_hh[:] = 0.0
    for b in range(h0.shape[0] if db_ih.shape[0] else 0):
        for j in range(db_ih.shape[0]):
            db_ih[j] += dgi[b, j]  # dL/db_i = Σ_b dgi_b (row by row: vectorised)
            db_hh[j] += dgh[b, j]
    if w_ih.shape[0]:
        gemm_w(dgi, w_ih, dx, 0.0)  # dL/dx = dgi W_i
        gemm_w(dgh, w_hh, dh0, 1.0)  # + the gates' path: dgh W_h
        gemm_at(dgi, x, dw_ih, 0.0)  # dW_i = dgiᵀ x
        gemm_at(dgh, h0, dw_hh, 0.0)  # dW_h = dghᵀ h_0


# the cell's step kernels called by address (:mod:`.address`), as the LSTM's


@njit(**JIT)
def step_forward_at(x, h0, w_ih, w_hh, b_ih, b_hh, h, gates, xw, hw, like, sizes, coef):
    """:func:`step_forward`. Addresses: x (B, I); h0 in, h out (B, H); gates (B, 4H) out;
    xw, hw (B, G) the products, or both NONE; w_ih (G, I), w_hh (G, H), or both NONE when
    xw, hw hold the products; b_ih, b_hh (G,), or both NONE without bias. like: a scalar of
    the dtype; sizes = (B, I, H); coef (3, 2H)."""
    batch, n_in, hidden = sizes
    g, nb, ng = 3 * hidden, 3 * hidden if b_ih else 0, 3 * hidden if w_ih else 0
    weights = (
        view(w_ih, (ng, n_in), like), view(w_hh, (ng, hidden), like),
        view(b_ih, nb, like), view(b_hh, nb, like), coef,
    )  # fmt: skip
    io = (
        view(x, (batch, n_in), like), view(h0, (batch, hidden), like),
        view(h, (batch, hidden), like),
    )  # fmt: skip
    if xw:
        products = (view(xw, (batch, g), like), view(hw, (batch, g), like))
    else:
        products = (np.empty((batch, g), coef.dtype), np.empty((batch, g), coef.dtype))
    saved = (view(gates, (batch, 4 * hidden), like),)
    step_forward(weights, io, saved, products)


@njit(**JIT)
def step_backward_at(dh, saved, ins, outs, like, sizes):
    """:func:`step_backward`. Addresses: dh (B, H); saved = gates (B, 4H); ins = (x (B, I),
    h0 (B, H), w_ih (G, I), w_hh (G, H)), the weights NONE when the host runs the products;
    outs = (dgi, dgh (B, G), dx (B, I), dh0 (B, H), dw_ih (G, I), dw_hh (G, H), db_ih,
    db_hh (G,) or both NONE without bias, norms (B, 1)), dx, dw_ih, dw_hh NONE when the host
    runs the products. sizes = (B, I, H)."""
    batch, n_in, hidden = sizes
    g = 3 * hidden
    ng, nb = g if ins[2] else 0, g if outs[6] else 0
    dgi, dgh, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, norms = outs
    state = (batch, hidden)
    io = (
        view(dh, state, like), view(ins[0], (batch, n_in), like), view(ins[1], state, like),
        view(dgi, (batch, g), like), view(dgh, (batch, g), like),
        view(dx, (batch if ng else 0, n_in), like), view(dh0, state, like),
        view(dw_ih, (ng, n_in), like), view(dw_hh, (ng, hidden), like), view(db_ih, nb, like),
        view(db_hh, nb, like), view(norms, (batch, 1), like),
    )  # fmt: skip
    weights = (view(ins[2], (ng, n_in), like), view(ins[3], (ng, hidden), like))
    step_backward(weights, io, (view(saved, (batch, 4 * hidden), like),))


# host: the engine functions ------------------------------------------------------------------


def gru_forward(x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None) -> GRUForward:
    """See :func:`longshort.engine.reference.gru_forward`."""
    steps, batch, _ = x.shape
    hidden = h0.shape[1]
    xw = host.project_all(x, w.w_ih, w.b_ih, None)  # b_hh stays inside: r scales W_hn h + b_hn
    gates = x.new_empty(steps, batch, 4 * hidden)
    hs = x.new_empty(steps, batch, hidden)
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = xw.numpy().dtype
    b_hh = host.optional(w.b_hh, 1, dtype)
    weights = (host.recurrent(w.w_hh, steps), b_hh, host.sigmoid_coefficients(hidden, dtype))
    io = (xw.numpy(), h.numpy(), host.lengths_array(lengths))
    saved = (hs.numpy(), gates.numpy())

    def args(b0: int, b1: int) -> tuple:
        return weights, io, saved, (packed.aligned_empty((b1 - b0, 3 * hidden), dtype),), b0, b1

    flops = 2 * batch * 3 * hidden * hidden
    threads.run(forward, threads.ranges(batch, flops=flops * steps), args, flops)
    mask = reference.step_mask(lengths, steps)
    out = hs.clone() if mask is None else torch.where(mask, hs, 0)
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
    shape, real = (steps, batch, 3 * hidden), host.array(x).dtype  # BPTT writes all of both
    dgi, dgh = (torch.from_numpy(host.kept(role, shape, real)) for role in ("dgi", "dgh"))
    norms = x.new_empty(steps, batch, 1)
    dtype = dgi.numpy().dtype
    weights = (host.recurrent(w.w_hh.t(), steps),)  # transposed once: each product reads rows
    io = (
        host.array(d_out), dh.numpy(), host.array(h0), host.lengths_array(lengths),
        dgi.numpy(), dgh.numpy(), norms.numpy(),
    )  # fmt: skip
    saved_arrays = (host.array(saved.hs), host.array(saved.gates))

    def args(b0: int, b1: int) -> tuple:
        scratch = tuple(packed.aligned_empty((b1 - b0, hidden), dtype) for _ in range(2))
        return weights, io, saved_arrays, scratch, b0, b1

    flops = 2 * batch * 3 * hidden * hidden
    threads.run(backward, threads.ranges(batch, flops=flops * steps), args, flops)
    dgin, dghn = host.as_matrix(dgi.numpy()), host.as_matrix(dgh.numpy())
    dx = x.new_empty(x.shape)
    dw_ih, dw_hh = torch.empty_like(w.w_ih), torch.empty_like(w.w_hh)
    # dx = dgi W_i, dW_i = Σ_t dgi_tᵀ x_t, dW_h = Σ_t dgh_tᵀ h_{t-1}
    hs = host.as_matrix(host.array(saved.hs)[:-1])
    ins = (dgin, dghn, host.as_matrix(host.array(x)), host.array(h0), hs, host.array(w.w_ih))
    host.weight_products(*ins, host.as_matrix(dx.numpy()), dw_ih.numpy(), dw_hh.numpy())
    db_ih = torch.from_numpy(dgin.sum(axis=0))
    db_hh = torch.from_numpy(dghn.sum(axis=0))
    return GRUGrads(dx, dh, dw_ih, dw_hh, db_ih, db_hh, norms)


def gru_step(x: Tensor, h0: Tensor, w: GRUWeights) -> tuple[Tensor, Tensor]:
    """One GRU step of a GRUCell, float32/float64, in one compiled call: x (B, I), h0 (B, H)
    -> h_1 (B, H) and the gates (B, 4H) BPTT reads. Above a few rows the products run first
    on torch's GEMM (:func:`.host.torch_products`)."""
    (batch, hidden), n_in = h0.shape, x.shape[1]
    x, h0 = x.contiguous(), h0.contiguous()
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    b_ih, b_hh = (None if t is None else t.contiguous() for t in (w.b_ih, w.b_hh))
    gates, h = x.new_empty(batch, 4 * hidden), x.new_empty(batch, hidden)
    weights, products = (w_ih.data_ptr(), w_hh.data_ptr()), (address.NONE, address.NONE)
    if host.torch_products(batch):
        xw, hw = x.mm(w_ih.t()), h0.mm(w_hh.t())  # W_i·x, W_h·h_0
        weights, products = (address.NONE, address.NONE), (xw.data_ptr(), hw.data_ptr())
    like = address.LIKE[x.dtype]
    step_forward_at(
        x.data_ptr(), h0.data_ptr(), *weights, address.optional(b_ih), address.optional(b_hh),
        h.data_ptr(), gates.data_ptr(), *products, like, (batch, n_in, hidden),
        host.sigmoid_coefficients(hidden, like.dtype),
    )  # fmt: skip
    return h, gates


def gru_step_backward(
    dh: Tensor,
    x: Tensor,
    h0: Tensor,
    w: GRUWeights,
    gates: Tensor,
    need_dx: bool = True,
    need_dh0: bool = True,
) -> tuple[Tensor | None, ...]:
    """BPTT of :func:`gru_step`: dx, dh0, dW_ih, dW_hh, db_ih, db_hh (None without bias) and
    the norms (1, B, 1); the products on torch's GEMM where the forward's ran there."""
    (batch, hidden), n_in = h0.shape, x.shape[1]
    g = 3 * hidden
    dh, x, h0 = dh.contiguous(), x.contiguous(), h0.contiguous()
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    dgi, dgh, norms = x.new_empty(batch, g), x.new_empty(batch, g), x.new_empty(1, batch, 1)
    db_ih, db_hh = (None, None) if w.b_ih is None else (x.new_empty(g), x.new_empty(g))
    dh0 = x.new_empty(batch, hidden)
    dx: Tensor | None  # None from torch's GEMM unless need_dx
    on_torch = host.torch_products(batch)
    if on_torch:
        weights, grads = (address.NONE,) * 2, (address.NONE,) * 3
    else:
        dx, dw_ih, dw_hh = x.new_empty(batch, n_in), x.new_empty(g, n_in), x.new_empty(g, hidden)
        weights = (w_ih.data_ptr(), w_hh.data_ptr())
        grads = (dx.data_ptr(), dw_ih.data_ptr(), dw_hh.data_ptr())
    step_backward_at(
        dh.data_ptr(), gates.data_ptr(), (x.data_ptr(), h0.data_ptr(), *weights),
        (dgi.data_ptr(), dgh.data_ptr(), grads[0], dh0.data_ptr(), *grads[1:],
         address.optional(db_ih), address.optional(db_hh), norms.data_ptr()),
        address.LIKE[x.dtype], (batch, n_in, hidden),
    )  # fmt: skip
    if on_torch:  # dgi W_i, dh ⊙ z + dgh W_h, dgiᵀ x, dghᵀ h_0
        dx, dh0_all, dw_ih, dw_hh = host.torch_step_grads(
            dgi, dgh, x, h0, w_ih, w_hh, dh0, need_dx, need_dh0
        )
        return dx, dh0_all, dw_ih, dw_hh, db_ih, db_hh, norms
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, norms
