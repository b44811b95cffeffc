"""One step of a cell, for ``LSTMCell`` and ``RNNCell`` called in a hand-written loop.

Such a loop pays a cell's per-call overhead at every step, so eager calls skip the custom
operators' dispatch (about 30 us a call) and run the same engine through a plain
``torch.autograd.Function`` with the handwritten backward. While ``torch.compile`` traces, the
custom operators of :mod:`longshort.engine.ops` run instead, so the graph stays whole.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from longshort.engine import dispatch, gradient_norms, ops
from longshort.engine.types import LSTMForward, LSTMWeights, RNNForward, RNNWeights


class _LSTMStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh)
        xs = x[None]
        engine = dispatch.lstm_engine(xs, w)
        saved = engine.lstm_forward(xs, h0, c0, w, None)
        ctx.engine, ctx.has_bias = engine, b_ih is not None
        ctx.save_for_backward(xs, h0, w_ih, w_hh, b_ih, b_hh, saved.out, saved.gates, saved.cs)
        return saved.h_n, saved.c_n

    @staticmethod
    @once_differentiable  # the handwritten BPTT has no derivative of its own
    def backward(ctx, dh, dc):
        xs, h0, w_ih, w_hh, b_ih, b_hh, out, gates, cs = ctx.saved_tensors
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh)
        saved = LSTMForward(out, dh, dc, gates, cs)  # h_n, c_n are not read by BPTT
        d_out = torch.zeros_like(out)  # the step's gradient arrives through h_n
        g = ctx.engine.lstm_backward(d_out, dh, dc, xs, h0, w, None, saved)
        gradient_norms.record("lstm", g.norms)
        db = g.db if ctx.has_bias else None
        return g.dx[0], g.dh0, g.dc0, g.dw_ih, g.dw_hh, db, db


class _RNNStep(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity):
        w = RNNWeights(w_ih, w_hh, b_ih, b_hh)
        xs = x[None]
        engine = dispatch.rnn_engine(xs)
        saved = engine.rnn_forward(xs, h0, w, None, nonlinearity)
        ctx.engine, ctx.has_bias, ctx.nonlinearity = engine, b_ih is not None, nonlinearity
        ctx.save_for_backward(xs, h0, w_ih, w_hh, saved.hs)
        return saved.h_n

    @staticmethod
    @once_differentiable
    def backward(ctx, dh):
        xs, h0, w_ih, w_hh, hs = ctx.saved_tensors
        saved = RNNForward(hs, dh, hs)
        g = ctx.engine.rnn_backward(
            torch.zeros_like(hs), dh, xs, h0, RNNWeights(w_ih, w_hh), None, saved, ctx.nonlinearity
        )
        gradient_norms.record("rnn", g.norms)
        db = g.db if ctx.has_bias else None
        return g.dx[0], g.dh0, g.dw_ih, g.dw_hh, db, db, None


def lstm_step(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """x (B, I), h0 (B, H), c0 (B, H); weights as :class:`LSTMWeights`. Returns (h_1, c_1)."""
    if torch.compiler.is_compiling():
        out = ops.lstm_fwd(x[None], h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, 0)
        return out[1], out[2]
    return _LSTMStep.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh)


def rnn_step(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    nonlinearity: str,
) -> Tensor:
    """x (B, I), h0 (B, H). Returns h_1 (B, H)."""
    if torch.compiler.is_compiling():
        return ops.rnn_fwd(x[None], h0, w_ih, w_hh, b_ih, b_hh, None, nonlinearity)[1]
    return _RNNStep.apply(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity)
