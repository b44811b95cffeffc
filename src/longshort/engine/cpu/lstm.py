"""The LSTM over a whole sequence, compiled: forward loop and BPTT loop side by side.

Same equations as ``longshort.cells.lstm``, written for numba: per step one
recurrent GEMM through BLAS, then the gate math fused per batch row, one 1-D view per gate so
LLVM vectorises each loop. Every buffer is allocated by the caller; a step allocates nothing.

Shapes: T steps, B batch, H hidden, P size of h (= H without projection), G = 4H.
``lengths`` is (B,) int64, or empty when every sequence runs all T steps; ``w_hr`` is (P, H), or
(0, 0) without projection.

Rows: a call computes the batch rows [b0, b1) only, for all T steps; the recurrence of one row
never reads another, so the caller can run disjoint row ranges on several threads at once
(compiled ``nogil``) with no barrier between steps. Scratch buffers (N = b1 - b0 rows) belong
to one call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from longshort.engine.cpu.activations import JIT, copy, gates_inplace, tanh_into
from longshort.engine.cpu.blas import as_operand, matmul_at, matmul_w, matmul_wt
from longshort.engine.cpu.packed import product


@njit(inline="always", **JIT)
def _cell(zb, c_prev, c, m, scale, shift, gain, bits, two_k):
    """One row's step from its pre-activations zb (4H,) = W·x_t + b + U·h_{t-1}: the gates in
    place, C_t into c, o_t ⊙ tanh(C_t) into m; c may be c_prev. Inlined into every loop (a
    call per row made a loop 1.8x slower)."""
    hidden = c.shape[0]
    gates_inplace(zb, scale, shift, gain, bits, two_k)  # i, f, o = σ(·); C~ = tanh(·)
    i, f = zb[0:hidden], zb[hidden : 2 * hidden]
    g, o = zb[2 * hidden : 3 * hidden], zb[3 * hidden :]
    for j in range(hidden):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]  # C_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    tanh_into(c, m, bits, two_k)
    for j in range(hidden):
        m[j] *= o[j]  # h_t = o_t ⊙ tanh(C_t)


@njit(**JIT)
def forward(z, bias, h, cs, w_hh, w_hr, lengths, out, m_buf, h_buf, coef, bits, hb, b0, b1):
    """z (T, B, G): W·x_t on entry, the gates [i, f, g, o] on return (in place). bias (G,):
    b_ih + b_hh, added row by row in the loop (a pass over z in L1, not one over memory).
    h (B, P): h_0 on entry, h_n on return. cs (T+1, B, H): C_0 set by the caller, C_t filled.
    out (T, B, P). m_buf (N, H), h_buf (N, P): scratch for the projection. coef (3, G): the
    activations.gate_coefficients; bits (G,) int32 scratch. hb (N, P) uint16: h rounded to
    bfloat16 when w_hh holds bfloat16 bits (uint16), unused otherwise. Rows [b0, b1) only."""
    scale, shift, gain = coef[0], coef[1], coef[2]
    two_k = bits.view(np.float32)
    steps, _, gates = z.shape
    proj = w_hr.shape[0] > 0
    for t in range(steps):
        zt = z[t]
        hr = h[b0:b1]
        product(as_operand(hr, w_hh, hb), w_hh, zt[b0:b1], 1.0)  # W·x_t + U·h_{t-1}
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, gates zeroed
                zt[b, :] = 0.0
                copy(cs[t, b], cs[t + 1, b])
                continue
            zb = zt[b]
            for j in range(gates):
                zb[j] += bias[j]  # z_t = W·x_t + b + U·h_{t-1}
            m = m_buf[b - b0] if proj else out[t, b]
            _cell(zb, cs[t, b], cs[t + 1, b], m, scale, shift, gain, bits, two_k)
        if proj:
            matmul_wt(m_buf, w_hr, h_buf, 0.0)  # h_t = W_hr (o_t ⊙ tanh(C_t))
            for b in range(b0, b1):
                copy(h_buf[b - b0], out[t, b])
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:
                out[t, b, :] = 0.0
            else:
                copy(out[t, b], h[b])


@njit(**JIT)
def backward(
    d_out,
    dh,
    dc,
    gates,
    cs,
    w_hh_t,
    w_hr_t,
    lengths,
    dz,
    dh_t,
    dm_buf,
    dh_buf,
    tanh_c,
    norms,
    bits,
    dz_bf16,
    b0,
    b1,
):
    """BPTT of :func:`forward`, with the weights transposed so that each product reads rows:
    w_hh_t (P, G) = U^T, w_hr_t (H, P) = W_hr^T or (0, 0). dh (B, P), dc (B, H): dL/dh_T, dL/dC_T
    on entry, dL/dh_0, dL/dC_0 on return. dz (T, B, G): dL/dz_t out. dh_t (T, B, P) with
    projection (it keeps dL/dh_t for dW_hr), else (1, B, P) scratch. dm_buf (N, H),
    dh_buf (N, P), tanh_c (N, H). norms (T, B, 2) out: ||dL/dh_t|| and ||dL/dC_t|| of every
    step (0 at padding). dz_bf16 (N, G) uint16: dz_t rounded to bfloat16 when w_hh_t holds
    bfloat16 bits, unused otherwise.
    Rows [b0, b1) only."""
    two_k = bits.view(np.float32)
    steps, _, n_gates = gates.shape
    hidden = n_gates // 4
    proj = w_hr_t.shape[0] > 0
    for t in range(steps - 1, -1, -1):
        dht = dh_t[t if proj else 0]
        for b in range(b0, b1):
            padded = lengths.shape[0] and t >= lengths[b]
            sq = 0.0
            for j in range(dht.shape[1]):
                dht[b, j] = 0.0 if padded else dh[b, j] + d_out[t, b, j]  # from output and t+1
                sq += dht[b, j] * dht[b, j]
            norms[t, b, 0] = sq**0.5
        if proj:
            matmul_wt(dht[b0:b1], w_hr_t, dm_buf, 0.0)  # back through h_t = W_hr m_t
        for b in range(b0, b1):
            dzb = dz[t, b]
            if lengths.shape[0] and t >= lengths[b]:  # padding: the gradient passes untouched
                dzb[:] = 0.0
                norms[t, b, 1] = 0.0
                continue
            gb = gates[t, b]
            i, f, g, o = (
                gb[0:hidden],
                gb[hidden : 2 * hidden],
                gb[2 * hidden : 3 * hidden],
                gb[3 * hidden :],
            )
            dzi, dzf = dzb[0:hidden], dzb[hidden : 2 * hidden]
            dzg, dzo = dzb[2 * hidden : 3 * hidden], dzb[3 * hidden :]
            c_prev, tc, dcb = cs[t, b], tanh_c[b - b0], dc[b]
            dm = dm_buf[b - b0] if proj else dht[b]
            tanh_into(cs[t + 1, b], tc, bits, two_k)
            sq = 0.0
            for j in range(hidden):
                dcj = dcb[j] + dm[j] * o[j] * (1 - tc[j] * tc[j])  # h_t = o_t ⊙ tanh(C_t)
                sq += dcj * dcj
                dzo[j] = dm[j] * tc[j] * o[j] * (1 - o[j])  # σ' = σ(1 - σ)
                dzi[j] = dcj * g[j] * i[j] * (1 - i[j])  # C_t = f ⊙ C_{t-1} + i ⊙ C~
                dzf[j] = dcj * c_prev[j] * f[j] * (1 - f[j])
                dzg[j] = dcj * i[j] * (1 - g[j] * g[j])  # tanh' = 1 - tanh²
                dcb[j] = dcj * f[j]  # ∂C_t/∂C_{t-1} = f_t: the carousel
            norms[t, b, 1] = sq**0.5
        dzt = dz[t, b0:b1]
        product(as_operand(dzt, w_hh_t, dz_bf16), w_hh_t, dh_buf, 0.0)  # dL/dh_{t-1} = dz_t U
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                copy(dh_buf[b - b0], dh[b])


@njit(**JIT)
def infer(x, w, bias, h, c, lengths, out, xh, coef, bits, z, b0, b1):
    """:func:`forward` when neither BPTT nor a trace will read the gates: one product a step,
    [x_t | h_{t-1}] @ [W_ih | U]ᵀ for this thread's rows, into the scratch z, and nothing of
    a step kept but its output (no T x B x 4H buffer written and read back). No projection
    (P = H). x (T, B, I); w: [W_ih | U] (4H, I + H), as :func:`forward`'s w_hh (packed or
    not); bias (G,). h, c (B, H): h_0, C_0 on entry, h_T, C_T on return. out (T, B, H).
    xh (N, I + H), z (N, G): scratch. coef, bits: as :func:`forward`. Rows [b0, b1) only."""
    scale, shift, gain = coef[0], coef[1], coef[2]
    two_k = bits.view(np.float32)
    steps, _, n_in = x.shape
    gates = z.shape[1]
    for b in range(b0, b1):
        copy(h[b], xh[b - b0, n_in:])
    for t in range(steps):
        for b in range(b0, b1):
            copy(x[t, b], xh[b - b0, :n_in])
        product(xh, w, z, 0.0)  # W·x_t + U·h_{t-1}
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, output zero
                out[t, b, :] = 0.0
                continue
            zb = z[b - b0]
            for j in range(gates):
                zb[j] += bias[j]  # z_t = W·x_t + b + U·h_{t-1}
            _cell(zb, c[b], c[b], out[t, b], scale, shift, gain, bits, two_k)
            copy(out[t, b], xh[b - b0, n_in:])
    for b in range(b0, b1):
        copy(xh[b - b0, n_in:], h[b])


@njit(**JIT)
def step_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, z, h, c, coef, bits):
    """One step for every row, as one call (an LSTMCell's): x (B, I), h0 (B, H), c0 (B, H);
    w_ih (G, I), w_hh (G, H) as they are (a step reads them once: no packing); b_ih, b_hh
    (G,), or both empty without bias.
    z (B, G) out: the gates [i, f, g, o]; h, c (B, H) out: h_1, C_1. coef, bits: as
    :func:`forward`."""
    scale, shift, gain = coef[0], coef[1], coef[2]
    two_k = bits.view(np.float32)
    matmul_wt(x, w_ih, z, 0.0)  # W·x_t
    matmul_wt(h0, w_hh, z, 1.0)  # + U·h_{t-1}
    for b in range(z.shape[0]):
        zb = z[b]
        for j in range(b_ih.shape[0]):
            zb[j] += b_ih[j] + b_hh[j]  # z_t = W·x_t + b + U·h_{t-1}
        _cell(zb, c0[b], c[b], h[b], scale, shift, gain, bits, two_k)


@njit(**JIT)
def step_backward(dh, dc, x, h0, c0, z, c, w_ih, w_hh, dz, dx, dh0, dc0, dw_ih, dw_hh, norms, bits):
    """BPTT of :func:`step_forward`: dh, dc (B, H) the gradients at h_1, C_1; z, c its
    gates and C_1. Out: dz (B, G), dx (B, I), dh0 (B, H), dc0 (B, H), dw_ih (G, I), dw_hh
    (G, H), norms (B, 2): ||dL/dh_1||, ||dL/dC_1|| per row."""
    two_k = bits.view(np.float32)
    hidden = c.shape[1]
    for b in range(z.shape[0]):
        zb, dzb, dcb, tc = z[b], dz[b], dc0[b], dh0[b]  # dh0[b]: tanh(C_1) until the product
        i, f = zb[0:hidden], zb[hidden : 2 * hidden]
        g, o = zb[2 * hidden : 3 * hidden], zb[3 * hidden :]
        tanh_into(c[b], tc, bits, two_k)
        sq_h = sq_c = dh[b, 0] * 0
        for j in range(hidden):
            sq_h += dh[b, j] * dh[b, j]
            dcj = dc[b, j] + dh[b, j] * o[j] * (1 - tc[j] * tc[j])  # h_t = o_t ⊙ tanh(C_t)
            sq_c += dcj * dcj
            dzb[3 * hidden + j] = dh[b, j] * tc[j] * o[j] * (1 - o[j])  # σ' = σ(1 - σ)
            dzb[j] = dcj * g[j] * i[j] * (1 - i[j])  # C_t = f ⊙ C_{t-1} + i ⊙ C~
            dzb[hidden + j] = dcj * c0[b, j] * f[j] * (1 - f[j])
            dzb[2 * hidden + j] = dcj * i[j] * (1 - g[j] * g[j])  # tanh' = 1 - tanh²
            dcb[j] = dcj * f[j]  # ∂C_t/∂C_{t-1} = f_t: the carousel
        norms[b, 0], norms[b, 1] = sq_h**0.5, sq_c**0.5
    matmul_w(dz, w_ih, dx, 0.0)  # dL/dx_t = dz_t W
    matmul_w(dz, w_hh, dh0, 0.0)  # dL/dh_{t-1} = dz_t U
    matmul_at(dz, x, dw_ih, 0.0)  # dW = dz_tᵀ x_t
    matmul_at(dz, h0, dw_hh, 0.0)  # dU = dz_tᵀ h_{t-1}
