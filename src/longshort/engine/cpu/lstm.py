"""The compiled LSTM: its kernels (forward loop, BPTT loop, the no-grad loop and the one-call
cell step, side by side) and the host code that lays out their buffers and runs them.

Same equations as ``longshort.cells.lstm``, written for numba: per step one recurrent product on
:mod:`.packed`'s micro-kernel (:func:`.packed.product`), then the gate math fused per batch row,
one 1-D view per gate so LLVM vectorises each loop. Every buffer is allocated by the host code;
a step allocates nothing.

Shapes: T steps, B batch, I input, H hidden, P size of h (= H without projection), G = 4H,
N = b1 - b0 rows of a thread. ``lengths`` is (B,) int64, or empty when every sequence runs all
T steps; ``w_hr`` is (P, H), or (0, 0) without projection. Kernel arguments come in the four
bundles of :mod:`longshort.engine.cpu` (weights, io, saved, scratch), then the rows [b0, b1):
the recurrence of one row never reads another, so the host runs disjoint row ranges on several
threads at once (compiled ``nogil``) with no barrier between steps.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine.cpu import address, host, packed, sync, threads
from longshort.engine.cpu.activations import (
    JIT,
    copy,
    gates_inplace,
    one_of,
    tanh_into,
    zero_of,
)
from longshort.engine.cpu.address import prefetch, prefetch_write, view
from longshort.engine.cpu.blas import as_operand, gemm_at, gemm_w, gemm_wt
from longshort.engine.cpu.packed import product
from longshort.engine.types import LSTMForward, LSTMGrads, LSTMWeights

# kernels: one row's step each way ------------------------------------------------------------


@njit(inline="always", **JIT)
def _cell(zb, bias, c_prev, c, m, scale, shift, gain):
    """One row's step from zb (4H,) = W·x_t + U·h_{t-1} and the bias (4H,): the gates in
    place, C_t into c, o_t ⊙ tanh(C_t) into m; c may be c_prev. Inlined into every loop (a
    call per row made a loop 1.8x slower)."""
    hidden = c.shape[0]
    gates_inplace(zb, bias, scale, shift, gain)  # i, f, o = σ(z + b); C~ = tanh(·)
    i, f = zb[0:hidden], zb[hidden : 2 * hidden]
    g, o = zb[2 * hidden : 3 * hidden], zb[3 * hidden :]
    for j in range(hidden):
        c[j] = f[j] * c_prev[j] + i[j] * g[j]  # C_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    tanh_into(c, m)
    for j in range(hidden):
        m[j] *= o[j]  # h_t = o_t ⊙ tanh(C_t)


@njit(inline="always", **JIT)
def _cell_grads(zb, c_prev, tc, dm, dc, dzb):
    """One row's BPTT step: from its gates zb (4H,) = [i, f, g, o], C_{t-1}, tanh(C_t) in tc
    and dm = dL/d(o_t ⊙ tanh(C_t)), the pre-activation gradients into dzb (4H,); dc (H,) holds
    dL/dC_t from step t+1 on entry and dL/dC_{t-1} on return. Returns ||dL/dC_t||. Inlined
    into the BPTT loop and the cell's step."""
    hidden = tc.shape[0]
    i, f = zb[0:hidden], zb[hidden : 2 * hidden]
    g, o = zb[2 * hidden : 3 * hidden], zb[3 * hidden :]
    dzi, dzf = dzb[0:hidden], dzb[hidden : 2 * hidden]
    dzg, dzo = dzb[2 * hidden : 3 * hidden], dzb[3 * hidden :]
    one, sq = one_of(tc), zero_of(tc)  # constants of the dtype: no float64 arithmetic
    for j in range(hidden):
        dcj = dc[j] + dm[j] * o[j] * (one - tc[j] * tc[j])  # h_t = o_t ⊙ tanh(C_t)
        sq += dcj * dcj
        dzo[j] = dm[j] * tc[j] * o[j] * (one - o[j])  # σ' = σ(1 - σ)
        dzi[j] = dcj * g[j] * i[j] * (one - i[j])  # C_t = f ⊙ C_{t-1} + i ⊙ C~
        dzf[j] = dcj * c_prev[j] * f[j] * (one - f[j])
        dzg[j] = dcj * i[j] * (one - g[j] * g[j])  # tanh' = 1 - tanh²
        dc[j] = dcj * f[j]  # ∂C_t/∂C_{t-1} = f_t: the carousel
    return np.sqrt(sq)


# kernels: the sequence loops -----------------------------------------------------------------


@njit(**JIT)
def forward(weights, io, saved, scratch, b0, b1):
    """The forward loop over all T steps for rows [b0, b1).

    weights = (w_hh, w_hr, bias, coef): w_hh packed (or (G, P) as it is, or bf16 bits);
      w_hr (P, H) or (0, 0); bias (G,) b_ih + b_hh, added in the gates' pass (not in one over
      memory); coef (3, G) activations.gate_coefficients.
    io = (h, out, lengths): h (B, P) h_0 in, h_n out; out (T, B, P) out.
    saved = (z, cs): z (T, B, G) W·x_t on entry, the gates [i, f, g, o] on return (in place);
      cs (T+1, B, H) with C_0 set by the host, C_t filled.
    scratch = (m_buf, h_buf, hb): m_buf (N, H), h_buf (N, P) for the projection; hb (N, P)
      uint16 h rounded to bfloat16 when w_hh holds bf16 bits.
    """
    w_hh, w_hr, bias, coef = weights
    h, out, lengths = io
    z, cs = saved
    m_buf, h_buf, hb = scratch
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps = z.shape[0]
    proj = w_hr.shape[0] > 0
    for t in range(steps):
        zt = z[t]
        product(as_operand(h[b0:b1], w_hh, hb), w_hh, zt[b0:b1], 1.0)  # W·x_t + U·h_{t-1}
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, gates zeroed
                zt[b, :] = 0.0
                copy(cs[t, b], cs[t + 1, b])
                continue
            m = m_buf[b - b0] if proj else out[t, b]
            _cell(zt[b], bias, cs[t, b], cs[t + 1, b], m, scale, shift, gain)
        if proj:
            gemm_wt(m_buf, w_hr, h_buf, 0.0)  # h_t = W_hr (o_t ⊙ tanh(C_t))
            for b in range(b0, b1):
                copy(h_buf[b - b0], out[t, b])
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:
                out[t, b, :] = 0.0
            else:
                copy(out[t, b], h[b])


@njit(**JIT)
def forward_units(weights, io, saved, scratch, j0, j1, team):
    """:func:`forward` for the hidden units [j0, j1) and all rows, one of ``team`` threads
    that each own a share of the units and meet once a step (see :func:`lstm_forward_units`).

    weights = (u, rows, w, bias, coef): u (G, H) the recurrent weight as it is; rows (4n,)
      int64 the rows [U_i; U_f; U_g; U_o] of this thread's units, which the loop first packs
      into w (packed.packed_shape(4n, H)), so that the threads pack their shares at once;
      bias (4n,) their b_ih + b_hh, gate by gate; coef (3, 4n).
    io = (hh, out, lengths, count): hh (2, B, H), h_0 in hh[0]; loop step t reads h_{t-1}
      from hh[t % 2] and writes h_t into hh[(t + 1) % 2], so h_T ends in hh[T % 2]; out
      (T, B, H) out; lengths (B,) or empty; count: sync.counter().
    saved = (z, cs): z (T, B, G) W·x_t on entry, the gates on return; cs (T+1, B, H), C_0
      set, C_t filled: this thread writes its units' columns only.
    scratch = (zp,): zp (B, 4n).
    team: the threads of the call (1: no barrier).
    """
    u, rows, w, bias, coef = weights
    hh, out, lengths, count = io
    z, cs = saved
    (zp,) = scratch
    packed.pack_rows(u, u[:, :0], rows, w)
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps, batch, gates = z.shape
    hidden, n = gates // 4, j1 - j0
    for t in range(steps):
        src, dst = hh[t % 2], hh[(t + 1) % 2]
        product(src, w, zp, 0.0)  # U·h_{t-1}, this thread's columns
        for b in range(batch):
            zt, zb = z[t, b], zp[b]
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, gates zeroed
                for g in range(4):
                    zt[g * hidden + j0 : g * hidden + j1] = 0.0
                copy(cs[t, b, j0:j1], cs[t + 1, b, j0:j1])
                copy(src[b, j0:j1], dst[b, j0:j1])
                out[t, b, j0:j1] = 0.0
                continue
            for g in range(4):  # one slice a gate: a loop over indices vectorised 3x worse
                zg = zb[g * n : (g + 1) * n]
                xg = zt[g * hidden + j0 : g * hidden + j1]
                for k in range(n):
                    zg[k] += xg[k]  # + W·x_t
            m, c_prev, c = out[t, b, j0:j1], cs[t, b, j0:j1], cs[t + 1, b, j0:j1]
            _cell(zb, bias, c_prev, c, m, scale, shift, gain)
            for g in range(4):  # the gates, saved for BPTT
                copy(zb[g * n : (g + 1) * n], zt[g * hidden + j0 : g * hidden + j1])
            copy(m, dst[b, j0:j1])
        if team > 1:
            sync.wait(count, team, t + 1)


@njit(inline="always", **JIT)
def next_row(t, b, b0, b1):
    """The row BPTT's row loop takes after row b of step t on rows [b0, b1): row b + 1, or
    after the last the first of step t - 1 (row b0 of step 0 once t = 0: a row to prefetch,
    never read out of bounds)."""
    return (t, b + 1) if b + 1 < b1 else (max(t - 1, 0), b0)


@njit(**JIT)
def backward(weights, io, saved, scratch, b0, b1):
    """BPTT of :func:`forward` for rows [b0, b1), the weights transposed so that each product
    reads rows.

    weights = (w_hh_t, w_hr_t): w_hh_t (P, G) = Uᵀ, packed or not; w_hr_t (H, P) = W_hrᵀ or
      (0, 0).
    io = (d_out, dh, dc, lengths, dz, dh_t, norms): d_out (T, B, P); dh (B, P), dc (B, H):
      dL/dh_T, dL/dC_T in, dL/dh_0, dL/dC_0 out; dz (T, B, G) out: dL/dz_t; dh_t (T, B, P)
      out with projection (dL/dh_t, for dW_hr), else (1, B, P) scratch; norms (T, B, 2) out:
      ||dL/dh_t|| and ||dL/dC_t|| of every step (0 at padding).
    saved = (gates, cs): as :func:`forward` left them.
    scratch = (dm_buf, dh_buf, tanh_c, dz_bf16): dm_buf (N, H), dh_buf (N, P), tanh_c
      (N, H); dz_bf16 (N, G) uint16 dz_t rounded to bfloat16 when w_hh_t holds bf16 bits.
    """
    w_hh_t, w_hr_t = weights
    d_out, dh, dc, lengths, dz, dh_t, norms = io
    gates, cs = saved
    dm_buf, dh_buf, tanh_c, dz_bf16 = scratch
    steps = gates.shape[0]
    proj = w_hr_t.shape[0] > 0
    for t in range(steps - 1, -1, -1):
        dht = dh_t[t if proj else 0]
        for b in range(b0, b1):
            padded = lengths.shape[0] and t >= lengths[b]
            sq = zero = zero_of(dht)
            for j in range(dht.shape[1]):
                dht[b, j] = zero if padded else dh[b, j] + d_out[t, b, j]  # from output and t+1
                sq += dht[b, j] * dht[b, j]
            norms[t, b, 0] = np.sqrt(sq)
        if proj:
            gemm_wt(dht[b0:b1], w_hr_t, dm_buf, 0.0)  # back through h_t = W_hr m_t
        for b in range(b0, b1):
            # the next row's saved gates and C_t, and its dz row, prefetched: BPTT alone, new /
            # old 0.91 at (500, 16, 16, 64), 0.96-0.98 at (100, 32 or 64, ...); a training step
            # 0.976-0.998 over six runs on both builds
            tn, bn = next_row(t, b, b0, b1)
            prefetch(gates[tn, bn])
            prefetch(cs[tn, bn])
            prefetch(cs[tn + 1, bn])
            prefetch_write(dz[tn, bn])
            if lengths.shape[0] and t >= lengths[b]:  # padding: the gradient passes untouched
                dz[t, b, :] = 0.0
                norms[t, b, 1] = 0.0
                continue
            tc = tanh_c[b - b0]
            tanh_into(cs[t + 1, b], tc)
            dm = dm_buf[b - b0] if proj else dht[b]
            norms[t, b, 1] = _cell_grads(gates[t, b], cs[t, b], tc, dm, dc[b], dz[t, b])
        dzt = dz[t, b0:b1]
        product(as_operand(dzt, w_hh_t, dz_bf16), w_hh_t, dh_buf, 0.0)  # dL/dh_{t-1} = dz_t U
        for b in range(b0, b1):
            if not (lengths.shape[0] and t >= lengths[b]):
                copy(dh_buf[b - b0], dh[b])


@njit(**JIT)
def backward_units(weights, io, saved, scratch, j0, j1, team):
    """:func:`backward` for the hidden units [j0, j1) and all rows, one of ``team`` threads
    that each own a share of the units and meet once a step (see :func:`_backward_units`):
    each goes back through its units' cells, then, once every thread has written its gate
    columns of dL/dz_t, makes its units' columns of dL/dh_{t-1} = dz_t U.

    weights = (u, w): u (G, H) the recurrent weight as it is; w packed.packed_shape(n, G),
      which the loop first fills with U[:, j0:j1] packed for dz_t U[:, j0:j1] (pack_t).
    io = (d_out, dh, dc, lengths, dz, sq, count): d_out (T, B, H); dh, dc (B, H) dL/dh_T and
      dL/dC_T in, dL/dh_0 and dL/dC_0 out, this thread's columns only; lengths (B,) or empty;
      dz (T, B, G) out: dL/dz_t, this thread's gate columns; sq (T, B, 2) out: this thread's
      share of ||dL/dh_t||² and ||dL/dC_t||²; count: sync.counter().
    saved = (gates, cs): as :func:`forward_units` left them.
    scratch = (zb, dzb, tc, dhb): zb, dzb (4n,); tc (n,); dhb (B, n).
    team: the threads of the call (1: no barrier).
    """
    u, w = weights
    d_out, dh, dc, lengths, dz, sq, count = io
    gates, cs = saved
    zb, dzb, tc, dhb = scratch
    packed.pack_t_into(u[:, j0:j1], w)
    steps, batch, _ = gates.shape
    hidden, n = cs.shape[2], j1 - j0
    for t in range(steps - 1, -1, -1):
        for b in range(batch):
            padded = lengths.shape[0] and t >= lengths[b]
            dht = dhb[b]
            s = zero = zero_of(dht)
            for j in range(n):
                dht[j] = zero if padded else dh[b, j0 + j] + d_out[t, b, j0 + j]  # output, t+1
                s += dht[j] * dht[j]
            sq[t, b, 0] = s
            if padded:  # the gradient passes untouched
                for g in range(4):
                    dz[t, b, g * hidden + j0 : g * hidden + j1] = 0.0
                sq[t, b, 1] = 0.0
                continue
            for g in range(4):  # this thread's gates, one block a gate
                copy(gates[t, b, g * hidden + j0 : g * hidden + j1], zb[g * n : (g + 1) * n])
            tanh_into(cs[t + 1, b, j0:j1], tc)
            norm = _cell_grads(zb, cs[t, b, j0:j1], tc, dht, dc[b, j0:j1], dzb)
            sq[t, b, 1] = norm * norm
            for g in range(4):
                copy(dzb[g * n : (g + 1) * n], dz[t, b, g * hidden + j0 : g * hidden + j1])
        if team > 1:
            sync.wait(count, team, steps - t)  # every thread's columns of dz_t written
        product(dz[t], w, dhb, 0.0)  # dL/dh_{t-1} = dz_t U, this thread's units
        for b in range(batch):
            if not (lengths.shape[0] and t >= lengths[b]):
                copy(dhb[b], dh[b, j0:j1])


@njit(**JIT)
def infer(weights, io, saved, scratch, b0, b1):
    """:func:`forward` when neither BPTT nor a trace will read the gates, for rows [b0, b1):
    one product a step, [x_t | h_{t-1}] @ [W_ih | U]ᵀ for this thread's rows, and nothing of a
    step kept but its output (no T x B x 4H buffer written and read back). No projection.

    weights = (w, bias, coef): w [W_ih | U] (G, I + H), packed or not; bias (G,); coef (3, G).
    io = (x, h, c, out, lengths): x (T, B, I); h, c (B, H) h_0, C_0 in, h_T, C_T out;
      out (T, B, H) out.
    saved = (): nothing is saved.
    scratch = (xh, z): xh (N, I + H), z (N, G).
    """
    w, bias, coef = weights
    x, h, c, out, lengths = io
    xh, z = scratch
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps, _, n_in = x.shape
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
            _cell(z[b - b0], bias, c[b], c[b], out[t, b], scale, shift, gain)
            copy(out[t, b], xh[b - b0, n_in:])
    for b in range(b0, b1):
        copy(xh[b - b0, n_in:], h[b])


@njit(**JIT)
def infer_units(weights, io, scratch, j0, j1, team):
    """:func:`infer` for the hidden units [j0, j1) and all rows, one of ``team`` threads that
    each own a share of the units and meet once a step (see :func:`lstm_infer_units`): one
    product a step, [x_t | h_{t-1}] @ [W_ih | U]ᵀ for this thread's gate columns, and nothing
    of a step kept but its output.

    weights = (w_ih, u, rows, w, bias, coef): w_ih (G, I) and u (G, H) as they are; rows (4n,)
      int64 the rows of this thread's units, gate by gate, whose [W_ih | U] the loop first
      packs into w (packed.packed_shape(4n, I + H)); bias (4n,) their b_ih + b_hh; coef (3, 4n).
    io = (x, xh, c, out, lengths, count): x (T, B, I); xh (2, B, I + H), [x_0 | h_0] in xh[0]:
      step t reads [x_t | h_{t-1}] from xh[t % 2] and writes h_t into xh[(t + 1) % 2] (the
      thread of unit 0 also x_{t+1}), so h_T ends in xh[T % 2, :, I:]; c (B, H) C_0 in, C_T
      out, this thread's columns only; out (T, B, H) out; lengths (B,) or empty; count:
      sync.counter().
    scratch = (z,): z (B, 4n).
    team: the threads of the call (1: no barrier).
    """
    w_ih, u, rows, w, bias, coef = weights
    x, xh, c, out, lengths, count = io
    (z,) = scratch
    packed.pack_rows(w_ih, u, rows, w)
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps, batch, n_in = x.shape
    for t in range(steps):
        src, dst = xh[t % 2], xh[(t + 1) % 2]
        product(src, w, z, 0.0)  # W·x_t + U·h_{t-1}, this thread's columns
        if j0 == 0 and t + 1 < steps:  # dst was read last at step t - 1: free since its barrier
            for b in range(batch):
                copy(x[t + 1, b], dst[b, :n_in])
        for b in range(batch):
            h_new = dst[b, n_in + j0 : n_in + j1]
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, output zero
                copy(src[b, n_in + j0 : n_in + j1], h_new)
                out[t, b, j0:j1] = 0.0
                continue
            m, cb = out[t, b, j0:j1], c[b, j0:j1]
            _cell(z[b], bias, cb, cb, m, scale, shift, gain)
            copy(m, h_new)
        if team > 1:
            sync.wait(count, team, t + 1)


@njit(**JIT)
def infer_team(weights, io, saved, scratch, b0, b1, team):
    """:func:`infer` for rows [b0, b1) on one of ``team`` threads that first pack
    [W_ih | U] together, each its share of the panels, and meet once before the loop (the
    packing of a (800, 400) [W_ih | U] took 0.25-0.3 ms of a 2.7 ms layer on one thread).

    weights = (w_ih, w_hh, w, p0, p1, count, bias, coef): w_ih (G, I) and w_hh (G, H) as
      they are; w packed.packed_shape(G, I + H), of which this thread packs the panels
      [p0, p1); count: sync.counter(); bias (G,); coef (3, G).
    io, saved, scratch: as :func:`infer`'s.
    """
    w_ih, w_hh, w, p0, p1, count, bias, coef = weights
    packed.pair_panels_in(w_ih, w_hh, w, p0, p1)
    if team > 1:
        sync.wait(count, team, 1)  # every panel packed
    infer((w, bias, coef), io, saved, scratch, b0, b1)


# kernels: one step of an LSTMCell, every row in one call -------------------------------------


@njit(**JIT)
def step_forward(weights, io, saved, scratch):
    """One step for every row (an LSTMCell's call).

    weights = (w_ih, w_hh, b_ih, b_hh, coef): w_ih (G, I), w_hh (G, H) as they are (a step
      reads them once: no packing), or both (0, 0) when z holds W·x + U·h on entry (the host
      ran the products: :func:`.host.torch_products`); b_ih, b_hh (G,), or both empty
      without bias; coef (3, G).
    io = (x, h0, c0, h, c): x (B, I), h0, c0 (B, H) in; h, c (B, H) out: h_1, C_1.
    saved = (z,): z (B, G) out, the gates [i, f, g, o].
    scratch = (bias,): bias (G,) for b_ih + b_hh.
    """
    w_ih, w_hh, b_ih, b_hh, coef = weights
    x, h0, c0, h, c = io
    (z,) = saved
    (bias,) = scratch
    scale, shift, gain = coef[0], coef[1], coef[2]
    for j in range(bias.shape[0]):
        bias[j] = b_ih[j] + b_hh[j] if b_ih.shape[0] else 0.0  # b = b_ih + b_hh
    if w_ih.shape[0]:
        gemm_wt(x, w_ih, z, 0.0)  # W·x_t
        gemm_wt(h0, w_hh, z, 1.0)  # + U·h_{t-1}
    for b in range(z.shape[0]):
        _cell(z[b], bias, c0[b], c[b], h[b], scale, shift, gain)


@njit(**JIT)
def step_backward(weights, io, saved, scratch):
    """BPTT of :func:`step_forward`: every row's gate gradients, then the products unless
    the host runs them (weights empty).

    weights = (w_ih, w_hh): (G, I), (G, H), or both (0, 0).
    io = (dh, dc, x, h0, c0, dz, dx, dh0, dc0, dw_ih, dw_hh, db, norms): dh, dc (B, H) the
      gradients at h_1, C_1; x, h0, c0 the step's inputs. Out: dz (B, G); dc0 (B, H); dx
      (B, I), dh0 (B, H), dw_ih (G, I), dw_hh (G, H) unless the host runs the products; db
      (G,) the sum of dz's rows (or empty without bias); norms (B, 2): ||dL/dh_1||,
      ||dL/dC_1|| per row.
    saved = (z, c): the step's gates (B, G) and C_1 (B, H).
    scratch = (tc,): tc (H,) for tanh(C_1).
    """
    w_ih, w_hh = weights
    dh, dc, x, h0, c0, dz, dx, dh0, dc0, dw_ih, dw_hh, db, norms = io
    z, c = saved
    (tc,) = scratch
    for b in range(z.shape[0]):
        tanh_into(c[b], tc)
        copy(dc[b], dc0[b])
        sq = zero_of(dh)
        for j in range(dh.shape[1]):
            sq += dh[b, j] * dh[b, j]
        norms[b, 0] = np.sqrt(sq)
        norms[b, 1] = _cell_grads(z[b], c0[b], tc, dh[b], dc0[b], dz[b])
    db[:] = 0.0
    for b in range(z.shape[0] if db.shape[0] else 0):
        for j in range(db.shape[0]):
            db[j] += dz[b, j]  # dL/db = Σ_b dz_b (row by row: vectorised)
    if w_ih.shape[0]:
        gemm_w(dz, w_ih, dx, 0.0)  # dL/dx_t = dz_t W
        gemm_w(dz, w_hh, dh0, 0.0)  # dL/dh_{t-1} = dz_t U
        gemm_at(dz, x, dw_ih, 0.0)  # dW = dz_tᵀ x_t
        gemm_at(dz, h0, dw_hh, 0.0)  # dU = dz_tᵀ h_{t-1}


# the cell's step kernels called by address (:mod:`.address`): a step's tensors as integers, the
# arrays rebuilt inside, as the NumPy views cost the host more than a small step's work


@njit(**JIT)
def step_forward_at(x, h0, c0, w_ih, w_hh, b_ih, b_hh, h, c, z, like, sizes, coef):
    """:func:`step_forward`. Addresses: x (B, I); h0, c0 in, h, c out (B, H); z (B, G);
    w_ih (G, I), w_hh (G, H), or both NONE when z holds the products; b_ih, b_hh (G,), or
    both NONE without bias. like: a scalar of the dtype; sizes = (B, I, H); coef (3, G)."""
    batch, n_in, hidden = sizes
    g, nb, ng = 4 * hidden, 4 * hidden if b_ih else 0, 4 * hidden if w_ih else 0
    weights = (
        view(w_ih, (ng, n_in), like), view(w_hh, (ng, hidden), like),
        view(b_ih, nb, like), view(b_hh, nb, like), coef,
    )  # fmt: skip
    state = (batch, hidden)
    io = (
        view(x, (batch, n_in), like), view(h0, state, like), view(c0, state, like),
        view(h, state, like), view(c, state, like),
    )  # fmt: skip
    scratch = (np.empty(g, coef.dtype),)
    step_forward(weights, io, (view(z, (batch, g), like),), scratch)


@njit(**JIT)
def step_backward_at(grads, saved, ins, outs, like, sizes):
    """:func:`step_backward`. Addresses: grads = (dh, dc) (B, H); saved = (z (B, G), c
    (B, H)); ins = (x (B, I), h0, c0 (B, H), w_ih (G, I), w_hh (G, H)), the weights NONE
    when the host runs the products; outs = (dz (B, G), dx (B, I), dh0, dc0 (B, H), dw_ih
    (G, I), dw_hh (G, H), db (G,) or NONE without bias, norms (B, 2)), dx, dh0, dw_ih,
    dw_hh NONE when the host runs the products. sizes = (B, I, H)."""
    batch, n_in, hidden = sizes
    g = 4 * hidden
    ng = g if ins[3] else 0
    dz, dx, dh0, dc0, dw_ih, dw_hh, db, norms = outs
    state, gates = (batch, hidden), (batch, g)
    io = (
        view(grads[0], state, like), view(grads[1], state, like),
        view(ins[0], (batch, n_in), like), view(ins[1], state, like),
        view(ins[2], state, like), view(dz, gates, like),
        view(dx, (batch if ng else 0, n_in), like), view(dh0, (batch if ng else 0, hidden), like),
        view(dc0, state, like), view(dw_ih, (ng, n_in), like), view(dw_hh, (ng, hidden), like),
        view(db, g if db else 0, like), view(norms, (batch, 2), like),
    )  # fmt: skip
    weights = (view(ins[3], (ng, n_in), like), view(ins[4], (ng, hidden), like))
    saved_arrays = (view(saved[0], gates, like), view(saved[1], state, like))
    scratch = (np.empty(hidden, saved_arrays[0].dtype),)
    step_backward(weights, io, saved_arrays, scratch)


@njit(**JIT)
def infer_at(ins, outs, wp, like, sizes, coef):
    """:func:`infer` for all rows on this thread, by address (:mod:`.address`), with the
    host's work done inside: [W_ih | U] packed into wp, b_ih + b_hh summed, h_0 and C_0
    copied. One call of a few microseconds in place of some 100 us of NumPy views and small
    tensors on the host, which is most of a short or one-row sequence's time.

    ins = (x (T, B, I), h0, c0 (B, H), w_ih (G, I), w_hh (G, H), b_ih, b_hh (G,) or both
      NONE without bias, lengths (B,) int64 or NONE).
    outs = (out (T, B, H), h, c (B, H)): the outputs, h_T and C_T.
    wp: packed.packed_shape(G, I + H) of like's dtype, written whole. sizes = (T, B, I, H).
    """
    steps, batch, n_in, hidden = sizes
    g, state = 4 * hidden, (batch, hidden)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths = ins
    packed.pair_panels(view(w_ih, (g, n_in), like), view(w_hh, (g, hidden), like), wp)
    nb = g if b_ih else 0
    bi, bh = view(b_ih, nb, like), view(b_hh, nb, like)
    bias = np.zeros(g, wp.dtype)
    for j in range(nb):
        bias[j] = bi[j] + bh[j]  # b = b_ih + b_hh
    h, c = view(outs[1], state, like), view(outs[2], state, like)
    h_in, c_in = view(h0, state, like), view(c0, state, like)
    for b in range(batch):
        copy(h_in[b], h[b])
        copy(c_in[b], c[b])
    lens = view(lengths, batch if lengths else 0, np.int64(0))
    io = (
        view(x, (steps, batch, n_in), like),
        h,
        c,
        view(outs[0], (steps, batch, hidden), like),
        lens,
    )
    scratch = (np.empty((batch, n_in + hidden), wp.dtype), np.empty((batch, g), wp.dtype))
    infer((wp, bias, coef), io, (), scratch, 0, batch)


# host: the engine functions ------------------------------------------------------------------


def lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """See :func:`longshort.engine.reference.lstm_forward`. bfloat16 without bf16 products:
    the float32 loop, its outputs rounded to bf16 (gates and cs are float32 either way)."""
    if x.dtype == torch.bfloat16 and not host.BF16_PRODUCTS:
        res = lstm_forward(x.float(), h0.float(), c0.float(), host.widened(w), lengths)
        bf16 = torch.bfloat16
        return res._replace(out=res.out.to(bf16), h_n=res.h_n.to(bf16), c_n=res.c_n.to(bf16))
    steps, batch, _ = x.shape
    hidden, out_size = c0.shape[1], h0.shape[1]
    flops = 2 * batch * 4 * hidden * out_size
    units = w.w_hr is None and x.dtype in host.DTYPES  # the unit split's kernel: floats only
    least = threads.training_unit_bytes(batch)
    if units and threads.split_units(batch, w.w_hh.nbytes, flops * steps, least):
        return lstm_forward_units(x, h0, c0, w, lengths, torch.get_num_threads())
    gates = host.project_all(x, w.w_ih, None, None)  # W x_t; becomes the gates in place
    out = x.new_empty(steps, batch, out_size, dtype=gates.dtype)
    cs = host.recycled((steps + 1, batch, hidden), gates.dtype)
    cs[0] = c0
    h = h0.to(gates.dtype, memory_format=torch.contiguous_format, copy=True)
    dtype = out.numpy().dtype
    w_hr = np.empty((0, 0), dtype) if w.w_hr is None else host.array(w.w_hr)
    coef = host.coefficients(hidden, dtype)
    weights = (host.recurrent(w.w_hh, steps), w_hr, host.bias_sum(w, gates.dtype), coef)
    io = (h.numpy(), out.numpy(), host.lengths_array(lengths))
    saved = (gates.numpy(), cs.numpy())

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        m_buf, h_buf = (
            packed.aligned_empty((n, hidden), dtype),
            packed.aligned_empty((n, out_size), dtype),
        )
        hb = host.bf16_scratch(x, n, out_size)
        return weights, io, saved, (m_buf, h_buf, hb), b0, b1

    threads.run(forward, threads.ranges(batch, flops=flops * steps), args, flops)
    if x.dtype == out.dtype:
        return LSTMForward(out, h, cs[steps].clone(), gates, cs)
    return LSTMForward(out.to(x.dtype), h.to(x.dtype), cs[steps].to(x.dtype), gates, cs)


def _slices(a: np.ndarray, hidden: int, j0: int, j1: int) -> np.ndarray:
    """Rows (or elements) [g H + j0, g H + j1) of a gate-blocked array, for g = 0..3."""
    return np.concatenate([a[g * hidden + j0 : g * hidden + j1] for g in range(4)])


def _unit_gates(
    bias: np.ndarray, hidden: int, j0: int, j1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a thread of the unit split owns of the gates, for the units [j0, j1): the rows
    (4n,) of its gate columns in W_ih and U, gate by gate, its slice of the bias (4n,), and the
    activations' coefficients (3, 4n)."""
    rows = _slices(np.arange(4 * hidden), hidden, j0, j1)
    return rows, _slices(bias, hidden, j0, j1), host.coefficients(j1 - j0, bias.dtype)


def _unit_buffer(role: str, j0: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A :func:`.host.kept` buffer for the thread of the unit split whose units start at j0:
    its packed weights (written whole by the loop) or its gates' scratch. Fresh arrays
    fault their pages in at first write, in the loop: 160 faults a thread for the packed
    weights at (200, 4, 64, 256)."""
    return host.kept(f"units-{role}-{j0}", shape, dtype)


def lstm_forward_units(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None, count: int
) -> LSTMForward:
    """:func:`lstm_forward` with the hidden units split across ``count`` threads rather than
    the batch rows (DeepCPU's layout; Zhang et al., "DeepCPU: Serving RNN-based Deep Learning
    Models 10x Faster", USENIX ATC 2018). With fewer rows than threads, the row split leaves a
    thread idle and the other reads all of U (4H x H) at every step, from L3 once U outgrows
    the core's L2. Here each thread owns the units [j0, j1) and the four gate columns of each,
    for all rows: it reads only its slice of U, which stays in its own L2 from step to step.
    The price is a barrier a step (:mod:`.sync`): step t + 1 reads all of h_t, which every
    thread wrote a part of, and h_t alternates between two buffers, read one step and written
    the next, so that one barrier a step suffices. float32 and float64, no projection;
    :func:`.threads.split_units` decides when it pays."""
    steps, batch, _ = x.shape
    hidden = c0.shape[1]
    z = host.project_all(x, w.w_ih, None, None)  # W x_t; becomes the gates in place
    dtype = z.numpy().dtype
    out = x.new_empty(steps, batch, hidden)
    cs = x.new_empty(steps + 1, batch, hidden)
    cs[0] = c0
    hh = packed.aligned_empty((2, batch, hidden), dtype)
    hh[0] = host.array(h0)
    u, bias = host.array(w.w_hh), host.bias_sum(w, x.dtype)
    io = (hh, out.numpy(), host.lengths_array(lengths), sync.counter())
    saved = (z.numpy(), cs.numpy())

    def job(j0: int, j1: int, team: int) -> tuple:
        n = j1 - j0
        rows, bias_part, coef = _unit_gates(bias, hidden, j0, j1)
        wp = _unit_buffer("w", j0, packed.packed_shape(4 * n, hidden, dtype), dtype)
        weights = (u, rows, wp, bias_part, coef)
        scratch = (_unit_buffer("z", j0, (batch, 4 * n), dtype),)
        return weights, io, saved, scratch, j0, j1, team

    parts = threads.unit_ranges(hidden, count)
    jobs = [job(j0, j1, len(parts)) for j0, j1 in parts]
    threads.run_team(forward_units, jobs, lambda: job(0, hidden, 1))
    h_n = torch.from_numpy(hh[steps % 2].copy())
    return LSTMForward(out, h_n, cs[steps].clone(), z, cs)


def lstm_infer_units(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None, count: int
) -> LSTMForward:
    """:func:`lstm_infer` with the hidden units split across ``count`` threads, as
    :func:`lstm_forward_units` splits them, and W x_t made in the loop: each thread packs its
    units' rows of [W_ih | U] (which stay in its L2 from step to step) and runs
    :func:`infer_units`. No projection of all T steps before the loop, no gates or cell states
    kept: gates and cs come back empty. float32 and float64, no projection."""
    steps, batch, n_in = x.shape
    hidden = c0.shape[1]
    out = x.new_empty(steps, batch, hidden)
    dtype = out.numpy().dtype
    xh = packed.aligned_empty((2, batch, n_in + hidden), dtype)
    xh[0, :, :n_in] = host.array(x[0])
    xh[0, :, n_in:] = host.array(h0.to(x.dtype))
    c = c0.to(x.dtype, memory_format=torch.contiguous_format, copy=True)
    w_ih, u = host.array(w.w_ih.to(x.dtype)), host.array(w.w_hh.to(x.dtype))
    bias = host.bias_sum(w, x.dtype)
    io = (host.array(x), xh, c.numpy(), out.numpy(), host.lengths_array(lengths), sync.counter())

    def job(j0: int, j1: int, team: int) -> tuple:
        n = j1 - j0
        rows, bias_part, coef = _unit_gates(bias, hidden, j0, j1)
        wp = _unit_buffer("w", j0, packed.packed_shape(4 * n, n_in + hidden, dtype), dtype)
        weights = (w_ih, u, rows, wp, bias_part, coef)
        return weights, io, (_unit_buffer("z", j0, (batch, 4 * n), dtype),), j0, j1, team

    parts = threads.unit_ranges(hidden, count)
    jobs = [job(j0, j1, len(parts)) for j0, j1 in parts]
    threads.run_team(infer_units, jobs, lambda: job(0, hidden, 1))
    h_n = torch.from_numpy(xh[steps % 2, :, n_in:].copy())
    empty = x.new_empty(0)
    return LSTMForward(out, h_n, c, empty, empty)


# Rows a thread from which the per-step input product pays at any input size (see
# infer_pays). It was 16 with 512-bit vectors, from a Zen 5 measurement made before the float32
# kernels stopped converting to float64.
ENOUGH_ROWS = 8


def infer_pays(parts: list[tuple[int, int]], n_in: int, hidden: int, steps: int) -> bool:
    """Whether the per-step input product of :func:`infer` beats one projection of all
    steps: over more than one step (a cell's call would pay for [W_ih | U] copied), and with
    ENOUGH_ROWS a thread or more, or an input at most half the hidden size with 4 rows a
    thread or the whole batch on one thread. Measured on 2 threads, ratio of the times:
    0.71-0.90 at (100,32,32,128), (500,16,16,64), (100,64,256,256), (50,128,512,512) (AMD
    EPYC Zen 5); 0.88 at (1000,1,8,32) and 0.87 at (1000,2,8,64), one thread (Zen 3, since
    one-row products run in four chains of accumulators); 1.10 at (200,4,64,256) on the Zen 5
    and 1.00-1.07 on the Zen 3 (2 rows on each of 2 threads), which keep the projection. At
    (35,20,200,200) (10 rows a thread, I = H) 1.09 on the Zen 5 and 0.87-0.96 on the Zen 3
    (AVX2, packed weights aligned). On a Zen 4 (AVX-512), at 8 rows a thread against the
    projection, interleaved: 0.92x at (35,20,200,200) (0.94x for the word-LM's two layers),
    0.91x at (100,24,256,256), 0.76x at (100,30,64,64), 0.99x at (100,16,32,128); 1.06x at
    (50,16,512,512), whose [W_ih | U] (8 MB) each step reads from L3."""
    least = min(b1 - b0 for b0, b1 in parts)
    small_input = 2 * n_in <= hidden and (least >= 4 or len(parts) == 1)
    return steps > 1 and (least >= ENOUGH_ROWS or small_input)


def lstm_infer(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """:func:`lstm_forward` for a call whose gates nothing will read (no BPTT, no trace):
    gates and cs come back empty, one product a step on [x_t | h_{t-1}] (:func:`infer`).
    float32 and float64 without projection; the full forward runs the rest."""
    steps, batch, n_in = x.shape
    hidden = c0.shape[1]
    plan, parts = _infer_plan(x, hidden, w)
    if plan == "full":
        return lstm_forward(x, h0, c0, w, lengths)
    if plan == "units":
        return lstm_infer_units(x, h0, c0, w, lengths, torch.get_num_threads())
    empty = x.new_empty(0)
    if plan == "here" and h0.dtype == c0.dtype == x.dtype:
        out, h, c = x.new_empty(steps, batch, hidden), x.new_empty(h0.shape), x.new_empty(c0.shape)
        states = (h0.contiguous(), c0.contiguous(), h, c)  # referenced until the call returns
        _infer_here(x, w, lengths, out, tuple(t.data_ptr() for t in states))
        return LSTMForward(out, h, c, empty, empty)
    out = x.new_empty(steps, batch, hidden)
    h = h0.to(x.dtype, memory_format=torch.contiguous_format, copy=True)
    c = c0.to(x.dtype, memory_format=torch.contiguous_format, copy=True)
    dtype = out.numpy().dtype
    w_ih, w_hh = host.array(w.w_ih.to(x.dtype)), host.array(w.w_hh.to(x.dtype))
    shape = packed.packed_shape(4 * hidden, n_in + hidden, dtype)
    w_cat = host.kept("recurrent", shape, dtype)  # [W_ih | U], packed by the threads
    bias, coef, count = host.bias_sum(w, x.dtype), host.coefficients(hidden, dtype), sync.counter()
    io = (host.array(x), h.numpy(), c.numpy(), out.numpy(), host.lengths_array(lengths))

    def job(k: int, team: int, b0: int, b1: int) -> tuple:
        p0, p1 = (shape[0] * k // team, shape[0] * (k + 1) // team)
        weights = (w_ih, w_hh, w_cat, p0, p1, count, bias, coef)
        n = b1 - b0
        xh, z = (
            packed.aligned_empty((n, n_in + hidden), dtype),
            packed.aligned_empty((n, 4 * hidden), dtype),
        )
        return weights, io, (), (xh, z), b0, b1, team

    jobs = [job(k, len(parts), b0, b1) for k, (b0, b1) in enumerate(parts)]
    threads.run_team(infer_team, jobs, lambda: job(0, 1, 0, batch))
    return LSTMForward(out, h, c, empty, empty)


def _infer_plan(x: Tensor, hidden: int, w: LSTMWeights) -> tuple[str, list[tuple[int, int]]]:
    """How :func:`lstm_infer` runs (x, w), and the threads' row ranges: "full" (the full
    forward: projection, bf16, or the per-step input product would not pay), "units" (the
    hidden units split across the threads: :func:`lstm_infer_units`), "here" (every row on
    this thread, one call by address: :func:`_infer_here`, for weights of x's dtype) or
    "threads" (:func:`infer` on each range)."""
    steps, batch, n_in = x.shape
    flops = 2 * batch * 4 * hidden * (hidden + n_in)
    parts = threads.ranges(batch, flops=flops * steps)
    if w.w_hr is not None or x.dtype not in host.DTYPES:
        return "full", parts
    weight_bytes = w.w_ih.nbytes + w.w_hh.nbytes  # [W_ih | U], read every step
    if steps > 1 and threads.split_units(
        batch, weight_bytes, flops * steps, threads.INFER_UNIT_BYTES
    ):
        return "units", parts
    if not infer_pays(parts, n_in, hidden, steps):
        return "full", parts
    if len(parts) > 1 or not _alike(x.dtype, w):
        return "threads", parts
    return "here", parts


def _alike(dtype: torch.dtype, w: LSTMWeights) -> bool:
    """Whether w's tensors are all of this dtype (a call by address reads them as one)."""
    for t in w:  # noqa: SIM110 - a loop, not all() over a generator
        if t is not None and t.dtype != dtype:
            return False
    return True


def lstm_stack_infer(
    x: Tensor, h0: Tensor, c0: Tensor, ws: list[LSTMWeights]
) -> tuple[Tensor, Tensor, Tensor]:
    """A unidirectional stack of layers without projection, for a call autograd does not
    record: each layer's :func:`lstm_infer`, its final states written into h_n[k] and
    c_n[k] in place (a call by address reads and writes them at an offset), so that a
    one-row stream pays no per-layer views, copies or stacking on the host: a torch op costs
    2-5 us there, and a (1000, 1, 8, 32) step 0.5 us.

    x (T, B, I); h0, c0 (L, B, H); ws: L weights, layer 0's w_ih (4H, I), the others'
    (4H, H). Returns out (T, B, H), h_n and c_n (L, B, H), of x's dtype."""
    _, batch, hidden = c0.shape
    alike = h0.dtype == c0.dtype == x.dtype
    states = (h0.contiguous(), c0.contiguous()) if alike else (h0.to(x.dtype), c0.to(x.dtype))
    h_n, c_n = x.new_empty(h0.shape), x.new_empty(c0.shape)
    for k, w in enumerate(ws):
        plan, _ = _infer_plan(x, hidden, w)
        if plan != "here":
            res = lstm_infer(x, states[0][k], states[1][k], w, None)
            h_n[k], c_n[k] = res.h_n, res.c_n
            x = res.out
            continue
        at = k * batch * hidden * h_n.element_size()  # layer k's (B, H) block
        ptrs = (t.data_ptr() + at for t in (*states, h_n, c_n))
        x = _infer_here(x, w, None, x.new_empty(x.shape[0], batch, hidden), tuple(ptrs))
    return x, h_n, c_n


def _infer_here(
    x: Tensor, w: LSTMWeights, lengths: Tensor | None, out: Tensor, states: tuple[int, ...]
) -> Tensor:
    """:func:`lstm_infer` for a batch that stays on this thread: one call by address
    (:func:`infer_at`), which packs the weights and sums the biases itself. A call at
    (10, 1, 8, 32) spent 7 us in its loop and over 100 on the host before.

    x (T, B, I), out (T, B, H): tensors of one dtype, out written whole; states: the
    addresses of h_0, C_0 (read) and h_T, C_T (written), each (B, H) C-contiguous of x's
    dtype. Returns out."""
    steps, batch, n_in = x.shape
    hidden = out.shape[2]
    x, w_ih, w_hh = x.contiguous(), w.w_ih.contiguous(), w.w_hh.contiguous()
    b_ih, b_hh = w.b_ih, w.b_hh
    if b_ih is None or b_hh is None:
        b_ih = b_hh = None
    else:
        b_ih, b_hh = b_ih.contiguous(), b_hh.contiguous()
    lens = None if lengths is None else lengths.to(torch.int64).contiguous()
    like = address.LIKE[x.dtype]
    shape = packed.packed_shape(4 * hidden, n_in + hidden, like.dtype)
    wp = host.kept("recurrent", shape, like.dtype)
    ins = (
        x.data_ptr(), states[0], states[1], w_ih.data_ptr(), w_hh.data_ptr(),
        address.optional(b_ih), address.optional(b_hh), address.optional(lens),
    )  # fmt: skip
    outs = (out.data_ptr(), states[2], states[3])
    coef = host.coefficients(hidden, like.dtype)
    infer_at(ins, outs, wp, like, (steps, batch, n_in, hidden), coef)
    return out


def lstm_backward(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
    saved: LSTMForward,
    need_dx: bool = True,
) -> LSTMGrads:
    """See :func:`longshort.engine.reference.lstm_backward`; need_dx=False skips dx = dz W_ih
    (a fifth of a training step at (100, 64, 256, 256)) and returns None for it."""
    if x.dtype == torch.bfloat16 and not host.BF16_PRODUCTS:  # BPTT in float32, as the forward
        return _rounded(
            lstm_backward(
                d_out.float(), d_hn.float(), d_cn.float(), x.float(), h0.float(),
                host.widened(w), lengths, saved._replace(out=saved.out.float()), need_dx,
            )
        )  # fmt: skip
    out, gates, cs = saved.out, saved.gates, saved.cs
    steps, batch, _ = x.shape
    hidden, out_size = cs.shape[2], out.shape[2]
    w_hr = w.w_hr
    proj = w_hr is not None
    acc = gates.dtype
    dh = d_hn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dc = d_cn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dz = torch.from_numpy(host.kept("dz", tuple(gates.shape), host.array(gates).dtype))
    norms = x.new_empty(steps, batch, 2, dtype=acc)
    dh_t = x.new_empty(steps if proj else 1, batch, out_size, dtype=acc)
    dtype = dz.numpy().dtype
    w_hr_t = np.empty((0, 0), dtype) if w_hr is None else host.array(w_hr.t())
    io = (
        host.array(d_out.to(acc)), dh.numpy(), dc.numpy(), host.lengths_array(lengths),
        dz.numpy(), dh_t.numpy(), norms.numpy(),  # BPTT writes all of dz
    )  # fmt: skip
    saved_arrays = (host.array(gates), host.array(cs))
    flops = 2 * batch * 4 * hidden * out_size
    units = not proj and x.dtype in host.DTYPES  # the unit split's kernel: floats only
    least = threads.training_unit_bytes(batch)
    if units and threads.split_units(batch, w.w_hh.nbytes, flops * steps, least, idle_only=True):
        units_io = (*io[:5], norms.numpy())
        _backward_units(units_io, saved_arrays, host.array(w.w_hh), torch.get_num_threads())
    else:
        weights = (host.recurrent(w.w_hh.t(), steps), w_hr_t)  # Uᵀ: each product reads rows

        def args(b0: int, b1: int) -> tuple:
            n = b1 - b0
            dm, dhb, tc = (packed.aligned_empty((n, k), dtype) for k in (hidden, out_size, hidden))
            scratch = (dm, dhb, tc, host.bf16_scratch(x, n, 4 * hidden))
            return weights, io, saved_arrays, scratch, b0, b1

        threads.run(backward, threads.ranges(batch, flops=flops * steps), args, flops)
    dx, dw_ih, dw_hh, db = host.input_and_weight_grads(dz, x, h0, out, w.w_ih, need_dx)
    dw_hr = None
    if w_hr is not None:
        m = gates[..., 3 * hidden :] * torch.tanh(cs[1:])  # o_t ⊙ tanh(C_t), recomputed
        dw_hr = w_hr.new_empty(w_hr.shape)
        host.summed(host.as_matrix(dh_t.numpy()), host.as_matrix(host.array(m)), dw_hr.numpy(), 0)
    return LSTMGrads(dx, dh.to(x.dtype), dc.to(x.dtype), dw_ih, dw_hh, db, dw_hr, norms)


def _backward_units(io: tuple, saved: tuple, u: np.ndarray, count: int) -> None:
    """:func:`lstm_backward`'s loop with the hidden units split across ``count`` threads, as
    :func:`lstm_forward_units` splits them (:func:`backward_units`): each thread keeps its
    columns of U, 4H x H / count, in its own L2 for all T steps, where the row split had each
    thread read all of U at every step. io = (d_out, dh, dc, lengths, dz, norms) and saved =
    (gates, cs), the arrays of :func:`backward`'s; norms (T, B, 2) is written from the
    threads' shares of the squared norms."""
    d_out, dh, dc, lengths, dz, norms = io
    cs = saved[1]
    steps, batch, hidden = cs.shape[0] - 1, cs.shape[1], cs.shape[2]
    dtype = dz.dtype
    parts = threads.unit_ranges(hidden, count)
    sq = np.zeros((len(parts), steps, batch, 2), dtype)  # a share each (zeros: a lone thread)
    barrier = sync.counter()

    def job(k: int, j0: int, j1: int, team: int) -> tuple:
        n = j1 - j0
        w = _unit_buffer("w-t", j0, packed.packed_shape(n, 4 * hidden, dtype), dtype)
        job_io = (d_out, dh, dc, lengths, dz, sq[k], barrier)
        dhb = _unit_buffer("dh", j0, (batch, n), dtype)
        scratch = (np.empty(4 * n, dtype), np.empty(4 * n, dtype), np.empty(n, dtype), dhb)
        return (u, w), job_io, saved, scratch, j0, j1, team

    jobs = [job(k, j0, j1, len(parts)) for k, (j0, j1) in enumerate(parts)]
    threads.run_team(backward_units, jobs, lambda: job(0, 0, hidden, 1))
    np.sqrt(sq.sum(axis=0), out=norms)


def _rounded(g: LSTMGrads) -> LSTMGrads:
    """Gradients rounded to bfloat16 (the norms stay float32)."""
    bf16 = torch.bfloat16
    dw_hr = None if g.dw_hr is None else g.dw_hr.to(bf16)
    dx = None if g.dx is None else g.dx.to(bf16)
    dh0, dc0 = g.dh0.to(bf16), g.dc0.to(bf16)
    return LSTMGrads(
        dx, dh0, dc0, g.dw_ih.to(bf16), g.dw_hh.to(bf16), g.db.to(bf16), dw_hr, g.norms
    )


def lstm_step(x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM step of an LSTMCell, float32/float64, no projection, in one compiled call:
    x (B, I), h0, c0 (B, H) -> h_1, C_1 (B, H) and the gates (B, 4H) BPTT reads. Above a
    few rows the products run first on torch's GEMM (:func:`.host.torch_products`)."""
    (batch, hidden), n_in = c0.shape, x.shape[1]
    x, h0, c0 = x.contiguous(), h0.contiguous(), c0.contiguous()
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    b_ih, b_hh = (None if t is None else t.contiguous() for t in (w.b_ih, w.b_hh))
    z = x.new_empty(batch, 4 * hidden)
    h, c = x.new_empty(batch, hidden), x.new_empty(batch, hidden)
    weights = (w_ih.data_ptr(), w_hh.data_ptr())
    if host.torch_products(batch):
        torch.mm(x, w_ih.t(), out=z)  # W·x_t
        z.addmm_(h0, w_hh.t())  # + U·h_{t-1}
        weights = (address.NONE, address.NONE)
    like = address.LIKE[x.dtype]
    step_forward_at(
        x.data_ptr(), h0.data_ptr(), c0.data_ptr(), *weights, address.optional(b_ih),
        address.optional(b_hh), h.data_ptr(), c.data_ptr(), z.data_ptr(), like,
        (batch, n_in, hidden), host.coefficients(hidden, like.dtype),
    )  # fmt: skip
    return h, c, z


def lstm_step_backward(
    dh: Tensor,
    dc: Tensor,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: LSTMWeights,
    z: Tensor,
    c: Tensor,
    need_dx: bool = True,
    need_dh0: bool = True,
) -> tuple[Tensor | None, ...]:
    """BPTT of :func:`lstm_step`: dx, dh0, dc0, dW_ih, dW_hh, db (None without bias) and the
    norms (1, B, 2); the products on torch's GEMM where the forward's ran there."""
    (batch, hidden), n_in = c0.shape, x.shape[1]
    g = 4 * hidden
    dh, dc, x, h0, c0 = (t.contiguous() for t in (dh, dc, x, h0, c0))
    w_ih, w_hh = w.w_ih.contiguous(), w.w_hh.contiguous()
    dz, dc0, norms = x.new_empty(batch, g), x.new_empty(batch, hidden), x.new_empty(1, batch, 2)
    db = None if w.b_ih is None else x.new_empty(g)
    dx: Tensor | None  # None from torch's GEMM unless need_dx (dh0: need_dh0)
    dh0: Tensor | None
    on_torch = host.torch_products(batch)
    if on_torch:
        weights, grads = (address.NONE,) * 2, (address.NONE,) * 4
    else:
        dx, dh0 = x.new_empty(batch, n_in), x.new_empty(batch, hidden)
        dw_ih, dw_hh = x.new_empty(g, n_in), x.new_empty(g, hidden)
        weights = (w_ih.data_ptr(), w_hh.data_ptr())
        grads = (dx.data_ptr(), dh0.data_ptr(), dw_ih.data_ptr(), dw_hh.data_ptr())
    step_backward_at(
        (dh.data_ptr(), dc.data_ptr()), (z.data_ptr(), c.data_ptr()),
        (x.data_ptr(), h0.data_ptr(), c0.data_ptr(), *weights),
        (dz.data_ptr(), *grads[:2], dc0.data_ptr(), *grads[2:], address.optional(db),
         norms.data_ptr()),
        address.LIKE[x.dtype], (batch, n_in, hidden),
    )  # fmt: skip
    if on_torch:  # dz_t W, dz_t U, dz_tᵀ x_t, dz_tᵀ h_{t-1}
        dx, dh0, dw_ih, dw_hh = host.torch_step_grads(
            dz, dz, x, h0, w_ih, w_hh, None, need_dx, need_dh0
        )
    return dx, dh0, dc0, dw_ih, dw_hh, db, norms
