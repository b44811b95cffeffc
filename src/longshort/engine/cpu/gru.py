"""The GRU over a whole sequence, compiled: forward loop and BPTT loop side by side.

Same equations as ``longshort.cells.gru`` (Cho et al. 2014, torch's formulation): per step
one recurrent GEMM through BLAS (W_h·h_{t-1} for the three gates), then the gate math fused per
batch row. A call computes the batch rows [b0, b1) for all steps (see ``lstm.py``); scratch
buffers have N = b1 - b0 rows.

Shapes: T steps, B batch, H hidden, G = 3H. ``lengths`` is (B,) int64, or empty when every
sequence runs all T steps; ``b_hh`` is (G,), or empty without bias.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from longshort.engine.cpu.activations import JIT, affine_logistic, copy, tanh_into
from longshort.engine.cpu.packed import product


@njit(**JIT)
def forward(xw, h, hs, gates, w_hh, b_hh, lengths, hw, coef, bits, b0, b1):
    """xw (T, B, G): W_i·x_t + b_i. h (B, H): h_0 on entry, h_n on return. hs (T, B, H) out:
    h_t, carried through padded steps. gates (T, B, 4H) out: [r, z, n, W_hn h_{t-1} + b_hn].
    hw (N, G) scratch. coef (3, 2H): σ's coefficients (activations.gate_coefficients rows);
    bits (G,) int32 scratch. Rows [b0, b1) only."""
    scale, shift, gain = coef[0], coef[1], coef[2]
    two_k = bits.view(np.float32)
    steps, _, g3 = xw.shape
    hidden = g3 // 3
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
            for j in range(2 * hidden):
                gb[j] = xb[j] + hwb[j]
            rz = gb[0 : 2 * hidden]
            affine_logistic(rz, rz, scale, shift, gain, bits, two_k)  # r_t, z_t = σ(·)
            n, hn = gb[2 * hidden : 3 * hidden], gb[3 * hidden :]
            for j in range(hidden):
                hn[j] = hwb[2 * hidden + j]  # W_hn h_{t-1} + b_hn, saved for BPTT
                n[j] = xb[2 * hidden + j] + gb[j] * hn[j]  # W_in x + b_in + r ⊙ (W_hn h + b_hn)
            tanh_into(n, n, bits, two_k)  # n_t = tanh(·)
            for j in range(hidden):
                z = gb[hidden + j]
                hb[j] = (1 - z) * n[j] + z * hb[j]  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
            copy(hb, hs[t, b])


@njit(**JIT)
def backward(d_out, dh, h0, hs, gates, w_hh_t, lengths, dgi, dgh, dh_t, dh_buf, norms, b0, b1):
    """BPTT of :func:`forward`, with w_hh_t (H, G) = W_h^T. dh (B, H): dL/dh_T in, dL/dh_0 out.
    dgi, dgh (T, B, G) out: the gradients at the input-side and hidden-side pre-activations.
    dh_t, dh_buf (N, H) scratch; norms (T, B, 1) out: ||dL/dh_t|| (0 at padding)."""
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
            gb = gates[t, b]
            hp = hs[t - 1, b] if t > 0 else h0[b]
            sq = 0.0
            for j in range(hidden):
                d = dh[b, j] + d_out[t, b, j]  # from the output at t and from step t+1
                dht[j] = d
                sq += d * d
                r, z, n, hn = gb[j], gb[hidden + j], gb[2 * hidden + j], gb[3 * hidden + j]
                dan = d * (1 - z) * (1 - n * n)  # through h = (1-z) n + z h_{t-1}, tanh'
                dar = dan * hn * r * (1 - r)  # n's pre-activation holds r ⊙ (W_hn h + b_hn)
                daz = d * (hp[j] - n) * z * (1 - z)
                dgib[j], dgib[hidden + j], dgib[2 * hidden + j] = dar, daz, dan
                dghb[j], dghb[hidden + j], dghb[2 * hidden + j] = dar, daz, dan * r
            norms[t, b, 0] = sq**0.5
        product(dgh[t, b0:b1], w_hh_t, dh_buf, 0.0)  # the gates' path: dgh_t W_h
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                gb = gates[t, b]
                for j in range(hidden):
                    # ∂h_t/∂h_{t-1} = z_t along the additive path, plus the gates' path
                    dh[b, j] = dh_t[b - b0, j] * gb[hidden + j] + dh_buf[b - b0, j]
