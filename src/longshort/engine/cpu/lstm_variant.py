"""The LSTM's variants, compiled: the forward and BPTT loops side by side, each with its row
step, and the host code that lays out their buffers and runs them.

Same equations as :mod:`longshort.cells.lstm_variant`, written for numba like :mod:`.lstm`:
per step one recurrent product on :mod:`.packed`'s micro-kernel for the rows [b0, b1), then
the gate math fused per row. The plain LSTM keeps its own kernels; these serve every variant
and combination. Kernel arguments come in the four bundles of :mod:`longshort.engine.cpu`.

Shapes: T steps, B batch, H hidden, P size of h (= H without projection), G = nb * H gate
columns in the blocks [i, f, g, o], [i, g, o] (no forget gate) or [f, g, o] (coupled): g and o
are always the last two blocks. Absent options are passed as empty arrays:
  w_hr (P, H) the projection, h'_t = W_hr (o_t ⊙ tanh(·)); w_ch ((nb-1) H,) peepholes; ln_hh
  (G,) gain of LN(U h); ln_c (2, H) gain and bias of LN(C); zone_c (T or 1, B or 1, H) and
  zone_h (T or 1, B or 1, P) zoneout keep probabilities or draws; keep (B, P) the recurrent
  dropout mask; lengths (B,) int64.
flags (4,) int64: [has input gate block, has forget gate block, peephole, layer norm].
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine.cpu import host, lstm, packed, threads
from longshort.engine.cpu.activations import (
    JIT,
    affine_logistic,
    copy,
    one_of,
    sigmoid_into,
    tanh_into,
    zero_of,
)
from longshort.engine.cpu.address import prefetch, prefetch_write, unmanaged
from longshort.engine.cpu.blas import gemm_wt
from longshort.engine.cpu.packed import product
from longshort.engine.types import (
    InputPart,
    LSTMVariant,
    VariantForward,
    VariantLoopGrads,
    VariantMasks,
    VariantWeights,
)

EPS = 1e-5


@njit(inline="always", **JIT)
def row_stats(a):
    """Mean and 1 / sqrt(var + ε) of a 1-D row, in a's dtype: two vectorised passes, the sum
    and then the centred squares (stable without float64 sums, which ran 4 lanes a vector
    and converted every element)."""
    inv_n = one_of(a) / a.dtype.type(a.shape[0])
    s = zero_of(a)
    for j in range(a.shape[0]):
        s += a[j]
    mu = s * inv_n
    sq = zero_of(a)
    for j in range(a.shape[0]):
        d = a[j] - mu
        sq += d * d
    return mu, a.dtype.type(1.0 / np.sqrt(sq * inv_n + EPS))


@njit(inline="always", **JIT)
def _new_cell(zb, c_prev, cn, hidden, f_off, g_off, has_i, has_f):
    """C'_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t, one loop per layout so that each vectorises."""
    g = zb[g_off : g_off + hidden]
    if has_i and has_f:
        i, f = zb[:hidden], zb[f_off : f_off + hidden]
        for j in range(hidden):
            cn[j] = f[j] * c_prev[j] + i[j] * g[j]
    elif has_f:
        f = zb[f_off : f_off + hidden]
        for j in range(hidden):
            cn[j] = f[j] * c_prev[j] + (one_of(cn) - f[j]) * g[j]  # coupled: i_t = 1 - f_t
    else:
        i = zb[:hidden]
        for j in range(hidden):
            cn[j] = c_prev[j] + i[j] * g[j]  # no forget gate: f_t = 1
    return cn


@njit(inline="always", **JIT)
def _norm_sum(wx, zb, r, ln_ih, bias, ln_hh):
    """zb = a_t = LN(W x_t)·γ_x + b + LN(U h_{t-1})·γ_h from wx = W x_t and r = U h_{t-1}
    (wx may be zb itself, at a call site that passes the one array twice); returns W x_t's
    mean and 1/std."""
    mx, rx = row_stats(wx)
    mu, rstd = row_stats(r)
    for j in range(zb.shape[0]):
        zb[j] = (wx[j] - mx) * rx * ln_ih[j] + bias[j] + ln_hh[j] * (r[j] - mu) * rstd
    return mx, rx


@njit(inline="always", **JIT)
def _row(m, t, b):
    """Row (t, b) of a (T or 1, B or 1, H) mask."""
    return m[t if m.shape[0] > 1 else 0, b if m.shape[1] > 1 else 0]


@njit(inline="always", **JIT)
def _zone_h(zh, h_prev, h_new, h):
    """h_t = d ⊙ h_{t-1} + (1-d) ⊙ h'_t: zoneout of h (h may be h_new)."""
    for j in range(h.shape[0]):
        h[j] = zh[j] * h_prev[j] + (one_of(h) - zh[j]) * h_new[j]


@njit(inline="always", **JIT)
def _prefetch_next(t, b, b0, b1, gates, rec, cs, wx, da, dr):
    """With layer norm, prefetch what BPTT's next row reads and writes: row b + 1 of step t,
    or after the last row the first of step t - 1. Its row step reads five saved rows the
    forward wrote megabytes ago and stalled on their first loads: the loop alone, new / old
    0.90-0.92 at (500, 16, 16, 64). Without layer norm (three streams, as the plain LSTM's)
    the hardware's prefetcher keeps up, and the hints cost 1-2% (zoneout's training step)."""
    if rec.shape[0] == 0:
        return
    t, b = lstm.next_row(t, b, b0, b1)
    prefetch(gates[t, b])
    prefetch(rec[t, b])
    prefetch(cs[t, b])
    prefetch(cs[t + 1, b])
    prefetch_write(da[t, b])
    prefetch_write(dr[t, b])
    if wx.shape[0]:
        prefetch(wx[t, b])


# the loops ------------------------------------------------------------------------------------
# Each loop keeps its row step written out in it: the same steps as inlined helpers (taking the
# bundles, or the row's arrays) measured 20-25% slower at (500, 16, 16, 64), in both loops.


@njit(**JIT)
def forward(weights, io, saved, scratch, b0, b1):
    """The forward loop over all T steps for rows [b0, b1).

    weights = (w_ih, w_hh, w_hr, w_ch, ln_ih, ln_hh, ln_c, coef, flags, bias): w_ih (0, 0),
      or packed when x is given with layer norm (which normalises W x_t and U h_{t-1} apart);
      w_hh packed, or (G, P) as it is, or (0, 0) when the host ran U h_0 (one step of a cell:
      z, or rec with layer norm, holds it on entry), or [W_ih | U] packed when x is given
      without layer norm; w_hr (P, H) or (0, 0); ln_ih (G,) γ_x when the loop normalises W x_t
      (layer norm: W x_t un-normalised in wx, or in z, or made here from x), else empty;
      w_ch, ln_hh, ln_c as the module docstring says; coef (3, G); flags (4,); bias (G,)
      b_ih + b_hh when x is given or ln_ih is, else empty (the input part holds it).
    io = (h, out, zone_c, zone_h, keep, lengths, x, wx, x_mean, x_rstd): h (B, P) h_0 in,
      h_n out; out (T, B, P) out; the masks and lengths as the module docstring says; x
      (T, B, I) for a loop that makes W x_t itself (inference), else (0, 0, 0); wx (T, B, G)
      W x_t for a loop that normalises it and keeps the gates apart in z (layer norm,
      training: BPTT reads wx again), with x_mean, x_rstd (T, B, 1) out: its rows' mean and
      1/std (0 and 1 at padding), else all three (0, 0, 0).
    saved = (z, rec, cs): z (T, B, G) the input part on entry (unread when wx is given),
      the gate blocks on return (in place), or (1, B, G) scratch when x is given; rec
      (T, B, G) or (0, 0, 0): U h_{t-1}, kept for layer norm's BPTT; cs (T+1, B, H) with C_0
      set by the host, C_t filled. A call that keeps nothing for BPTT passes rec (1, B, G)
      with layer norm and cs (2, B, H): C_t in cs[t % 2].
    scratch = (hd, cn_buf, m_buf, h_buf, xh): hd (N, P), cn_buf (N, H); with projection m_buf
      (N, H) and h_buf (N, P), else unused; xh (N, I + P) [x_t | h_{t-1}] when x is given
      without layer norm, else (0, 0).
    """
    w_ih, w_hh, w_hr, w_ch, ln_ih, ln_hh, ln_c, coef, flags, bias = weights
    h, out, zone_c, zone_h, keep, lengths, x, wx, x_mean, x_rstd = io
    z, rec, cs = saved
    hd, cn_buf, m_buf, h_buf, xh = scratch
    wx, x_mean, x_rstd, wx_on = unmanaged(wx), unmanaged(x_mean), unmanaged(x_rstd), wx.shape[0] > 0
    # the arrays sliced in the loop as views without reference counts (address.unmanaged)
    z, rec, cs, h, out = unmanaged(z), unmanaged(rec), unmanaged(cs), unmanaged(h), unmanaged(out)
    zone_c, zone_h, keep = unmanaged(zone_c), unmanaged(zone_h), unmanaged(keep)
    w_ch, ln_hh, ln_c, coef = unmanaged(w_ch), unmanaged(ln_hh), unmanaged(ln_c), unmanaged(coef)
    hd, cn_buf, m_buf, bias = unmanaged(hd), unmanaged(cn_buf), unmanaged(m_buf), unmanaged(bias)
    ln_ih = unmanaged(ln_ih)
    ln_in = ln_ih.shape[0] > 0
    has_i, has_f, peep, ln = flags[0], flags[1], flags[2], flags[3]
    scale, shift, gain = coef[0], coef[1], coef[2]
    steps, n_gates, n_in = out.shape[0], z.shape[2], x.shape[2]
    hidden, out_size = cs.shape[2], h.shape[1]
    g_off, o_off = n_gates - 2 * hidden, n_gates - hidden
    f_off = hidden if has_i else 0
    pf_off, po_off = (hidden if has_i else 0), w_ch.shape[0] - hidden
    zc_on, zh_on, keep_on = zone_c.shape[0] > 0, zone_h.shape[0] > 0, keep.shape[0] > 0
    proj = w_hr.shape[0] > 0
    n_cs, n_rec = cs.shape[0], max(rec.shape[0], 1)
    for t in range(steps):
        zt, tc, tn, tr = z[0 if n_in else t], t % n_cs, (t + 1) % n_cs, t % n_rec
        ms = m_buf if proj else out[t, b0:b1]  # h'_t before the projection, rows [b0, b1)
        src = h[b0:b1]
        if keep_on:
            for b in range(b0, b1):
                for j in range(out_size):
                    hd[b - b0, j] = keep[b, j] * h[b, j]  # m ⊙ h_{t-1}: recurrent dropout
            src = hd
        if n_in and ln_in:  # inference with layer norm: W x_t and U h_{t-1} apart
            product(x[t, b0:b1], w_ih, zt[b0:b1], 0.0)  # W x_t, normalised below
            product(src, w_hh, rec[tr, b0:b1], 0.0)  # U h_{t-1}, normalised below
        elif n_in:  # inference: W x_t made here, no (T, B, G) input part written and read back
            for b in range(b0, b1):
                copy(x[t, b], xh[b - b0, :n_in])
                copy(src[b - b0], xh[b - b0, n_in:])
            product(xh, w_hh, zt[b0:b1], 0.0)  # a_t = W x_t + U h_{t-1}, + b below
        elif w_hh.shape[0] and ln:
            product(src, w_hh, rec[tr, b0:b1], 0.0)  # U h_{t-1}, normalised below
        elif w_hh.shape[0]:
            product(src, w_hh, zt[b0:b1], 1.0)  # a_t = W x_t + b + U h_{t-1}
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:  # padding: state carried, gates zeroed
                zt[b, :] = 0.0
                copy(cs[tc, b], cs[tn, b])
                if wx_on:
                    x_mean[t, b, 0], x_rstd[t, b, 0] = 0.0, 1.0
                continue
            zb, c_prev = zt[b], cs[tc, b]
            if ln_in and wx_on:  # training: W x_t from wx, which BPTT reads again
                mx, rx = _norm_sum(wx[t, b], zb, rec[tr, b], ln_ih, bias, ln_hh)
                x_mean[t, b, 0], x_rstd[t, b, 0] = mx, rx
            elif ln_in:  # W x_t in z, normalised in place
                _norm_sum(zb, zb, rec[tr, b], ln_ih, bias, ln_hh)
            else:
                for j in range(bias.shape[0]):
                    zb[j] += bias[j]  # the input part's bias, when x_t came in here
                if ln:
                    r = rec[tr, b]
                    mu, rstd = row_stats(r)
                    for j in range(n_gates):
                        zb[j] += ln_hh[j] * (r[j] - mu) * rstd  # + LN(U h_{t-1})·γ_h
            if peep:
                if has_i:
                    for j in range(hidden):
                        zb[j] += w_ch[j] * c_prev[j]  # i_t sees C_{t-1}
                if has_f:
                    for j in range(hidden):
                        zb[f_off + j] += w_ch[pf_off + j] * c_prev[j]  # f_t sees C_{t-1}
            o = zb[o_off:]
            act = o_off if peep else n_gates  # with peepholes, o waits for C'_t
            a = zb[:act]
            affine_logistic(a, a, scale[:act], shift[:act], gain[:act])  # σ, tanh(g)
            cn = cn_buf[b - b0] if zc_on else cs[tn, b]
            _new_cell(zb, c_prev, cn, hidden, f_off, g_off, has_i, has_f)
            if peep:
                for j in range(hidden):
                    o[j] += w_ch[po_off + j] * cn[j]  # o_t sees C'_t
                sigmoid_into(o, o)
            m = ms[b - b0]
            # tanh in place takes the same array twice: an array that only may be the other
            # (n = m or cn) made LLVM check for overlap, find it, and run the scalar loop
            if ln:
                mu, rstd = row_stats(cn)
                for j in range(hidden):
                    m[j] = (cn[j] - mu) * rstd * ln_c[0, j] + ln_c[1, j]  # LN(C'_t)·γ_c + β_c
                tanh_into(m, m)
            else:
                tanh_into(cn, m)
            for j in range(hidden):
                m[j] *= o[j]  # h'_t = o_t ⊙ tanh(·)
            if zh_on and not proj:
                _zone_h(_row(zone_h, t, b), h[b], m, m)
            if zc_on:
                zc, c = _row(zone_c, t, b), cs[tn, b]
                for j in range(hidden):
                    c[j] = zc[j] * c_prev[j] + (one_of(c) - zc[j]) * cn[j]  # C_t, zoneout
        if proj:
            gemm_wt(m_buf, w_hr, h_buf, 0.0)  # h'_t = W_hr (o_t ⊙ tanh(·))
            for b in range(b0, b1):
                if zh_on:
                    _zone_h(_row(zone_h, t, b), h[b], h_buf[b - b0], out[t, b])
                else:
                    copy(h_buf[b - b0], out[t, b])
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:
                out[t, b, :] = 0.0
            else:
                copy(out[t, b], h[b])


@njit(**JIT)
def backward(weights, io, saved, scratch, b0, b1):
    """BPTT of :func:`forward` for rows [b0, b1).

    weights = (w_hh_t, w_hr_t, w_ch, ln_ih, ln_hh, ln_c, flags): w_hh_t (P, G) = Uᵀ, packed
      or not, or (0, 0) when the host runs the path through h_{t-1} (one step of a cell: dh
      is then left as it came in); w_hr_t (H, P) = W_hrᵀ or (0, 0); ln_ih (G,) γ_x when wx is
      given, else empty.
    io = (d_out, dh, dc, zone_c, zone_h, keep, lengths, da, dr, dh_t, g_ch, g_ln_hh, g_ln_c,
      g_ln_ih, g_b, norms): d_out (T, B, P); dh (B, P), dc (B, H) dL/dh_T, dL/dC_T in,
      dL/dh_0, dL/dC_0 out; da (T, B, G) out: dL/da_t, or dL/d(W x_t) when wx is given; dr
      (T, B, G) out: dL/d(U h_{t-1}) with layer norm (else da itself); dh_t (T, B, P) out with
      projection: dL/dh_t (for dW_hr), else (1, B, P) scratch. Summed over the steps and
      the rows [b0, b1) into row b0, the others left zero (the host sums the rows; one row
      a thread stays in L1, where a row each made 80 KB at (500, 16, 16, 64)): g_ch
      (B, (nb-1) H) the peepholes' gradient, g_ln_hh (B, G) γ_h's, g_ln_c (B, 2, H) γ_c's
      and β_c's, and when wx is given g_ln_ih (B, G) γ_x's and g_b (B, G) the bias's (empty
      without the option). norms (T, B, 2) out.
    saved = (gates, rec, cs, wx, x_mean, x_rstd): as :func:`forward` left them; wx (T, B, G)
      W x_t and its rows' x_mean, x_rstd (T, B, 1) when the forward normalised it (layer
      norm), else all three (0, 0, 0).
    scratch = (cn_buf, tn_buf, dn_buf, dh_buf, dm_buf, dp_buf): cn_buf, tn_buf, dn_buf
      (N, H), dh_buf (N, P); with projection dm_buf (N, H) and dp_buf (N, P), else unused.
    """
    w_hh_t, w_hr_t, w_ch, ln_ih, ln_hh, ln_c, flags = weights
    d_out, dh, dc, zone_c, zone_h, keep, lengths, da, dr, dh_t, g_ch, g_ln_hh, g_ln_c = io[:13]
    g_ln_ih, g_b, norms = io[13:]
    gates, rec, cs, wx, x_mean, x_rstd = saved
    wx, x_mean, x_rstd, ln_x = unmanaged(wx), unmanaged(x_mean), unmanaged(x_rstd), wx.shape[0] > 0
    ln_ih, g_ln_ih, g_b = unmanaged(ln_ih), unmanaged(g_ln_ih), unmanaged(g_b)
    cn_buf, tn_buf, dn_buf, dh_buf, dm_buf, dp_buf = scratch
    # the arrays sliced in the loop as views without reference counts (address.unmanaged)
    gates, rec, cs = unmanaged(gates), unmanaged(rec), unmanaged(cs)
    da, dr, d_out, norms = unmanaged(da), unmanaged(dr), unmanaged(d_out), unmanaged(norms)
    dh, dc, dh_t = unmanaged(dh), unmanaged(dc), unmanaged(dh_t)
    zone_c, zone_h, keep = unmanaged(zone_c), unmanaged(zone_h), unmanaged(keep)
    w_ch, ln_hh, ln_c = unmanaged(w_ch), unmanaged(ln_hh), unmanaged(ln_c)
    g_ch, g_ln_hh, g_ln_c = unmanaged(g_ch), unmanaged(g_ln_hh), unmanaged(g_ln_c)
    cn_buf, tn_buf, dn_buf = unmanaged(cn_buf), unmanaged(tn_buf), unmanaged(dn_buf)
    dh_buf, dm_buf, dp_buf = unmanaged(dh_buf), unmanaged(dm_buf), unmanaged(dp_buf)
    has_i, has_f, peep, ln = flags[0], flags[1], flags[2], flags[3]
    steps, _, n_gates = gates.shape
    hidden, out_size = cs.shape[2], dh.shape[1]
    g_off, o_off = n_gates - 2 * hidden, n_gates - hidden
    f_off = hidden if has_i else 0
    pf_off, po_off = (hidden if has_i else 0), w_ch.shape[0] - hidden
    zc_on, zh_on, keep_on = zone_c.shape[0] > 0, zone_h.shape[0] > 0, keep.shape[0] > 0
    proj = w_hr_t.shape[0] > 0
    one, zero = one_of(cs), zero_of(cs)  # constants of the dtype: no float64 arithmetic
    n_h, n_g = cs.dtype.type(hidden), cs.dtype.type(n_gates)
    if peep:
        g_ch[b0:b1] = 0.0
    if ln:
        g_ln_hh[b0:b1] = 0.0
        g_ln_c[b0:b1] = 0.0
    if ln_x:
        g_ln_ih[b0:b1] = 0.0
        g_b[b0:b1] = 0.0
    zeros, ones = np.zeros(hidden, cs.dtype), np.ones(hidden, cs.dtype)  # neutral operands
    sink, i_buf = np.empty(hidden, cs.dtype), np.empty(hidden, cs.dtype)
    kappa = zero if has_i else one  # ∂i_t/∂f_t = -κ
    w_i = w_ch[:hidden] if peep and has_i else zeros  # the peepholes, or 0
    w_f = w_ch[pf_off : pf_off + hidden] if peep and has_f else zeros
    w_o = w_ch[po_off:] if peep else zeros
    for t in range(steps - 1, -1, -1):
        dht = dh_t[t if proj else 0]
        for b in range(b0, b1):
            padded = lengths.shape[0] and t >= lengths[b]
            sq = zero
            for j in range(out_size):
                dht[b, j] = zero if padded else dh[b, j] + d_out[t, b, j]  # from output and t+1
                sq += dht[b, j] * dht[b, j]
            norms[t, b, 0] = np.sqrt(sq)
        if proj:  # back through h'_t = W_hr m_t, after zoneout of h
            for b in range(b0, b1):
                zh = _row(zone_h, t, b) if zh_on else dht[b]
                for j in range(out_size):
                    dp_buf[b - b0, j] = dht[b, j] * (one - zh[j]) if zh_on else dht[b, j]
            gemm_wt(dp_buf, w_hr_t, dm_buf, 0.0)  # dL/dm_t = dL/dh'_t W_hr
        for b in range(b0, b1):
            _prefetch_next(t, b, b0, b1, gates, rec, cs, wx, da, dr)
            if lengths.shape[0] and t >= lengths[b]:  # padding: the gradient passes untouched
                da[t, b, :] = 0.0
                dr[t, b, :] = 0.0
                norms[t, b, 1] = 0.0
                continue
            gb, dab, c_prev, dcb = gates[t, b], da[t, b], cs[t, b], dc[b]
            cn, tn, dn = cn_buf[b - b0], tn_buf[b - b0], dn_buf[b - b0]
            g, o, dg, do = gb[g_off:o_off], gb[o_off:], dab[g_off:o_off], dab[o_off:]
            i, di, f, df = ones, sink, ones, sink  # a gate the layout lacks: 1, gradient dropped
            if has_f:
                f, df = gb[f_off : f_off + hidden], dab[f_off : f_off + hidden]
            if has_i:
                i, di = gb[:hidden], dab[:hidden]
            else:
                i = i_buf
                for j in range(hidden):
                    i[j] = one - f[j]  # coupled: i_t = 1 - f_t
            if zc_on:
                _new_cell(gb, c_prev, cn, hidden, f_off, g_off, has_i, has_f)  # C'_t, recomputed
            else:
                cn = cs[t + 1, b]  # C_t = C'_t without zoneout of C
            mu, rstd = zero, one
            if ln:  # tanh in place on one array, as in the forward (vectorised)
                mu, rstd = row_stats(cn)
                for j in range(hidden):
                    tn[j] = (cn[j] - mu) * rstd * ln_c[0, j] + ln_c[1, j]
                tanh_into(tn, tn)
            else:
                tanh_into(cn, tn)
            dm = dm_buf[b - b0] if proj else dht[b]
            if zh_on and not proj:
                zh, dz = _row(zone_h, t, b), dh_buf[b - b0]  # dh_buf: free until the product
                for j in range(hidden):
                    dz[j] = dm[j] * (one - zh[j])  # zoneout of h: dL/dh'_t
                dm = dz
            for j in range(hidden):
                do[j] = dm[j] * tn[j] * o[j] * (one - o[j])  # h' = o ⊙ tanh(n); σ' = σ(1 - σ)
                dn[j] = dm[j] * o[j] * (one - tn[j] * tn[j])  # … and through tanh
            if ln:  # back through LN(C'_t)·γ_c + β_c
                m1, m2 = zero, zero
                gain, g_gain, g_shift = ln_c[0], g_ln_c[b0, 0], g_ln_c[b0, 1]
                for j in range(hidden):
                    c_hat = (cn[j] - mu) * rstd
                    g_gain[j] += dn[j] * c_hat  # dL/dγ_c
                    g_shift[j] += dn[j]  # dL/dβ_c
                    m1 += dn[j] * gain[j]
                    m2 += dn[j] * gain[j] * c_hat
                m1, m2 = m1 / n_h, m2 / n_h
                for j in range(hidden):
                    dn[j] = rstd * (dn[j] * gain[j] - m1 - (cn[j] - mu) * rstd * m2)
            # One loop for every option, so that it vectorises: an absent option enters as its
            # neutral value (zoneout probability 0, peephole weight 0, f_t = 1 without a
            # forget gate; coupled, i_t = 1 - f_t and κ = 1 adds ∂i_t/∂f_t = -1).
            zc = _row(zone_c, t, b) if zc_on else zeros
            sq = zero
            for j in range(hidden):
                dcn = dn[j] + (one - zc[j]) * dcb[j] + do[j] * w_o[j]  # dL/dC'_t (o_t sees C'_t)
                sq += dcn * dcn
                d_ig = dcn * g[j]  # C'_t = f ⊙ C_{t-1} + i ⊙ C~_t
                dai = d_ig * i[j] * (one - i[j])  # σ' = σ(1 - σ)
                daf = (dcn * c_prev[j] - kappa * d_ig) * f[j] * (one - f[j])
                di[j] = dai
                df[j] = daf
                dg[j] = dcn * i[j] * (one - g[j] * g[j])  # tanh' = 1 - tanh²
                # ∂C'_t/∂C_{t-1} = f_t (the carousel), the zoneout skip, the peepholes
                dcb[j] = dcn * f[j] + zc[j] * dcb[j] + dai * w_i[j] + daf * w_f[j]
            norms[t, b, 1] = np.sqrt(sq)
            if peep:  # the peepholes' gradients: i_t, f_t see C_{t-1}, o_t sees C'_t
                g_i = g_ch[b0, :hidden] if has_i else sink
                g_f = g_ch[b0, pf_off : pf_off + hidden] if has_f else sink
                g_o = g_ch[b0, po_off:]
                for j in range(hidden):
                    g_i[j] += di[j] * c_prev[j]
                    g_f[j] += df[j] * c_prev[j]
                    g_o[j] += do[j] * cn[j]
            if ln:  # back through LN(U h_{t-1})·γ_h
                r, drb = rec[t, b], dr[t, b]
                mu, rstd = row_stats(r)
                m1, m2 = zero, zero
                for j in range(n_gates):
                    m1 += dab[j] * ln_hh[j]
                    m2 += dab[j] * ln_hh[j] * (r[j] - mu) * rstd
                m1, m2 = m1 / n_g, m2 / n_g
                g_ln = g_ln_hh[b0]
                for j in range(n_gates):
                    r_hat = (r[j] - mu) * rstd
                    g_ln[j] += dab[j] * r_hat  # dL/dγ_h
                    drb[j] = rstd * (dab[j] * ln_hh[j] - m1 - r_hat * m2)
            if ln_x:  # back through LN(W x_t)·γ_x + b: da_t becomes dL/d(W x_t), in place
                xr, mu, rstd = wx[t, b], x_mean[t, b, 0], x_rstd[t, b, 0]
                m1, m2 = zero, zero
                g_x, g_bb = g_ln_ih[b0], g_b[b0]
                for j in range(n_gates):
                    x_hat = (xr[j] - mu) * rstd
                    g_x[j] += dab[j] * x_hat  # dL/dγ_x
                    g_bb[j] += dab[j]  # dL/db
                    m1 += dab[j] * ln_ih[j]
                    m2 += dab[j] * ln_ih[j] * x_hat
                m1, m2 = m1 / n_g, m2 / n_g
                for j in range(n_gates):
                    dab[j] = rstd * (dab[j] * ln_ih[j] - m1 - (xr[j] - mu) * rstd * m2)
        if w_hh_t.shape[0] == 0:
            continue  # one step of a cell: the host runs the path through h_0
        product(dr[t, b0:b1], w_hh_t, dh_buf, 0.0)  # dL/dh_{t-1} = dr_t U
        for b in range(b0, b1):
            if lengths.shape[0] and t >= lengths[b]:
                continue
            dhb, got = dh[b], dh_buf[b - b0]
            if keep_on:
                for j in range(out_size):
                    dhb[j] = got[j] * keep[b, j]  # recurrent dropout: h_{t-1} came in as m ⊙ h
            else:
                copy(got, dhb)
            if zh_on:
                zh, dhtb = _row(zone_h, t, b), dht[b]
                for j in range(out_size):
                    dhb[j] += zh[j] * dhtb[j]  # zoneout of h: h_t = h_{t-1} where d = 1


# host: the engine functions ------------------------------------------------------------------


def _operands(w: VariantWeights, v: LSTMVariant, masks: VariantMasks, dtype) -> tuple:
    """(w_ch, ln_hh, ln_c (2, H), flags) and (zone_c, zone_h, keep), as the kernels take
    them: empty arrays for what the variant lacks."""
    ln_c = None
    if w.ln_c_w is not None and w.ln_c_b is not None:
        ln_c = torch.stack((w.ln_c_w, w.ln_c_b))
    flags = np.array([v.has_input_gate, v.forget_gate, v.peephole, v.layer_norm], np.int64)
    params = (
        host.optional(w.w_ch if v.peephole else None, 1, dtype),
        host.optional(w.ln_hh if v.layer_norm else None, 1, dtype),
        host.optional(ln_c if v.layer_norm else None, 2, dtype),
        flags,
    )
    dims = (3, 3, 2)
    return params, tuple(host.optional(m, d, dtype) for m, d in zip(masks, dims, strict=True))


def scratch_input_part(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """W x_t + bias for all T steps in a buffer this thread keeps (:func:`.host.kept`),
    for a call that keeps nothing. A new (T, B, G) tensor a call, and torch's layer norm
    writing another, page-faulted through 16 MB at (500, 16, 16, 64): 2.7 ms of a 6.7 ms
    inference. With layer norm the loop normalises it row by row (no pass of its own)."""
    steps, batch, _ = x.shape
    dtype = host.NO_BIAS[x.dtype].dtype
    xa = torch.from_numpy(host.kept("variant_input", (steps, batch, w_ih.shape[0]), dtype))
    return host.project_all(x, w_ih, bias, None, out=xa)


def variant_forward(
    xa: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    keep: bool = True,
    part: InputPart | None = None,
) -> VariantForward:
    """See :func:`longshort.engine.reference.variant_forward`. keep=False (a call with no
    graph to record): nothing kept per step but the outputs; gates, cs and rec come back
    empty. part (layer norm): xa = part.wx is W x_t, which the loop normalises, filling
    part.mean and part.rstd; the gates go to a tensor of their own, as BPTT reads wx."""
    return _forward(xa, None, h0, c0, w, v, masks, lengths, keep, part is not None, part)


def variant_infer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """See :func:`longshort.engine.reference.variant_infer`: the loop makes W x_t itself where
    that pays (:func:`.lstm.infer_pays`), one product a step on [x_t | h_{t-1}] with
    [W_ih | U] packed (as the plain LSTM's :func:`.lstm.infer`), or with layer norm, which
    normalises W x_t and U h_{t-1} apart, one product for each; else the input part, then
    the loop. At (500, 16, 16, 64) the input part took 1.4 ms of a 5.8 ms call, writing a
    (T, B, G) buffer the loop then read back."""
    steps, batch, n_in = x.shape
    out_size = h0.shape[1]
    flops = 2 * batch * w.w_ih.shape[0] * (n_in + out_size)
    parts = threads.ranges(batch, flops=flops * steps)
    ln = v.layer_norm  # the loop normalises W x_t and adds the bias
    if n_in == 0 or not lstm.infer_pays(parts, n_in, out_size, steps):
        xa = scratch_input_part(x, w.w_ih, None if ln else w.input_bias())
        return _forward(xa, None, h0, c0, w, v, masks, lengths, False, norm_input=ln)
    xa = x.new_empty(1, batch, w.w_ih.shape[0])  # one step's gates, in place
    return _forward(xa, x, h0, c0, w, v, masks, lengths, False, norm_input=ln)


def _forward(
    xa: Tensor,
    x: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    keep: bool,
    norm_input: bool = False,
    part: InputPart | None = None,
) -> VariantForward:
    """The loop on the input part xa (T, B, G), or with x (T, B, I) on one step's xa
    (1, B, G) and W x_t made in the loop (:func:`variant_infer`). norm_input (layer norm):
    the loop normalises W x_t (xa's, or its own) and adds the bias; with part (training),
    from part.wx = xa into gates of their own, filling part.mean and part.rstd."""
    steps, batch, n_gates = xa.shape if x is None else (x.shape[0], *xa.shape[1:])
    hidden, out_size = c0.shape[1], h0.shape[1]
    # a tensor of the caller's own, which becomes the gates in place, unless BPTT reads it
    gates = host.recycled(xa.shape, xa.dtype) if part is not None else xa.contiguous()
    kept = steps if keep else 1
    rec = host.recycled((kept, batch, n_gates) if v.layer_norm else (0, 0, 0), xa.dtype)
    out = xa.new_empty(steps, batch, out_size)
    cs = host.recycled((kept + 1, batch, hidden), xa.dtype)
    cs[0] = c0
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = out.numpy().dtype
    (w_ch, ln_hh, ln_c, flags), mask_arrays = _operands(w, v, masks, dtype)
    coef = host.coefficients(hidden, dtype, v.blocks)
    w_hr = host.optional(w.w_hr, 2, dtype)
    b = w.input_bias()
    summed = np.zeros(n_gates, dtype) if b is None else host.array(b.to(xa.dtype))
    ln_ih, bias, x_arr, n_in = np.empty(0, dtype), np.empty(0, dtype), None, 0
    if norm_input:  # the loop normalises W x_t and adds the bias
        assert w.ln_ih is not None and (part is not None or not keep)
        ln_ih, bias = host.array(w.ln_ih), summed
    no_part = np.empty((0, 0, 0), dtype)
    wx_io = (no_part,) * 3
    if part is not None:  # the stats are filled in place: tensors of the caller's, contiguous
        wx_io = (host.array(part.wx), part.mean.numpy(), part.rstd.numpy())
    w_in, pair = np.empty((0, 0), dtype), x is not None and not norm_input
    if x is not None:
        n_in, bias, x_arr = x.shape[2], summed, host.array(x)
    if norm_input and x is not None:  # W x_t and U h_{t-1} apart, each normalised
        w_in = host.recurrent(w.w_ih, steps, "input_loop")
    if pair:  # one product on [x_t | h_{t-1}]
        w_loop = host.packed_pair(w.w_ih, w.w_hh, "recurrent")
    else:
        w_loop = host.recurrent(w.w_hh, steps)
    weights = (w_in, w_loop, w_hr, w_ch, ln_ih, ln_hh, ln_c, coef, flags, bias)
    x_io = np.empty((0, 0, 0), dtype) if x_arr is None else x_arr
    io = (h.numpy(), out.numpy(), *mask_arrays, host.lengths_array(lengths), x_io, *wx_io)
    saved = (gates.numpy(), rec.numpy(), cs.numpy())
    rows = lambda n, k: packed.aligned_empty((n if w.w_hr is not None else 0, k), dtype)  # noqa: E731

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        hd, cn_buf = (
            packed.aligned_empty((n, out_size), dtype),
            packed.aligned_empty((n, hidden), dtype),
        )
        xh = packed.aligned_empty((n if pair else 0, n_in + out_size if pair else 0), dtype)
        scratch = (hd, cn_buf, rows(n, hidden), rows(n, out_size), xh)
        return weights, io, saved, scratch, b0, b1

    flops = 2 * batch * n_gates * (out_size + n_in)
    threads.run(forward, threads.ranges(batch, flops=flops * steps), args, flops)
    c_n = cs[steps % (kept + 1)].clone()
    empty = xa.new_empty(0)
    if not keep:
        return VariantForward(out, h, c_n, empty, empty, empty)
    return VariantForward(out, h, c_n, gates, cs, rec if v.layer_norm else empty)


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
    part: InputPart | None = None,
) -> VariantLoopGrads:
    """See :func:`longshort.engine.reference.variant_backward`. The returned da and dr are
    views of buffers kept across calls (:func:`host.kept`): valid until this thread's next
    variant BPTT, and :func:`longshort.engine.variant.backward` turns them into the weight
    gradients at once. part (layer norm, as :func:`variant_forward` filled it): the loop
    goes back through LN(W x_t)·γ_x + b too; da is then dL/d(W x_t), and the gradients of
    γ_x and the bias come back as ln_ih and bias."""
    gates, cs = saved.gates, saved.cs
    steps, batch, n_gates = gates.shape
    hidden, out_size = cs.shape[2], d_hn.shape[1]
    proj = w.w_hr is not None
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    dc = d_cn.clone(memory_format=torch.contiguous_format)
    shape, real = tuple(gates.shape), host.array(gates).dtype  # BPTT writes all of da and dr
    da = torch.from_numpy(host.kept("variant_da", shape, real))
    dr = torch.from_numpy(host.kept("variant_dr", shape, real)) if v.layer_norm else da
    dh_t = gates.new_empty(steps if proj else 1, batch, out_size)
    peep, ln = v.peephole, v.layer_norm
    peepholes = 0 if w.w_ch is None else len(w.w_ch)
    g_ch = gates.new_empty((batch, peepholes) if peep else (0, 0))  # per thread, summed below
    g_ln_hh = gates.new_empty((batch, n_gates) if ln else (0, 0))
    g_ln_c = gates.new_empty((batch, 2, hidden) if ln else (0, 0, 0))
    ln_x = part is not None  # the input part's layer norm too
    g_ln_ih, g_b = (gates.new_empty((batch, n_gates) if ln_x else (0, 0)) for _ in range(2))
    norms = gates.new_empty(steps, batch, 2)
    dtype = da.numpy().dtype
    (w_ch, ln_hh, ln_c, flags), mask_arrays = _operands(w, v, masks, dtype)
    ln_ih = host.optional(w.ln_ih if ln_x else None, 1, dtype)
    w_hr_t = host.optional(None if w.w_hr is None else w.w_hr.t(), 2, dtype)
    # Uᵀ transposed once: each step's product reads rows
    weights = (host.recurrent(w.w_hh.t(), steps), w_hr_t, w_ch, ln_ih, ln_hh, ln_c, flags)
    io = (host.array(d_out), dh.numpy(), dc.numpy(), *mask_arrays, host.lengths_array(lengths))
    io += (da.numpy(), dr.numpy(), dh_t.numpy(), g_ch.numpy(), g_ln_hh.numpy(), g_ln_c.numpy())
    io += (g_ln_ih.numpy(), g_b.numpy(), norms.numpy())
    empty = np.empty((0, 0, 0), dtype)
    rec = host.array(saved.rec) if v.layer_norm else empty
    x_part = (empty,) * 3 if part is None else tuple(host.array(a) for a in part)
    saved_arrays = (host.array(gates), rec, host.array(cs), *x_part)
    rows = lambda n, k: packed.aligned_empty((n if proj else 0, k), dtype)  # noqa: E731

    def args(b0: int, b1: int) -> tuple:
        n = b1 - b0
        scratch = tuple(
            packed.aligned_empty((n, k), dtype) for k in (hidden, hidden, hidden, out_size)
        )
        scratch += (rows(n, hidden), rows(n, out_size))
        return weights, io, saved_arrays, scratch, b0, b1

    flops = 2 * batch * n_gates * out_size
    threads.run(backward, threads.ranges(batch, flops=flops * steps), args, flops)
    dhp = None
    if proj:  # dL/dh'_t at the projection's output, after zoneout of h
        dhp = dh_t if masks.zone_h is None else dh_t * (1 - masks.zone_h)
    grads = VariantLoopGrads(da, dr, dhp, dh, dc, norms)
    if peep:
        grads = grads._replace(w_ch=g_ch.sum(0))
    if ln:
        ln_c_grads = g_ln_c.sum(0)
        grads = grads._replace(ln_hh=g_ln_hh.sum(0), ln_c_w=ln_c_grads[0], ln_c_b=ln_c_grads[1])
    if ln_x:
        grads = grads._replace(ln_ih=g_ln_ih.sum(0), bias=g_b.sum(0))
    return grads
