"""The reference engine: a cell run over a whole sequence, forward and BPTT, in plain torch ops.

It runs on any device and is the ground truth the fast CPU engine is tested against. Structure:
input projections of all steps in one matmul, the recurrent loop over the cell's step, and after
the backward loop the weight gradients as one matmul over all T*B rows.

Variable lengths: ``lengths`` (B,) int64 marks steps t >= lengths[b] as padding. There the
state is carried unchanged (so the final state is each sequence's own last state), the output
is zero, and no gradient enters the gates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.cells import gru as gru_cell
from longshort.cells import lstm as lstm_cell
from longshort.cells import lstm_variant as variant_cell
from longshort.cells import rnn as rnn_cell
from longshort.engine.types import (
    GRUForward,
    GRUGrads,
    GRUWeights,
    InputPart,
    LSTMForward,
    LSTMGrads,
    LSTMVariant,
    LSTMWeights,
    RNNForward,
    RNNGrads,
    RNNWeights,
    VariantForward,
    VariantLoopGrads,
    VariantMasks,
    VariantWeights,
)

name = "reference"
normalises_input = False  # the variant loop takes LN(W x_t)·γ_x + b made before it


def saved_dtype(x: Tensor) -> torch.dtype:
    """The reference engine saves gates and states in x's own dtype."""
    return x.dtype


def step_mask(lengths: Tensor | None, steps: int) -> Tensor | None:
    """(T, B, 1) bool, True where step t is inside sequence b; None when all steps are."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=lengths.device)
    return (t[:, None] < lengths[None, :]).unsqueeze(-1)


def _input_projection(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    xw = x @ w_ih.T  # W·x_t for all steps in one matmul: (T, B, G)
    if b_ih is not None:
        xw = xw + (b_ih if b_hh is None else b_ih + b_hh)
    return xw


def project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """W x_t + bias for all T steps: (T, B, G)."""
    return _input_projection(x, w_ih, bias, None)


def variant_infer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """See :class:`longshort.engine.types.Engine`: the input part W x_t + b (or LN(W x_t)·γ_x
    + b), then :func:`variant_forward`."""
    b = w.input_bias()
    if v.layer_norm:
        wx = project(x, w.w_ih, None)
        xa = torch.nn.functional.layer_norm(wx, wx.shape[-1:], w.ln_ih, b, variant_cell.EPS)
    else:
        xa = project(x, w.w_ih, b)
    return variant_forward(xa, h0, c0, w, v, masks, lengths, keep=False)


def product_grads(
    d_in: Tensor, d_rec: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor, need_dx: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:
    """dx = d_in W (None unless need_dx), dW_ih = Σ_t d_in_tᵀ x_t, dW_hh = Σ_t d_rec_tᵀ h_prev_t
    over all T*B rows; d_in, d_rec (T, B, G), x (T, B, I), h_prev (T, B, P) the operand of the
    recurrent product."""
    d2 = d_in.flatten(0, 1)
    dx = d_in @ w_ih if need_dx else None
    return dx, d2.T @ x.flatten(0, 1), d_rec.flatten(0, 1).T @ h_prev.flatten(0, 1)


def _weight_grads(dz: Tensor, x: Tensor, h_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """dW_ih, dW_hh and db, each one reduction over all T*B rows after the loop."""
    dz2 = dz.flatten(0, 1)
    return dz2.T @ x.flatten(0, 1), dz2.T @ h_prev.flatten(0, 1), dz2.sum(0)


def lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """x (T, B, I), h0 (B, P), c0 (B, H): see :class:`longshort.engine.types.LSTMForward`."""
    steps, batch, _ = x.shape
    hidden = c0.shape[1]
    w_hh, w_hr = w.w_hh, w.w_hr
    xw = _input_projection(x, w.w_ih, w.b_ih, w.b_hh)
    mask = step_mask(lengths, steps)
    out = x.new_empty(steps, batch, h0.shape[1])
    gates = x.new_empty(steps, batch, 4 * hidden)
    cs = x.new_empty(steps + 1, batch, hidden)
    cs[0] = c0
    h = h0
    for t in range(steps):
        gates[t], c, h_new = lstm_cell.forward_step(xw[t], h, cs[t], w_hh, w_hr)
        if mask is not None:
            c = torch.where(mask[t], c, cs[t])  # padding: carry the state unchanged
            out[t] = torch.where(mask[t], h_new, 0)
            h = torch.where(mask[t], h_new, h)
        else:
            out[t] = h = h_new
        cs[t + 1] = c
    return LSTMForward(out, h.clone(), cs[steps].clone(), gates, cs)


def lstm_infer(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """:func:`lstm_forward` for a call whose gates nothing will read; this engine keeps them
    anyway (the compiled engine's stores nothing per step)."""
    return lstm_forward(x, h0, c0, w, lengths)


def lstm_outputs(
    x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
) -> LSTMForward:
    """:func:`lstm_forward`'s result built from stacked steps instead of written into buffers,
    so that autograd can differentiate it (twice if asked: the double backward of
    :mod:`longshort.engine.eager`) and every ``torch.func`` transform can run it."""
    xw = _input_projection(x, w.w_ih, w.b_ih, w.b_hh)
    mask = step_mask(lengths, x.shape[0])
    h, c, outs, gates, cs = h0, c0, [], [], [c0]
    for t in range(x.shape[0]):
        g, c_new, h_new = lstm_cell.forward_step(xw[t], h, c, w.w_hh, w.w_hr)
        if mask is not None:
            c, h = torch.where(mask[t], c_new, c), torch.where(mask[t], h_new, h)
            outs.append(torch.where(mask[t], h_new, 0))
        else:
            c, h = c_new, h_new
            outs.append(h)
        gates.append(g)
        cs.append(c)
    return LSTMForward(torch.stack(outs), h, c, torch.stack(gates), torch.stack(cs))


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
    """BPTT for :func:`lstm_forward`: see :class:`longshort.engine.types.LSTMGrads` (dx is
    computed whatever need_dx says: the reference keeps one path)."""
    steps = x.shape[0]
    w_hh, w_hr = w.w_hh, w.w_hr
    out, gates, cs = saved.out, saved.gates, saved.cs
    mask = step_mask(lengths, steps)
    dz = torch.empty_like(gates)
    norms = x.new_empty(steps, x.shape[1], 2)
    dh_all = torch.empty_like(out) if w_hr is not None else None
    dh, dc = d_hn, d_cn
    for t in reversed(range(steps)):
        dh_t = dh + d_out[t]
        if mask is not None:
            dh_t = torch.where(mask[t], dh_t, 0)
        dz_t, dh_prev, dc_prev, dc_t = lstm_cell.backward_step(
            dh_t, dc, gates[t], cs[t], cs[t + 1], w_hh, w_hr
        )
        norms[t, :, 0] = dh_t.norm(dim=1)
        norms[t, :, 1] = dc_t.norm(dim=1)
        if mask is not None:  # padding: the gradient passes the step untouched
            dz_t = torch.where(mask[t], dz_t, 0)
            dh_prev = torch.where(mask[t], dh_prev, dh)
            dc_prev = torch.where(mask[t], dc_prev, dc)
        dz[t] = dz_t
        if dh_all is not None:
            dh_all[t] = dh_t
        dh, dc = dh_prev, dc_prev
    h_prev = torch.cat((h0[None], out[:-1]))  # h_{t-1} for every t
    dw_ih, dw_hh, db = _weight_grads(dz, x, h_prev)
    dw_hr = None
    if dh_all is not None:
        o = gates.chunk(4, dim=2)[3]
        m = o * torch.tanh(cs[1:])  # the unprojected hidden state, recomputed
        dw_hr = dh_all.flatten(0, 1).T @ m.flatten(0, 1)
    if mask is not None:
        norms[:, :, 1:] = torch.where(mask, norms[:, :, 1:], 0)
    return LSTMGrads(dz @ w.w_ih, dh, dc, dw_ih, dw_hh, db, dw_hr, norms)


def rnn_forward(
    x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
) -> RNNForward:
    """x (T, B, I), h0 (B, H): see :class:`longshort.engine.types.RNNForward`."""
    steps = x.shape[0]
    w_hh = w.w_hh
    xw = _input_projection(x, w.w_ih, w.b_ih, w.b_hh)
    mask = step_mask(lengths, steps)
    hs = torch.empty_like(xw)
    h = h0
    for t in range(steps):
        hs[t] = h_new = rnn_cell.forward_step(xw[t], h, w_hh, nonlinearity)
        h = torch.where(mask[t], h_new, h) if mask is not None else h_new
    out = hs if mask is None else torch.where(mask, hs, 0)
    return RNNForward(out.clone() if mask is None else out, h.clone(), hs)


def _h_outputs(
    step, xw: Tensor, h0: Tensor, lengths: Tensor | None, carried: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """out, h_n, the states of every step and the stacked second results of step, for a cell
    whose only state is h: step(xw_t, h) -> (h_t, extra or None), without writing into buffers
    (see :func:`lstm_outputs`). The states are each step's new h, or with carried=True the h
    carried on (unchanged over padding)."""
    mask = step_mask(lengths, xw.shape[0])
    h, outs, hs, extras = h0, [], [], []
    for t in range(xw.shape[0]):
        h_new, extra = step(xw[t], h)
        extras.append(extra)
        if mask is not None:
            h = torch.where(mask[t], h_new, h)
            outs.append(torch.where(mask[t], h_new, 0))
        else:
            h = h_new
            outs.append(h)
        hs.append(h if carried else h_new)
    stacked = None if extras[0] is None else torch.stack(extras)
    return torch.stack(outs), h, torch.stack(hs), stacked


def rnn_outputs(
    x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
) -> RNNForward:
    """:func:`rnn_forward`'s result from stacked steps (see :func:`lstm_outputs`)."""
    xw = _input_projection(x, w.w_ih, w.b_ih, w.b_hh)
    out, h_n, hs, _ = _h_outputs(
        lambda xw_t, h: (rnn_cell.forward_step(xw_t, h, w.w_hh, nonlinearity), None),
        xw, h0, lengths, carried=False,
    )  # fmt: skip
    return RNNForward(out, h_n, hs)


def rnn_backward(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: RNNWeights,
    lengths: Tensor | None,
    saved: RNNForward,
    nonlinearity: str,
) -> RNNGrads:
    """BPTT for :func:`rnn_forward`: see :class:`longshort.engine.types.RNNGrads`."""
    steps = x.shape[0]
    w_hh, hs = w.w_hh, saved.hs
    mask = step_mask(lengths, steps)
    da = torch.empty_like(hs)
    norms = x.new_empty(steps, x.shape[1], 1)
    dh = d_hn
    for t in reversed(range(steps)):
        dh_t = dh + d_out[t]
        if mask is not None:
            dh_t = torch.where(mask[t], dh_t, 0)
        norms[t, :, 0] = dh_t.norm(dim=1)
        da_t, dh_prev = rnn_cell.backward_step(dh_t, hs[t], w_hh, nonlinearity)
        if mask is not None:
            da_t = torch.where(mask[t], da_t, 0)
            dh_prev = torch.where(mask[t], dh_prev, dh)
        da[t] = da_t
        dh = dh_prev
    h_prev = torch.cat((h0[None], hs[:-1]))
    dw_ih, dw_hh, db = _weight_grads(da, x, h_prev)
    return RNNGrads(da @ w.w_ih, dh, dw_ih, dw_hh, db, norms)


def gru_forward(x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None) -> GRUForward:
    """x (T, B, I), h0 (B, H): see :class:`longshort.engine.types.GRUForward`."""
    steps = x.shape[0]
    xw = _input_projection(x, w.w_ih, w.b_ih, None)  # b_hh stays inside: r scales W_hn h + b_hn
    mask = step_mask(lengths, steps)
    gates = x.new_empty(steps, x.shape[1], 4 * h0.shape[1])
    hs = x.new_empty(steps, *h0.shape)
    h = h0
    for t in range(steps):
        gates[t], h_new = gru_cell.forward_step(xw[t], h, w.w_hh, w.b_hh)
        h = torch.where(mask[t], h_new, h) if mask is not None else h_new
        hs[t] = h
    out = hs.clone() if mask is None else torch.where(mask, hs, 0)
    return GRUForward(out, h.clone(), gates, hs)


def gru_outputs(x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None) -> GRUForward:
    """:func:`gru_forward`'s result from stacked steps (see :func:`lstm_outputs`)."""
    xw = _input_projection(x, w.w_ih, w.b_ih, None)
    out, h_n, hs, gates = _h_outputs(
        lambda xw_t, h: gru_cell.forward_step(xw_t, h, w.w_hh, w.b_hh)[::-1],
        xw, h0, lengths, carried=True,
    )  # fmt: skip
    assert gates is not None  # the GRU's step returns its gates
    return GRUForward(out, h_n, gates, hs)


def gru_backward(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w: GRUWeights,
    lengths: Tensor | None,
    saved: GRUForward,
) -> GRUGrads:
    """BPTT for :func:`gru_forward`: see :class:`longshort.engine.types.GRUGrads`."""
    steps = x.shape[0]
    mask = step_mask(lengths, steps)
    gates, hs = saved.gates, saved.hs
    h_prev = torch.cat((h0[None], hs[:-1]))  # h_{t-1} for every t
    dgi = x.new_empty(steps, x.shape[1], gates.shape[2] * 3 // 4)
    dgh = torch.empty_like(dgi)
    norms = x.new_empty(steps, x.shape[1], 1)
    dh = d_hn
    for t in reversed(range(steps)):
        dh_t = dh + d_out[t]
        if mask is not None:
            dh_t = torch.where(mask[t], dh_t, 0)
        norms[t, :, 0] = dh_t.norm(dim=1)
        dgi_t, dgh_t, dh_prev = gru_cell.backward_step(dh_t, gates[t], h_prev[t], w.w_hh)
        if mask is not None:  # padding: the gradient passes the step untouched
            dgi_t, dgh_t = torch.where(mask[t], dgi_t, 0), torch.where(mask[t], dgh_t, 0)
            dh_prev = torch.where(mask[t], dh_prev, dh)
        dgi[t], dgh[t] = dgi_t, dgh_t
        dh = dh_prev
    dgi2, dgh2 = dgi.flatten(0, 1), dgh.flatten(0, 1)
    dw_ih = dgi2.T @ x.flatten(0, 1)
    dw_hh = dgh2.T @ h_prev.flatten(0, 1)
    return GRUGrads(dgi @ w.w_ih, dh, dw_ih, dw_hh, dgi2.sum(0), dgh2.sum(0), norms)


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
    """The loop of a variant layer: see :class:`longshort.engine.types.VariantForward`. The
    reference returns every step's gates and states whatever keep says; part is unused
    (normalises_input is False)."""
    steps, batch, _ = xa.shape
    mask = step_mask(lengths, steps)
    out = xa.new_empty(steps, batch, h0.shape[1])
    gates = torch.empty_like(xa)
    rec = torch.empty_like(xa) if v.layer_norm else xa.new_empty(0)
    cs = xa.new_empty(steps + 1, batch, c0.shape[1])
    cs[0] = c0
    h = h0
    for t in range(steps):
        gates[t], c, h_new, r = variant_cell.forward_step(xa[t], h, cs[t], w, v, masks.at(t))
        if v.layer_norm:
            rec[t] = r
        if mask is not None:
            c = torch.where(mask[t], c, cs[t])  # padding: carry the state unchanged
            out[t] = torch.where(mask[t], h_new, 0)
            h = torch.where(mask[t], h_new, h)
        else:
            out[t] = h = h_new
        cs[t + 1] = c
    return VariantForward(out, h.clone(), cs[steps].clone(), gates, cs, rec)


def variant_outputs(
    xa: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
) -> VariantForward:
    """:func:`variant_forward`'s result from stacked steps (see :func:`lstm_outputs`); rec is
    left empty."""
    mask = step_mask(lengths, xa.shape[0])
    h, c, outs, gates, cs = h0, c0, [], [], [c0]
    for t in range(xa.shape[0]):
        g, c_new, h_new, _ = variant_cell.forward_step(xa[t], h, c, w, v, masks.at(t))
        if mask is not None:
            c, h = torch.where(mask[t], c_new, c), torch.where(mask[t], h_new, h)
            outs.append(torch.where(mask[t], h_new, 0))
        else:
            c, h = c_new, h_new
            outs.append(h)
        gates.append(g)
        cs.append(c)
    out, empty = torch.stack(outs), xa.new_empty(0)
    return VariantForward(out, h, c, torch.stack(gates), torch.stack(cs), empty)


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
    """BPTT of :func:`variant_forward`: see :class:`longshort.engine.types.VariantLoopGrads`
    (part unused, as in :func:`variant_forward`)."""
    gates, cs, rec = saved.gates, saved.cs, saved.rec
    steps, batch, _ = gates.shape
    mask = step_mask(lengths, steps)
    da = torch.empty_like(gates)
    dr = torch.empty_like(gates) if v.layer_norm else da
    dn = torch.empty_like(cs[1:]) if v.layer_norm else None  # dL/dLN(C'_t)
    dhp = torch.empty_like(saved.out) if w.w_hr is not None else None
    norms = gates.new_empty(steps, batch, 2)
    dh, dc = d_hn, d_cn
    for t in reversed(range(steps)):
        dh_t = dh + d_out[t]
        if mask is not None:
            dh_t = torch.where(mask[t], dh_t, 0)
        r = rec[t] if v.layer_norm else None
        da_t, dr_t, dn_t, dhp_t, dh_prev, dc_prev, dc_t = variant_cell.backward_step(
            dh_t, dc, gates[t], cs[t], r, w, v, masks.at(t)
        )
        norms[t, :, 0] = dh_t.norm(dim=1)
        norms[t, :, 1] = dc_t.norm(dim=1)
        if mask is not None:  # padding: the gradient passes the step untouched
            da_t, dr_t = torch.where(mask[t], da_t, 0), torch.where(mask[t], dr_t, 0)
            dn_t = None if dn_t is None else torch.where(mask[t], dn_t, 0)
            dh_prev = torch.where(mask[t], dh_prev, dh)
            dc_prev = torch.where(mask[t], dc_prev, dc)
            norms[t, :, 1:] = torch.where(mask[t], norms[t, :, 1:], 0)
        da[t], dr[t] = da_t, dr_t
        if dn is not None and dn_t is not None:
            dn[t] = dn_t
        if dhp is not None:
            dhp[t] = dhp_t
        dh, dc = dh_prev, dc_prev
    grads = VariantLoopGrads(da, dr, dhp, dh, dc, norms)
    return grads._replace(**_variant_param_grads(da, dn, saved, v))


def _variant_param_grads(
    da: Tensor, dn: Tensor | None, saved: VariantForward, v: LSTMVariant
) -> dict[str, Tensor]:
    """The peepholes' and the loop's layer-norm gains' gradients, summed over steps and rows."""
    grads, rows = {}, (0, 1)
    c_prev, c_new = saved.cs[:-1], variant_cell.new_cells(saved.gates, saved.cs[:-1], v)
    if v.peephole:  # Σ da_i ⊙ C_{t-1}, Σ da_f ⊙ C_{t-1}, Σ da_o ⊙ C'_t
        dai, daf, _, dao = variant_cell.split(da, v)
        parts = [(d * c_prev).sum(rows) for d in (dai, daf) if d is not None]
        grads["w_ch"] = torch.cat((*parts, (dao * c_new).sum(rows)))
    if v.layer_norm:
        assert dn is not None, "layer norm's BPTT keeps dL/dn"
        grads["ln_hh"] = (da * variant_cell.normalise(saved.rec)[0]).sum(rows)
        grads["ln_c_w"] = (dn * variant_cell.normalise(c_new)[0]).sum(rows)
        grads["ln_c_b"] = dn.sum(rows)
    return grads
