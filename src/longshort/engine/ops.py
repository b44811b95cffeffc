"""The engine as PyTorch custom operators (``torch.library``), with the handwritten BPTT as
their registered backward.

Registering the sequence loops as opaque operators lets ``torch.compile`` trace a model through
the LSTM without a graph break, and lets autograd, optimizers, gradient clipping and DDP treat
the layer like any other op. The default kernel is the reference engine (any device); CPU
tensors go to the compiled kernels of :mod:`longshort.engine.cpu` when they support the dtype:
:mod:`longshort.engine.dispatch` decides. The ops take and return plain tensors, the fields of
the named tuples of :mod:`longshort.engine.types`, in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from longshort.engine import calls, dispatch, variant
from longshort.engine.types import (
    GRUWeights,
    LSTMForward,
    LSTMVariant,
    LSTMWeights,
    RNNWeights,
    VariantForward,
    VariantMasks,
    VariantWeights,
)

_EMPTY = (0,)


@torch.library.custom_op("longshort::lstm_fwd", mutates_args=())
def lstm_fwd(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    segment: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.LSTMForward`. With segment S > 0
    (recompute in segments), gates is (0, B, 4H) and cs holds the segment starts
    (ceil(T/S), B, P + H)."""
    w = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)
    return calls.lstm_forward(x, h0, c0, w, lengths, segment)[1]


@lstm_fwd.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment=0):
    steps, batch = x.shape[0], x.shape[1]
    hidden = c0.shape[1]
    common = (
        x.new_empty(steps, batch, h0.shape[1]),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
    )
    if segment > 0:
        starts = (steps + segment - 1) // segment
        return (
            *common,
            x.new_empty(0, batch, 4 * hidden),
            x.new_empty(starts, batch, h0.shape[1] + hidden),
        )
    saved = dispatch.lstm_engine(x, LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)).saved_dtype(x)
    return (
        *common,
        x.new_empty(steps, batch, 4 * hidden, dtype=saved),
        x.new_empty(steps + 1, batch, hidden, dtype=saved),
    )


@torch.library.custom_op("longshort::lstm_bwd", mutates_args=())
def lstm_bwd(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    out: Tensor,
    gates: Tensor,
    cs: Tensor,
    segment: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.LSTMGrads`, dw_hr empty (0,) when there
    is no projection. With segment S > 0, cs holds the segment starts and each segment is
    recomputed (the biases are needed for that)."""
    w = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)
    saved = LSTMForward(out, d_hn, d_cn, gates, cs)  # h_n, c_n are not read by BPTT
    g = calls.lstm_backward(None, segment, (d_out, d_hn, d_cn), x, h0, w, lengths, saved)
    dw_hr = x.new_empty(_EMPTY) if g.dw_hr is None else g.dw_hr
    assert g.dx is not None  # need_dx left True: an op returns every gradient
    return g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, g.db, dw_hr, g.norms


@lstm_bwd.register_fake
def _(d_out, d_hn, d_cn, x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cs, segment=0):
    return (
        x.new_empty(x.shape),
        h0.new_empty(h0.shape),
        d_cn.new_empty(d_cn.shape),
        w_ih.new_empty(w_ih.shape),
        w_hh.new_empty(w_hh.shape),
        x.new_empty(w_ih.shape[0]),
        w_hr.new_empty(w_hr.shape) if w_hr is not None else x.new_empty(_EMPTY),
        x.new_empty(x.shape[0], x.shape[1], 2),
    )


def _lstm_setup(ctx, inputs: Sequence, output: Sequence) -> None:
    x, h0, _c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment = inputs
    out, _h_n, _c_n, gates, cs = output
    ctx.mark_non_differentiable(gates, cs)
    ctx.has_bias, ctx.has_proj, ctx.segment = b_ih is not None, w_hr is not None, segment
    ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cs)


def _lstm_backward(ctx, d_out, d_hn, d_cn, _d_gates, _d_cs):
    x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cs = ctx.saved_tensors
    g = lstm_bwd(
        _or_zeros(d_out, out),
        _or_zeros(d_hn, h0),
        _or_zeros(d_cn, x.new_empty(x.shape[1], w_ih.shape[0] // 4)),
        x,
        h0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        w_hr,
        lengths,
        out,
        gates,
        cs,
        ctx.segment,
    )
    dx, dh0, dc0, dw_ih, dw_hh, db, dw_hr, _norms = g  # recorded by calls.lstm_backward
    db_ih, db_hh = (db, db) if ctx.has_bias else (None, None)
    dw_hr = dw_hr if ctx.has_proj else None
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, None, None


lstm_fwd.register_autograd(_lstm_backward, setup_context=_lstm_setup)


@torch.library.custom_op("longshort::rnn_fwd", mutates_args=())
def rnn_fwd(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    nonlinearity: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.RNNForward`."""
    w = RNNWeights(w_ih, w_hh, b_ih, b_hh)
    return calls.rnn_forward(x, h0, w, lengths, nonlinearity)[1]


@rnn_fwd.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity):
    shape = (x.shape[0], x.shape[1], h0.shape[1])
    return x.new_empty(shape), h0.new_empty(h0.shape), x.new_empty(shape)


@torch.library.custom_op("longshort::rnn_bwd", mutates_args=())
def rnn_bwd(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    hs: Tensor,
    nonlinearity: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.RNNGrads`."""
    w = RNNWeights(w_ih, w_hh)
    return calls.rnn_backward(None, (d_out, d_hn), x, h0, w, lengths, hs, nonlinearity)


@rnn_bwd.register_fake
def _(d_out, d_hn, x, h0, w_ih, w_hh, lengths, hs, nonlinearity):
    return (
        x.new_empty(x.shape),
        h0.new_empty(h0.shape),
        w_ih.new_empty(w_ih.shape),
        w_hh.new_empty(w_hh.shape),
        x.new_empty(w_hh.shape[0]),
        x.new_empty(x.shape[0], x.shape[1], 1),
    )


def _rnn_setup(ctx, inputs: Sequence, output: Sequence) -> None:
    x, h0, w_ih, w_hh, b_ih, _b_hh, lengths, nonlinearity = inputs
    _out, _h_n, hs = output
    ctx.mark_non_differentiable(hs)
    ctx.has_bias, ctx.nonlinearity = b_ih is not None, nonlinearity
    ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, hs)


def _rnn_backward(ctx, d_out, d_hn, _d_hs):
    x, h0, w_ih, w_hh, lengths, hs = ctx.saved_tensors
    dx, dh0, dw_ih, dw_hh, db, _norms = rnn_bwd(  # the norms recorded by calls.rnn_backward
        _or_zeros(d_out, hs),
        _or_zeros(d_hn, h0),
        x,
        h0,
        w_ih,
        w_hh,
        lengths,
        hs,
        ctx.nonlinearity,
    )
    db_ih, db_hh = (db, db) if ctx.has_bias else (None, None)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None, None


rnn_fwd.register_autograd(_rnn_backward, setup_context=_rnn_setup)


@torch.library.custom_op("longshort::gru_fwd", mutates_args=())
def gru_fwd(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.GRUForward`."""
    w = GRUWeights(w_ih, w_hh, b_ih, b_hh)
    return calls.gru_forward(x, h0, w, lengths)[1]


@gru_fwd.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    steps, batch, hidden = x.shape[0], x.shape[1], h0.shape[1]
    shape = (steps, batch, hidden)
    return (
        x.new_empty(shape),
        h0.new_empty(h0.shape),
        x.new_empty(steps, batch, 4 * hidden),
        x.new_empty(shape),
    )


@torch.library.custom_op("longshort::gru_bwd", mutates_args=())
def gru_bwd(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    gates: Tensor,
    hs: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fields of :class:`~longshort.engine.types.GRUGrads`."""
    w = GRUWeights(w_ih, w_hh)
    return calls.gru_backward(None, (d_out, d_hn), x, h0, w, lengths, gates, hs)


@gru_bwd.register_fake
def _(d_out, d_hn, x, h0, w_ih, w_hh, lengths, gates, hs):
    return (
        x.new_empty(x.shape),
        h0.new_empty(h0.shape),
        w_ih.new_empty(w_ih.shape),
        w_hh.new_empty(w_hh.shape),
        x.new_empty(w_hh.shape[0]),
        x.new_empty(w_hh.shape[0]),
        x.new_empty(x.shape[0], x.shape[1], 1),
    )


def _gru_setup(ctx, inputs: Sequence, output: Sequence) -> None:
    x, h0, w_ih, w_hh, b_ih, _b_hh, lengths = inputs
    _out, _h_n, gates, hs = output
    ctx.mark_non_differentiable(gates, hs)
    ctx.has_bias = b_ih is not None
    ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, gates, hs)


def _gru_backward(ctx, d_out, d_hn, _d_gates, _d_hs):
    x, h0, w_ih, w_hh, lengths, gates, hs = ctx.saved_tensors
    g = gru_bwd(_or_zeros(d_out, hs), _or_zeros(d_hn, h0), x, h0, w_ih, w_hh, lengths, gates, hs)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh, _norms = g  # recorded by calls.gru_backward
    if not ctx.has_bias:
        db_ih = db_hh = None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


gru_fwd.register_autograd(_gru_backward, setup_context=_gru_setup)


# torch.autocast("cpu", dtype=torch.bfloat16) runs the layers in bfloat16: on the compiled
# engine, bf16 products with float32 state (longshort.engine.cpu).
torch.library.register_autocast(lstm_fwd, "cpu", torch.bfloat16)
torch.library.register_autocast(rnn_fwd, "cpu", torch.bfloat16)
torch.library.register_autocast(gru_fwd, "cpu", torch.bfloat16)


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


@torch.library.custom_op(
    "longshort::bernoulli", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def bernoulli(like: Tensor, shape: Sequence[int], p: float, draw: int) -> Tensor:
    """:func:`longshort.engine.bernoulli` as an opaque op for torch.compile's graphs, drawn
    when the graph runs (the draws eager makes for the same seed). Tagged as seeded random;
    draw, which mask of a call this is, keeps the graph's common-subexpression pass from
    merging two alike draws (the tag alone did not)."""
    return calls.bernoulli(shape, p, like)


@bernoulli.register_fake
def _(like, shape, p, draw):
    return like.new_empty(shape)


# The LSTM's variants: the flags as four bools, the weights and masks as optional tensors.
@torch.library.custom_op("longshort::variant_fwd", mutates_args=())
def variant_fwd(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    zone_c: Tensor | None,
    zone_h: Tensor | None,
    keep: Tensor | None,
    lengths: Tensor | None,
    segment: int,
    forget_gate: bool,
    peephole: bool,
    coupled: bool,
    layer_norm: bool,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    w_ch: Tensor | None,
    ln_ih: Tensor | None,
    ln_hh: Tensor | None,
    ln_c_w: Tensor | None,
    ln_c_b: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """out, h_n, c_n, gates, cs, rec and the input part's wx, mean, rstd (empty (0,) where a
    variant has none); the arguments are the fields of VariantMasks, LSTMVariant and
    VariantWeights."""
    v = LSTMVariant(forget_gate, peephole, coupled, layer_norm)
    w = VariantWeights(w_ih, w_hh, b_ih, b_hh, w_hr, w_ch, ln_ih, ln_hh, ln_c_w, ln_c_b)
    masks = VariantMasks(zone_c, zone_h, keep)
    _, res, part = calls.variant_forward(x, h0, c0, w, v, masks, lengths, segment)
    return _distinct((*res, *part), (x, h0, c0))


@variant_fwd.register_fake
def _(x, h0, c0, zone_c, zone_h, keep, lengths, segment, forget_gate, peephole, coupled,
      layer_norm, w_ih, *_weights):  # fmt: skip
    steps, batch = x.shape[0], x.shape[1]
    hidden, rows = c0.shape[1], w_ih.shape[0]
    empty = x.new_empty(_EMPTY)
    common = (
        x.new_empty(steps, batch, h0.shape[1]),
        h0.new_empty(h0.shape),
        c0.new_empty(c0.shape),
    )
    if segment > 0:
        starts = x.new_empty((steps + segment - 1) // segment, batch, h0.shape[1] + hidden)
        return (*common, empty, starts, empty, empty, empty, empty)
    gates, cs = x.new_empty(steps, batch, rows), x.new_empty(steps + 1, batch, hidden)
    if not layer_norm:
        return (*common, gates, cs, empty, empty, empty, empty)
    stats = (x.new_empty(steps, batch, 1), x.new_empty(steps, batch, 1))
    grid = (x.new_empty(steps, batch, rows), x.new_empty(steps, batch, rows))
    return (*common, gates, cs, grid[0], grid[1], *stats)


@torch.library.custom_op("longshort::variant_bwd", mutates_args=())
def variant_bwd(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    zone_c: Tensor | None,
    zone_h: Tensor | None,
    keep: Tensor | None,
    lengths: Tensor | None,
    segment: int,
    forget_gate: bool,
    peephole: bool,
    coupled: bool,
    layer_norm: bool,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    w_ch: Tensor | None,
    ln_ih: Tensor | None,
    ln_hh: Tensor | None,
    ln_c_w: Tensor | None,
    ln_c_b: Tensor | None,
    out: Tensor,
    gates: Tensor,
    cs: Tensor,
    rec: Tensor,
    wx: Tensor,
    mean: Tensor,
    rstd: Tensor,
) -> tuple[
    Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
    Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
]:  # fmt: skip
    """dx, dh0, dc0, the norms, then the gradients of the ten weights (empty (0,) where a
    weight is absent)."""
    v = LSTMVariant(forget_gate, peephole, coupled, layer_norm)
    w = VariantWeights(w_ih, w_hh, b_ih, b_hh, w_hr, w_ch, ln_ih, ln_hh, ln_c_w, ln_c_b)
    masks = VariantMasks(zone_c, zone_h, keep)
    res = VariantForward(out, d_hn, d_cn, gates, cs, rec)  # h_n, c_n are not read
    part = variant.InputPart(wx, mean, rstd)
    g = calls.variant_backward(
        None, segment, (d_out, d_hn, d_cn), x, h0, w, v, masks, lengths, res, part
    )
    grads = [x.new_empty(_EMPTY) if t is None else t for t in g.weights]
    return _distinct((g.dx, g.dh0, g.dc0, g.norms, *grads), (d_out, d_hn, d_cn))


def _distinct(outputs: tuple, inputs: tuple) -> tuple:
    """outputs, each with storage of its own (a custom op's outputs may not alias each other or
    its inputs: the biases' two gradients are one tensor, the layer norm's gain and bias of the
    cell two rows of one)."""
    seen = {id(t) for t in inputs} | {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    result = []
    for t in outputs:
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if id(t) in seen or ptr in seen or t._base is not None:
            t = t.clone()
            ptr = t.untyped_storage().data_ptr() if t.numel() else None
        seen |= {id(t), ptr} - {None}
        result.append(t)
    return tuple(result)


@variant_bwd.register_fake
def _(d_out, d_hn, d_cn, x, h0, zone_c, zone_h, keep, lengths, segment, forget_gate, peephole,
      coupled, layer_norm, *rest):  # fmt: skip
    weights = rest[:10]
    grads = [x.new_empty(_EMPTY) if t is None else t.new_empty(t.shape) for t in weights]
    norms = x.new_empty(x.shape[0], x.shape[1], 2)
    return (x.new_empty(x.shape), h0.new_empty(h0.shape), d_cn.new_empty(d_cn.shape), norms,
            *grads)  # fmt: skip


def _variant_setup(ctx, inputs: Sequence, output: Sequence) -> None:
    x, h0, c0, zone_c, zone_h, keep, lengths, segment, *flags = inputs[:12]
    weights = inputs[12:]
    out, _h_n, _c_n, gates, cs, rec, wx, mean, rstd = output
    ctx.mark_non_differentiable(gates, cs, rec, wx, mean, rstd)
    ctx.segment, ctx.flags = segment, flags
    ctx.save_for_backward(
        x, h0, c0, zone_c, zone_h, keep, lengths, *weights, out, gates, cs, rec, wx, mean, rstd
    )


def _variant_backward(ctx, d_out, d_hn, d_cn, *_unused):
    x, h0, c0, zone_c, zone_h, keep, lengths, *rest = ctx.saved_tensors
    weights, saved = rest[:10], rest[10:]
    dx, dh0, dc0, _norms, *grads = variant_bwd(
        _or_zeros(d_out, saved[0]),
        _or_zeros(d_hn, h0),
        _or_zeros(d_cn, c0),
        x,
        h0,
        zone_c,
        zone_h,
        keep,
        lengths,
        ctx.segment,
        *ctx.flags,
        *weights,
        *saved,
    )  # fmt: skip  (the norms recorded by calls.variant_backward)
    grads = [g if w is not None else None for g, w in zip(grads, weights, strict=True)]
    return (dx, dh0, dc0, *[None] * 9, *grads)


variant_fwd.register_autograd(_variant_backward, setup_context=_variant_setup)
