"""One step of a variant LSTMCell (``LSTMCell(..., layer_norm=True)`` and the rest), every row,
in one compiled call each way.

The step is :mod:`.lstm_variant`'s forward and BPTT loops run over one step, with what the layer
does for all steps at once (the input part, with layer norm LN(W x)·γ_x + b; the weight
gradients) done here for the step's rows, inside the same call. Tensors go to the kernels by
address (:mod:`.address`). Above a few rows the products run on torch's GEMM first
(:func:`.host.torch_products`), and the kernels the rest. Equations:
:mod:`longshort.cells.lstm_variant`; gate blocks and flags as :mod:`.lstm_variant` lays them out.

Shapes: B batch, I input, H hidden (no projection in a cell), G = nb * H gate columns.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine.cpu import address, host
from longshort.engine.cpu.activations import JIT, zero_of
from longshort.engine.cpu.address import view
from longshort.engine.cpu.blas import gemm_at, gemm_w, gemm_wt
from longshort.engine.cpu.lstm_variant import backward, forward, row_stats
from longshort.engine.types import (
    LSTMVariant,
    VariantGrads,
    VariantMasks,
    VariantStepSaved,
    VariantWeights,
)

# kernels -------------------------------------------------------------------------------------


@njit(inline="always", **JIT)
def _pair(first, second, rows, hidden, like, dtype):
    """(rows, H): the H values at address first, then those at second (rows 2), or empty
    (rows 0): layer norm's γ_c and β_c as the loops take them."""
    out = np.empty((rows, hidden), dtype)
    if rows:
        out[0] = view(first, hidden, like)
        out[1] = view(second, hidden, like)
    return out


@njit(inline="always", **JIT)
def _views(params, masks, sizes, flags, like, dtype):
    """The views of params = (w_ih, w_hh, b_ih, b_hh, w_ch, ln_ih, ln_hh, ln_c_w, ln_c_b) and
    masks = (zone_c, zone_h, keep) as the loops take them (empty for what is NONE), with
    ln_c (2, H) joined from its gain and bias."""
    batch, n_in, hidden, n_gates, rows_c, rows_h = sizes
    ln = flags[3]
    nw, nb, nl = n_gates if params[0] else 0, n_gates if params[2] else 0, n_gates if ln else 0
    w_ih, w_hh = view(params[0], (nw, n_in), like), view(params[1], (nw, hidden), like)
    b_ih, b_hh = view(params[2], nb, like), view(params[3], nb, like)
    w_ch = view(params[4], n_gates - hidden if flags[2] else 0, like)
    ln_ih, ln_hh = view(params[5], nl, like), view(params[6], nl, like)
    ln_c = _pair(params[7], params[8], 2 if ln else 0, hidden, like, dtype)
    zone_c = view(masks[0], (1 if rows_c else 0, rows_c, hidden), like)
    zone_h = view(masks[1], (1 if rows_h else 0, rows_h, hidden), like)
    keep = view(masks[2], (batch if masks[2] else 0, hidden), like)
    return (w_ih, w_hh, b_ih, b_hh, w_ch, ln_ih, ln_hh, ln_c), (zone_c, zone_h, keep)


@njit(inline="always", **JIT)
def _input_part(wx, z, b_ih, b_hh, ln_ih, ln):
    """z = W x + b, or LN(W x)·γ_x + b (layer norm), row by row; wx (B, G) holds W x (it is z
    itself without layer norm); b_ih, b_hh (G,) or empty."""
    for b in range(z.shape[0]):
        mu, rstd = row_stats(wx[b]) if ln else (z.dtype.type(0.0), z.dtype.type(1.0))
        for j in range(z.shape[1]):
            a = (wx[b, j] - mu) * rstd * ln_ih[j] if ln else z[b, j]
            z[b, j] = a + (b_ih[j] + b_hh[j] if b_ih.shape[0] else zero_of(z))


@njit(**JIT)
def step_forward_at(ins, params, masks, outs, like, sizes, coef, flags):
    """One step forward for every row.

    Addresses: ins = (x (B, I), h0, c0 (B, H)); params = (w_ih (G, I), w_hh (G, H), b_ih, b_hh
      (G,), w_ch ((nb-1) H,), ln_ih, ln_hh (G,), ln_c_w, ln_c_b (H,)), NONE for an absent one,
      and the two weights NONE when the host ran the products (then z holds W x + U (m ⊙ h_0),
      or with layer norm wx holds W x and rec U (m ⊙ h_0)); masks = (zone_c (1, Bc, H), zone_h
      (1, Bh, H), keep (B, H)), NONE for none; outs = (h (B, H), cs (2, B, H) [C_0, C_1], z
      (B, G) the gate blocks, rec, wx (B, G) with layer norm, else NONE).
    sizes = (B, I, H, G, Bc, Bh), Bc and Bh 0 without the mask; coef (3, G); flags (4,) as
    :mod:`.lstm_variant`'s."""
    batch, n_in, hidden, n_gates = sizes[:4]
    ln, dtype = flags[3], coef.dtype
    w, mask_views = _views(params, masks, sizes, flags, like, dtype)
    w_ih, w_hh, b_ih, b_hh, w_ch, ln_ih, ln_hh, ln_c = w
    x = view(ins[0], (batch, n_in), like)
    h0, c0 = view(ins[1], (batch, hidden), like), view(ins[2], (batch, hidden), like)
    h, cs = view(outs[0], (batch, hidden), like), view(outs[1], (2, batch, hidden), like)
    z = view(outs[2], (1, batch, n_gates), like)
    rec = view(outs[3], (1 if ln else 0, batch if ln else 0, n_gates if ln else 0), like)
    wx = view(outs[4], (batch, n_gates), like) if ln else z[0]
    if w_ih.shape[0]:
        gemm_wt(x, w_ih, wx, 0.0)  # W x
    _input_part(wx, z[0], b_ih, b_hh, ln_ih, ln)
    h[:] = h0
    cs[0] = c0
    # z holds the whole input part (_input_part above): the loop takes no ln_ih and no bias
    none, no_x = np.empty(0, dtype), np.empty((0, 0, 0), dtype)
    no_w = np.empty((0, 0), dtype)
    weights = (no_w, w_hh, no_w, w_ch, none, ln_hh, ln_c, coef, flags, none)
    # no x, and no W x_t to normalise (x, wx and its stats empty): z holds the input part
    out, no_lengths = np.empty((1, batch, hidden), dtype), np.empty(0, np.int64)
    io = (h, out, *mask_views, no_lengths, no_x, no_x, no_x, no_x)
    rows, unused = np.empty((batch, hidden), dtype), np.empty((0, hidden), dtype)
    scratch = (rows, np.empty((batch, hidden), dtype), unused, unused, np.empty((0, 0), dtype))
    forward(weights, io, (z, rec, cs), scratch, 0, batch)


@njit(inline="always", **JIT)
def _input_part_grads(da, wx, ln_ih, d_wx, g_ln_ih):
    """Back through LN(W x)·γ_x + b row by row: d_wx (B, G) = dL/d(W x), g_ln_ih (G,) =
    dL/dγ_x, from da (B, G) = dL/da."""
    g_ln_ih[:] = 0.0
    n = da.shape[1]
    for b in range(da.shape[0]):
        mu, rstd = row_stats(wx[b])
        m1, m2 = zero_of(da), zero_of(da)
        for j in range(n):
            x_hat = (wx[b, j] - mu) * rstd
            g_ln_ih[j] += da[b, j] * x_hat  # dL/dγ_x
            m1 += da[b, j] * ln_ih[j]
            m2 += da[b, j] * ln_ih[j] * x_hat
        m1, m2 = m1 / da.dtype.type(n), m2 / da.dtype.type(n)
        for j in range(n):
            x_hat = (wx[b, j] - mu) * rstd
            d_wx[b, j] = rstd * (da[b, j] * ln_ih[j] - m1 - x_hat * m2)


@njit(inline="always", **JIT)
def _sum_rows(a, out):
    """out = Σ_b a[b] over the first axis of a (B, …)."""
    out[:] = 0.0
    for b in range(a.shape[0]):
        out += a[b]


@njit(inline="always", **JIT)
def _products(d_in, dr, x, hd, w_ih, w_hh, keep, dx, dh0, dw_ih, dw_hh):
    """The step's four BPTT products on :mod:`.small`'s loops (a few rows): dx = d_in W_ih,
    dh0 += (dr U) ⊙ m, dW_ih = d_inᵀ x, dW_hh = drᵀ (m ⊙ h_0)."""
    dh_rec = np.empty(dh0.shape, dh0.dtype)
    gemm_w(dr, w_hh, dh_rec, 0.0)  # dL/d(m ⊙ h_0) = dr U
    for b in range(dh0.shape[0]):
        for j in range(dh0.shape[1]):
            dh0[b, j] += dh_rec[b, j] * keep[b, j] if keep.shape[0] else dh_rec[b, j]
    gemm_w(d_in, w_ih, dx, 0.0)  # dL/dx = d_in W
    gemm_at(d_in, x, dw_ih, 0.0)  # dW = d_inᵀ x
    gemm_at(dr, hd, dw_hh, 0.0)  # dU = drᵀ (m ⊙ h_0)


@njit(**JIT)
def step_backward_at(grads, saved, ins, params, masks, outs, like, sizes, flags):
    """BPTT of :func:`step_forward_at`.

    Addresses: grads = (dh, dc (B, H)) at h_1, C_1; saved = (z (B, G), cs (2, B, H), rec, wx
      (B, G) or NONE without layer norm); ins = (x (B, I), hd (B, H) m ⊙ h_0, or h_0 without
      recurrent dropout); params and masks as the forward's (the biases unread), the two
      weights NONE when the host runs the products.
    outs = (da (B, G), dr (B, G) with layer norm (else NONE: da itself), d_wx (B, G) with
      layer norm, dx (B, I), dh0 (B, H), dc0 (B, H), dw_ih (G, I), dw_hh (G, H), db (G,),
      g_ch ((nb-1) H,), g_ln_ih, g_ln_hh (G,), g_ln_c (2, H), norms (B, 2)): NONE for what the
      variant lacks; dx, dw_ih, dw_hh NONE when the host runs the products, and dh0 then
      holds the zoneout part only (the host adds dr U ⊙ m).
    sizes and flags as the forward's."""
    batch, n_in, hidden, n_gates, _, rows_h = sizes
    peep, ln = flags[2], flags[3]
    state, gates3, nl = (batch, hidden), (1, batch, n_gates), n_gates if ln else 0
    z, cs = view(saved[0], gates3, like), view(saved[1], (2, batch, hidden), like)
    dtype = z.dtype
    w, (zone_c, zone_h, keep) = _views(params, masks, sizes, flags, like, dtype)
    w_ih, w_hh, _, _, w_ch, ln_ih, ln_hh, ln_c = w
    dh, dc = view(grads[0], (1, batch, hidden), like), view(grads[1], state, like)
    rec = view(saved[2], gates3 if ln else (0, 0, 0), like)
    da = view(outs[0], gates3, like)
    dr = view(outs[1], gates3, like) if ln else da
    dh0, dc0 = view(outs[4], state, like), view(outs[5], state, like)
    dc0[:] = dc
    dh0[:] = 0.0  # dL/dh_0 through zoneout of h only: the loop adds nothing without U
    g_ch = np.empty((batch, n_gates - hidden if peep else 0), dtype)
    g_ln_hh, g_ln_c = np.empty((batch, nl), dtype), np.empty((batch, 2 if ln else 0, hidden), dtype)
    norms, dh_t = view(outs[13], (1, batch, 2), like), np.empty((1, batch, hidden), dtype)
    no_lengths = np.empty(0, np.int64)
    empty, unused = np.empty((0, 0), dtype), np.empty((0, hidden), dtype)
    rows = (np.empty(state, dtype), np.empty(state, dtype), np.empty(state, dtype))
    scratch = (*rows, np.empty(state, dtype), unused, unused)
    none, no_wx = np.empty(0, dtype), np.empty((0, 0, 0), dtype)  # the host's input part
    loop_weights = (empty, empty, w_ch, none, ln_hh, ln_c, flags)
    # g_ln_ih and g_b empty: the host goes back through the input part
    io = (dh, dh0, dc0, zone_c, zone_h, keep, no_lengths, da, dr, dh_t, g_ch, g_ln_hh, g_ln_c,
          empty, empty, norms)  # fmt: skip
    backward(loop_weights, io, (z, rec, cs, no_wx, no_wx, no_wx), scratch, 0, batch)
    if zone_h.shape[0]:  # h_1 = d ⊙ h_0 + (1-d) ⊙ h'_1
        for b in range(batch):
            zh = zone_h[0, b if rows_h > 1 else 0]
            for j in range(hidden):
                dh0[b, j] = zh[j] * dh[0, b, j]
    if peep:
        _sum_rows(g_ch, view(outs[9], n_gates - hidden, like))
    d_in = da[0]
    if ln:
        _sum_rows(g_ln_hh, view(outs[11], n_gates, like))
        _sum_rows(g_ln_c, view(outs[12], (2, hidden), like))
        d_in = view(outs[2], (batch, n_gates), like)
        wx = view(saved[3], (batch, n_gates), like)
        _input_part_grads(da[0], wx, ln_ih, d_in, view(outs[10], n_gates, like))
    if outs[8]:
        _sum_rows(da[0], view(outs[8], n_gates, like))  # dL/db = Σ_b da_b
    if w_ih.shape[0]:
        x, hd = view(ins[0], (batch, n_in), like), view(ins[1], state, like)
        dx, dw_ih = view(outs[3], (batch, n_in), like), view(outs[6], (n_gates, n_in), like)
        dw_hh = view(outs[7], (n_gates, hidden), like)
        _products(d_in, dr[0], x, hd, w_ih, w_hh, keep, dx, dh0, dw_ih, dw_hh)


# host: the engine functions ------------------------------------------------------------------


class _Operands(NamedTuple):
    """A step's weights and masks, C-contiguous (referenced until the kernel returns), and
    what the kernels take of them."""

    w: VariantWeights
    masks: VariantMasks
    extras: tuple[int, ...]  # addresses of b_ih, b_hh, w_ch, ln_ih, ln_hh, ln_c_w, ln_c_b
    mask_at: tuple[int, ...]  # addresses of zone_c, zone_h, keep
    sizes: tuple[int, ...]  # (B, I, H, G, Bc, Bh), Bc and Bh the rows of zoneout's masks or 0
    flags: np.ndarray


@functools.lru_cache(maxsize=16)
def _flags(v: LSTMVariant) -> np.ndarray:
    """:mod:`.lstm_variant`'s flags of v (read-only)."""
    flags = np.array([v.has_input_gate, v.forget_gate, v.peephole, v.layer_norm], np.int64)
    flags.flags.writeable = False
    return flags


def _operands(
    x: Tensor, c0: Tensor, w: VariantWeights, v: LSTMVariant, masks: VariantMasks
) -> _Operands:
    if w.b_ih is None and w.b_hh is not None:  # a lone bias: the kernels add both
        w = w._replace(b_ih=torch.zeros_like(w.b_hh))
    elif w.b_hh is None and w.b_ih is not None:
        w = w._replace(b_hh=torch.zeros_like(w.b_ih))
    w = VariantWeights._make([None if t is None else t.contiguous() for t in w])
    masks = VariantMasks._make([None if m is None else m.contiguous() for m in masks])
    at = address.optional
    extras = tuple(map(at, (w.b_ih, w.b_hh, w.w_ch, w.ln_ih, w.ln_hh, w.ln_c_w, w.ln_c_b)))
    zc, zh = masks.zone_c, masks.zone_h
    rows = (0 if zc is None else zc.shape[1], 0 if zh is None else zh.shape[1])
    sizes = (c0.shape[0], x.shape[1], c0.shape[1], w.w_ih.shape[0], *rows)
    return _Operands(w, masks, extras, tuple(map(at, masks)), sizes, _flags(v))


def variant_step(
    x: Tensor, h0: Tensor, c0: Tensor, w: VariantWeights, v: LSTMVariant, masks: VariantMasks
) -> tuple[Tensor, Tensor, VariantStepSaved]:
    """See :class:`longshort.engine.types.StepEngine`: float32/float64, no projection."""
    x, h0, c0 = x.contiguous(), h0.contiguous(), c0.contiguous()
    ops = _operands(x, c0, w, v, masks)
    w, keep, (batch, _, hidden, n_gates) = ops.w, ops.masks.keep, ops.sizes[:4]
    new, ln = x.new_empty, v.layer_norm
    z, h, cs = new(batch, n_gates), new(batch, hidden), new(2, batch, hidden)
    rec, wx = (new(batch, n_gates), new(batch, n_gates)) if ln else (new(0), new(0))
    products = (w.w_ih.data_ptr(), w.w_hh.data_ptr())
    if host.torch_products(batch):
        hd = h0 if keep is None else h0 * keep  # m ⊙ h_0: recurrent dropout
        if ln:
            torch.mm(x, w.w_ih.t(), out=wx)  # W x
            torch.mm(hd, w.w_hh.t(), out=rec)  # U (m ⊙ h_0)
        else:
            torch.addmm(torch.mm(x, w.w_ih.t()), hd, w.w_hh.t(), out=z)  # W x + U (m ⊙ h_0)
        products = (address.NONE, address.NONE)
    like = address.LIKE[x.dtype]
    ins = (x.data_ptr(), h0.data_ptr(), c0.data_ptr())
    outs = (h.data_ptr(), cs.data_ptr(), z.data_ptr(), *(address.optional(t) for t in (rec, wx)))
    coef = host.coefficients(hidden, like.dtype, v.blocks)
    step_forward_at(ins, products + ops.extras, ops.mask_at, outs, like, ops.sizes, coef, ops.flags)
    return h, cs[1], VariantStepSaved(z, cs, rec, wx)


class _Grads(NamedTuple):
    """What :func:`step_backward_at` writes, in its order; None for what it leaves."""

    da: Tensor
    dr: Tensor | None
    d_wx: Tensor | None
    dx: Tensor | None
    dh0: Tensor
    dc0: Tensor
    dw_ih: Tensor | None
    dw_hh: Tensor | None
    db: Tensor | None
    w_ch: Tensor | None
    ln_ih: Tensor | None
    ln_hh: Tensor | None
    ln_c: Tensor | None
    norms: Tensor


def _grads(x: Tensor, ops: _Operands, v: LSTMVariant, on_torch: bool) -> _Grads:
    """New tensors for what :func:`step_backward_at` writes: the products' only when they
    run there, layer norm's and the peepholes' only with the option."""
    batch, n_in, hidden, n_gates = ops.sizes[:4]
    new, ln = x.new_empty, v.layer_norm
    wide = lambda *shape: None if on_torch else new(*shape)  # noqa: E731
    ln_only = lambda *shape: new(*shape) if ln else None  # noqa: E731
    return _Grads(
        da=new(batch, n_gates), dr=ln_only(batch, n_gates), d_wx=ln_only(batch, n_gates),
        dx=wide(batch, n_in), dh0=new(batch, hidden), dc0=new(batch, hidden),
        dw_ih=wide(n_gates, n_in), dw_hh=wide(n_gates, hidden),
        db=None if ops.w.b_ih is None else new(n_gates),
        w_ch=new(n_gates - hidden) if v.peephole else None,
        ln_ih=ln_only(n_gates), ln_hh=ln_only(n_gates), ln_c=ln_only(2, hidden),
        norms=new(1, batch, 2),
    )  # fmt: skip


def variant_step_backward(
    dh: Tensor,
    dc: Tensor,
    x: Tensor,
    h0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    saved: VariantStepSaved,
    need_dx: bool = True,
    need_dh0: bool = True,
) -> VariantGrads:
    """See :class:`longshort.engine.types.StepEngine`; the products on torch's GEMM where the
    forward's ran there."""
    dh, dc, x, h0 = dh.contiguous(), dc.contiguous(), x.contiguous(), h0.contiguous()
    ops = _operands(x, dc, w, v, masks)
    w, keep = ops.w, ops.masks.keep
    hd = h0 if keep is None else h0 * keep  # m ⊙ h_0: recurrent dropout
    on_torch = host.torch_products(ops.sizes[0])
    g = _grads(x, ops, v, on_torch)
    weights = (address.NONE,) * 2 if on_torch else (w.w_ih.data_ptr(), w.w_hh.data_ptr())
    kept = saved if v.layer_norm else (*saved[:2], None, None)
    step_backward_at(
        (dh.data_ptr(), dc.data_ptr()), tuple(map(address.optional, kept)),
        (x.data_ptr(), hd.data_ptr()), weights + ops.extras, ops.mask_at,
        tuple(map(address.optional, g)), address.LIKE[x.dtype], ops.sizes, ops.flags,
    )  # fmt: skip
    if on_torch:  # dx = d_in W, dL/d(m ⊙ h_0) = dr U, dW = d_inᵀ x, dU = drᵀ (m ⊙ h_0)
        d_in, dr = (g.da if t is None else t for t in (g.d_wx, g.dr))
        dh_rec = g.dh0 if keep is None else None  # added into dh0
        dx, dh_rec, dw_ih, dw_hh = host.torch_step_grads(
            d_in, dr, x, hd, w.w_ih, w.w_hh, dh_rec, need_dx, need_dh0
        )
        if keep is not None and dh_rec is not None:
            g.dh0.addcmul_(dh_rec, keep)
    else:
        assert g.dx is not None and g.dw_ih is not None and g.dw_hh is not None
        dx, dw_ih, dw_hh = g.dx, g.dw_ih, g.dw_hh
    ln_c = (None, None) if g.ln_c is None else (g.ln_c[0], g.ln_c[1])
    grads = VariantWeights(
        w_ih=dw_ih, w_hh=dw_hh, b_ih=g.db, b_hh=g.db if w.b_hh is not None else None,
        w_ch=g.w_ch, ln_ih=g.ln_ih, ln_hh=g.ln_hh, ln_c_w=ln_c[0], ln_c_b=ln_c[1],
    )  # fmt: skip
    dh0 = g.dh0 if need_dh0 or not on_torch else None  # only a part of it without U
    return VariantGrads(dx, dh0, g.dc0, grads, g.norms)
