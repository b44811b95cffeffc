"""A variant LSTM layer around an engine's recurrent loop: what is done for all steps at once.

Before the loop, the input part of the pre-activations for all T steps in one product
(with layer norm, LN(W x_t)·γ_x + b through torch's fused layer norm); after it, every weight
gradient as a reduction over all T*B rows, the large products in the engine's BLAS. The loop itself, forward and BPTT, is the engine's
(``variant_forward``/``variant_backward`` of :class:`longshort.engine.types.Engine`), so both
engines share this code. Equations: :mod:`longshort.cells.lstm_variant`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.cells.lstm_variant import EPS, split
from longshort.engine.types import (
    Engine,
    LSTMVariant,
    VariantForward,
    VariantGrads,
    VariantMasks,
    VariantWeights,
)

_SUM = (0, 1)  # over steps and batch rows


def _bias(w: VariantWeights) -> Tensor | None:
    return None if w.b_ih is None else (w.b_ih if w.b_hh is None else w.b_ih + w.b_hh)


def _normalised(a: Tensor) -> Tensor:
    """(a - μ) / sqrt(σ² + ε) over the last dimension, one fused pass."""
    return torch.native_layer_norm(a, a.shape[-1:], None, None, EPS)[0]


def input_part(
    engine: Engine, x: Tensor, w: VariantWeights, v: LSTMVariant
) -> tuple[Tensor, Tensor]:
    """xa (T, B, G) = W x_t + b, or LN(W x_t)·γ_x + b, and W x_t (T, B, G) (layer_norm) or an
    empty tensor: what the backward needs. xa is a new tensor the loop may overwrite."""
    if not v.layer_norm:
        return engine.project(x, w.w_ih, _bias(w)), x.new_empty(0)
    wx = engine.project(x, w.w_ih, None)  # W x_t for all steps in one product
    xa = torch.native_layer_norm(wx, wx.shape[-1:], w.ln_ih, _bias(w), EPS)[0]
    return xa, wx


def forward(
    engine: Engine,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> tuple[VariantForward, Tensor]:
    """The layer over x (T, B, I); returns the loop's result and the saved W x_t."""
    xa, wx = input_part(engine, x, w, v)
    return engine.variant_forward(xa, h0, c0, w, v, masks, lengths), wx


def outputs(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """out, h_n, c_n as a graph of torch ops, for double backward."""
    from longshort.engine import reference

    xa, _ = input_part(reference, x, w, v)
    return reference.variant_outputs(xa, h0, c0, w, v, masks, lengths)


def backward(
    engine: Engine,
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    saved: VariantForward,
    wx: Tensor,
) -> VariantGrads:
    """BPTT of :func:`forward`: the engine's loop, then the weight gradients over all rows."""
    g = engine.variant_backward(d_out, d_hn, d_cn, h0, w, v, masks, lengths, saved)
    d_wx, d_ln_ih, db = g.da, None, None
    if v.layer_norm:  # back through LN(W x_t)·γ_x + b
        bias = _bias(w)
        _, mean, rstd = torch.native_layer_norm(wx, wx.shape[-1:], w.ln_ih, bias, EPS)
        d_wx, d_ln_ih, db = torch.ops.aten.native_layer_norm_backward(
            g.da, wx, wx.shape[-1:], mean, rstd, w.ln_ih, bias, [True, True, bias is not None]
        )
    elif w.b_ih is not None:
        db = g.da.sum(_SUM)
    h_prev = torch.cat((h0[None], saved.out[:-1]))  # h_{t-1} for every t
    if masks.keep is not None:
        h_prev = h_prev * masks.keep
    dx, dw_ih, dw_hh = engine.product_grads(d_wx, g.dr, x, h_prev, w.w_ih)
    grads = VariantWeights(
        w_ih=dw_ih,
        w_hh=dw_hh,
        b_ih=db,
        b_hh=db if w.b_hh is not None else None,
        w_hr=_projection_grad(g.dhp, saved, w, v),
        w_ch=_peephole_grad(g.da, saved, v) if v.peephole else None,
        ln_ih=d_ln_ih,
        ln_hh=(g.da * _normalised(saved.rec)).sum(_SUM) if v.layer_norm else None,
        ln_c_w=(g.dn * _normalised(_new_cells(saved, v))).sum(_SUM) if v.layer_norm else None,
        ln_c_b=g.dn.sum(_SUM) if v.layer_norm else None,
    )
    return VariantGrads(dx, g.dh0, g.dc0, grads, g.norms)


def _new_cells(saved: VariantForward, v: LSTMVariant) -> Tensor:
    """C'_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t of every step (before zoneout), recomputed."""
    i, f, g, _ = split(saved.gates, v)
    c_prev = saved.cs[:-1]
    i = 1 - f if i is None else i
    return i * g + (c_prev if f is None else f * c_prev)


def _peephole_grad(da: Tensor, saved: VariantForward, v: LSTMVariant) -> Tensor:
    """dL/d[p_i, p_f, p_o]: Σ da_i ⊙ C_{t-1}, Σ da_f ⊙ C_{t-1}, Σ da_o ⊙ C'_t."""
    dai, daf, _, dao = split(da, v)
    c_prev = saved.cs[:-1]
    parts = [(d * c_prev).sum(_SUM) for d in (dai, daf) if d is not None]
    return torch.cat((*parts, (dao * _new_cells(saved, v)).sum(_SUM)))


def _projection_grad(
    dhp: Tensor | None, saved: VariantForward, w: VariantWeights, v: LSTMVariant
) -> Tensor | None:
    """dL/dW_hr = Σ dh'_tᵀ m_t with m_t = o_t ⊙ tanh(n_t), recomputed."""
    if dhp is None:
        return None
    c_new = _new_cells(saved, v)
    n = _normalised(c_new) * w.ln_c_w + w.ln_c_b if v.layer_norm else c_new
    m = split(saved.gates, v)[3] * torch.tanh(n)
    return dhp.flatten(0, 1).T @ m.flatten(0, 1)


def _segment_lengths(lengths: Tensor | None, start: int, size: int) -> Tensor | None:
    return None if lengths is None else (lengths - start).clamp(0, size)


def segmented_forward(
    engine: Engine,
    segment: int,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """As :func:`forward`, keeping only out and the states [h, C] at each segment's start
    (ceil(T/S), B, P + H), in cs; gates and rec are empty (see :mod:`.segmented`)."""
    steps, batch, _ = x.shape
    out = x.new_empty(steps, batch, h0.shape[1])
    starts = x.new_empty((steps + segment - 1) // segment, batch, h0.shape[1] + c0.shape[1])
    h, c = h0, c0
    for k, s in enumerate(range(0, steps, segment)):
        starts[k] = torch.cat((h, c), dim=1)
        xs = x[s : s + segment]
        part, _ = forward(
            engine, xs, h, c, w, v, masks.steps(s, s + segment),
            _segment_lengths(lengths, s, xs.shape[0]),
        )  # fmt: skip
        out[s : s + segment], h, c = part.out, part.h_n, part.c_n
    empty = x.new_empty(0)
    return VariantForward(out, h, c, empty, starts, empty)


def segmented_backward(
    engine: Engine,
    segment: int,
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    starts: Tensor,
) -> VariantGrads:
    """BPTT of :func:`segmented_forward`, segment by segment from the last."""
    out_size = d_hn.shape[1]
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    norms = x.new_empty(x.shape[0], x.shape[1], 2)
    total: list[Tensor | None] = [None] * len(w)
    dh, dc = d_hn, d_cn
    for k in reversed(range(starts.shape[0])):
        s = k * segment
        xs = x[s : s + segment]
        ls, ms = _segment_lengths(lengths, s, xs.shape[0]), masks.steps(s, s + segment)
        h0, c0 = starts[k, :, :out_size], starts[k, :, out_size:]
        saved, wx = forward(engine, xs, h0, c0, w, v, ms, ls)
        g = backward(engine, d_out[s : s + segment], dh, dc, xs, h0, w, v, ms, ls, saved, wx)
        dx[s : s + segment], dh, dc = g.dx, g.dh0, g.dc0
        norms[s : s + segment] = g.norms
        total = [a if b is None else (b if a is None else a + b) for a, b in zip(total, g.weights, strict=True)]
    return VariantGrads(dx, dh, dc, VariantWeights(*total), norms)
