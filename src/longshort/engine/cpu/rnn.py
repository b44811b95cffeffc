"""The vanilla RNN over a whole sequence, compiled: forward loop and BPTT loop side by side.

h_t = tanh(W x_t + U h_{t-1} + b) (or relu), as ``longshort.cells.rnn``. Shapes: T steps,
B batch, H hidden. ``lengths`` is (B,) int64, or empty when all sequences run T steps.
A call computes the batch rows [b0, b1) for all steps (see ``lstm.py``); scratch has N rows.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from longshort.engine.cpu.activations import JIT, tanh_into
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
            h[b, :] = a


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
                dh[b, :] = dh_buf[b - b0]
