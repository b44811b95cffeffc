"""A variant LSTM layer around an engine's recurrent loop: what is done for all steps at once.

Before the loop, the input part of the pre-activations for all T steps in one product
(with layer norm, LN(W x_t)·γ_x + b through torch's fused layer norm, or W x_t alone where
the engine's loop normalises it, forward and back: ``Engine.normalises_input``); after it,
the weight gradients of the products as reductions over all T*B rows, in the engine's
BLAS. The loop itself, forward and BPTT, is the engine's (``variant_forward``/
``variant_backward`` of :class:`longshort.engine.types.Engine`, which also return the
gradients of the weights used inside the loop), so both engines share this code. Equations:
:mod:`longshort.cells.lstm_variant`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.cells.lstm_variant import EPS, new_cells, normalise, split
from longshort.engine.segmented import segment_lengths
from longshort.engine.types import (
    Engine,
    InputPart,
    LSTMVariant,
    VariantForward,
    VariantGrads,
    VariantMasks,
    VariantWeights,
)

_SUM = (0, 1)  # over steps and batch rows


def _fused(engine: Engine, v: LSTMVariant) -> bool:
    """Whether the engine's loop normalises W x_t itself (layer norm, forward and BPTT)."""
    return v.layer_norm and engine.normalises_input


def input_part(
    engine: Engine, x: Tensor, w: VariantWeights, v: LSTMVariant
) -> tuple[Tensor, InputPart]:
    """xa (T, B, G) = W x_t + b, or LN(W x_t)·γ_x + b, a new tensor the loop may overwrite,
    and what BPTT reads of it. Where the engine normalises in its loop, xa is W x_t itself
    and the part's mean and rstd are for the loop to fill."""
    if not v.layer_norm:
        empty = x.new_empty(0)
        return engine.project(x, w.w_ih, w.input_bias()), InputPart(empty, empty, empty)
    wx = engine.project(x, w.w_ih, None)  # W x_t for all steps in one product
    if _fused(engine, v):
        stats = wx.new_empty(*wx.shape[:2], 1), wx.new_empty(*wx.shape[:2], 1)
        return wx, InputPart(wx, *stats)
    xa, mean, rstd = torch.native_layer_norm(wx, wx.shape[-1:], w.ln_ih, w.input_bias(), EPS)
    return xa, InputPart(wx, mean, rstd)


def forward(
    engine: Engine,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    keep: bool = True,
) -> tuple[VariantForward, InputPart]:
    """The layer over x (T, B, I); returns the loop's result and what the input part saves
    (keep=False: no graph to record, the engine's variant_infer, which may keep nothing per
    step)."""
    if not keep:
        empty = x.new_empty(0)
        res = engine.variant_infer(x, h0, c0, w, v, masks, lengths)
        return res, InputPart(empty, empty, empty)
    xa, part = input_part(engine, x, w, v)
    fused = part if _fused(engine, v) else None
    return engine.variant_forward(xa, h0, c0, w, v, masks, lengths, keep, fused), part


def outputs(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """The layer over x (T, B, I) as a graph of torch ops (double backward, ``torch.func``)."""
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
    part: InputPart,
    need_dx: bool = True,
) -> VariantGrads:
    """BPTT of :func:`forward`: the engine's loop, then the weight gradients over all rows
    (dx None unless need_dx)."""
    fused = _fused(engine, v)
    g = engine.variant_backward(
        d_out, d_hn, d_cn, h0, w, v, masks, lengths, saved, part if fused else None
    )
    d_wx, d_ln_ih, db = g.da, None, None
    bias = w.input_bias()
    if fused:  # the loop went back through LN(W x_t)·γ_x + b: da is dL/d(W x_t)
        d_ln_ih, db = g.ln_ih, None if bias is None else g.bias
    elif v.layer_norm:  # back through LN(W x_t)·γ_x + b
        d_wx, d_ln_ih, db = torch.ops.aten.native_layer_norm_backward(
            g.da, part.wx, part.wx.shape[-1:], part.mean, part.rstd, w.ln_ih, bias,
            [True, True, bias is not None],
        )  # fmt: skip
    elif bias is not None:
        db = g.da.sum(_SUM)
    h_prev = torch.cat((h0[None], saved.out[:-1]))  # h_{t-1} for every t
    if masks.keep is not None:
        h_prev = h_prev * masks.keep
    dx, dw_ih, dw_hh = engine.product_grads(d_wx, g.dr, x, h_prev, w.w_ih, need_dx)
    grads = VariantWeights(
        w_ih=dw_ih,
        w_hh=dw_hh,
        b_ih=db,
        b_hh=db if w.b_hh is not None else None,
        w_hr=_projection_grad(g.dhp, saved, w, v),
        w_ch=g.w_ch,
        ln_ih=d_ln_ih,
        ln_hh=g.ln_hh,
        ln_c_w=g.ln_c_w,
        ln_c_b=g.ln_c_b,
    )
    return VariantGrads(dx, g.dh0, g.dc0, grads, g.norms)


def _projection_grad(
    dhp: Tensor | None, saved: VariantForward, w: VariantWeights, v: LSTMVariant
) -> Tensor | None:
    """dL/dW_hr = Σ dh'_tᵀ m_t with m_t = o_t ⊙ tanh(n_t), recomputed."""
    if dhp is None:
        return None
    c_new = new_cells(saved.gates, saved.cs[:-1], v)
    n = c_new
    if w.ln_c_w is not None and w.ln_c_b is not None:  # layer norm
        n = normalise(c_new)[0] * w.ln_c_w + w.ln_c_b
    m = split(saved.gates, v)[3] * torch.tanh(n)
    return dhp.flatten(0, 1).T @ m.flatten(0, 1)


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
            segment_lengths(lengths, s, xs.shape[0]),
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
        ls, ms = segment_lengths(lengths, s, xs.shape[0]), masks.steps(s, s + segment)
        h0, c0 = starts[k, :, :out_size], starts[k, :, out_size:]
        saved, part = forward(engine, xs, h0, c0, w, v, ms, ls)
        g = backward(engine, d_out[s : s + segment], dh, dc, xs, h0, w, v, ms, ls, saved, part)
        assert g.dx is not None and g.dh0 is not None  # need_dx left True
        dx[s : s + segment], dh, dc = g.dx, g.dh0, g.dc0
        norms[s : s + segment] = g.norms
        total = [
            a if b is None else (b if a is None else a + b)
            for a, b in zip(total, g.weights, strict=True)
        ]
    return VariantGrads(dx, dh, dc, VariantWeights._make(total), norms)
