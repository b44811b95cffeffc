"""The vanilla RNN over a whole sequence, compiled: forward loop and BPTT loop side by side.

h_t = tanh(W x_t + U h_{t-1} + b) (or relu), as ``longshort.cells.rnn``. Shapes: T steps,
B batch, H hidden. ``lengths`` is (B,) int64, or empty when all sequences run T steps.
A call computes the batch rows [b0, b1) for all steps (see ``lstm.py``); scratch has N rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from longshort.engine.cpu.activations import JIT, copy, tanh_into
from longshort.engine.cpu.blas import matmul_at, matmul_w, matmul_wt
from longshort.engine.cpu.packed import product


@njit(**JIT)
def forward(z, h, lengths, w_hh, relu, bits, b0, b1):
    """z (T, B, H): W x_t + b on entry, h_t on return (zero at padding). h (B, H): h_0 in,
    h_n out."""
    two_k = bits.view(np.float32)
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
                tanh_into(a, a, bits, two_k)  # h_t = tanh(a_t)
            copy(a, h[b])


@njit(**JIT)
def backward(d_out, dh, hs, lengths, w_hh_t, relu, da, dh_buf, norms, b0, b1):
    """BPTT of :func:`forward`; w_hh_t (H, H) = U^T. dh (B, H): dL/dh_T in, dL/dh_0 out;
    da (T, B, H) out;
    dh_buf (N, H) scratch; norms (T, B, 1) out: ||dL/dh_t|| of every step (0 at padding)."""
    steps, _, hidden = hs.shape
    for t in range(steps - 1, -1, -1):
        for b in range(b0, b1):
            dab = da[t, b]
            if lengths.shape[0] and t >= lengths[b]:
                dab[:] = 0.0
                norms[t, b, 0] = 0.0
                continue
            hb, dhb, gb = hs[t, b], dh[b], d_out[t, b]
            sq = 0.0
            for j in range(hidden):
                slope = (hb[j] > 0) if relu else 1 - hb[j] * hb[j]  # σ'(a_t)
                dab[j] = (dhb[j] + gb[j]) * slope
                sq += (dhb[j] + gb[j]) * (dhb[j] + gb[j])
            norms[t, b, 0] = sq**0.5
        product(da[t, b0:b1], w_hh_t, dh_buf, 0.0)  # dL/dh_{t-1} = σ'(a_t) U
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                copy(dh_buf[b - b0], dh[b])


@njit(**JIT)
def step_forward(x, h0, w_ih, w_hh, bias, relu, h, bits):
    """One step for every row, as one call (an RNNCell's): x (B, I), h0 (B, H); w_ih (H, I),
    w_hh (H, H) as they are; bias (H,). h (B, H) out: h_1."""
    two_k = bits.view(np.float32)
    matmul_wt(x, w_ih, h, 0.0)  # W x_t
    matmul_wt(h0, w_hh, h, 1.0)  # a_t = W x_t + U h_{t-1} (+ b below)
    for b in range(h.shape[0]):
        a = h[b]
        for j in range(a.shape[0]):
            a[j] += bias[j]
        if relu:
            for j in range(a.shape[0]):
                a[j] = max(a[j], 0.0)  # h_t = relu(a_t)
        else:
            tanh_into(a, a, bits, two_k)  # h_t = tanh(a_t)


@njit(**JIT)
def step_backward(dh, x, h0, h, w_ih, w_hh, relu, da, dx, dh0, dw_ih, dw_hh, norms):
    """BPTT of :func:`step_forward`: dh (B, H) the gradient at h_1. Out: da (B, H), dx (B, I),
    dh0 (B, H), dw_ih (H, I), dw_hh (H, H), norms (B,): ||dL/dh_1|| per row."""
    for b in range(h.shape[0]):
        sq = dh[b, 0] * 0
        for j in range(h.shape[1]):
            slope = (h[b, j] > 0) if relu else 1 - h[b, j] * h[b, j]  # σ'(a_t)
            da[b, j] = dh[b, j] * slope
            sq += dh[b, j] * dh[b, j]
        norms[b] = sq**0.5
    matmul_w(da, w_ih, dx, 0.0)  # dL/dx_t = σ'(a_t) W
    matmul_w(da, w_hh, dh0, 0.0)  # dL/dh_{t-1} = σ'(a_t) U
    matmul_at(da, x, dw_ih, 0.0)  # dW = daᵀ x_t
    matmul_at(da, h0, dw_hh, 0.0)  # dU = daᵀ h_{t-1}
