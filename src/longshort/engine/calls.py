"""One call of a layer's engine each way: what the eager ``autograd.Function``s
(:mod:`.eager`) and the custom operators (:mod:`.ops`) both run.

A forward chooses the engine (:mod:`.dispatch`), then runs the plain loop, the no-grad loop or
the segmented one (:mod:`.segmented`, recomputation in segments); a backward runs the matching
BPTT and hands the per-step gradient norms to :mod:`.gradient_norms`. The eager path keeps the
forward's engine for the backward; the custom operators, which cannot carry it, ask
:mod:`.dispatch` again (it answers the same for the same tensors).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Sequence

import torch
from torch import Tensor

from longshort.engine import dispatch, gradient_norms, segmented, variant
from longshort.engine.types import (
    Engine,
    GRUForward,
    GRUGrads,
    GRUWeights,
    LSTMForward,
    LSTMGrads,
    LSTMVariant,
    LSTMWeights,
    RNNForward,
    RNNGrads,
    RNNWeights,
    VariantForward,
    VariantGrads,
    VariantMasks,
    VariantWeights,
)


def lstm_forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
    segment: int = 0,
    keep: bool = True,
) -> tuple[Engine, LSTMForward]:
    """The engine chosen for (x, w) and its forward; keep=False when nothing will read the
    gates (no BPTT, no trace): the engine's no-grad loop, which may return them empty."""
    engine = dispatch.lstm_engine(x, w)
    if segment > 0:
        return engine, segmented.lstm_forward(engine, segment, x, h0, c0, w, lengths)
    if keep:
        return engine, engine.lstm_forward(x, h0, c0, w, lengths)
    return engine, engine.lstm_infer(x, h0, c0, w, lengths)


def lstm_backward(
    engine: Engine | None,
    segment: int,
    grads_out: tuple[Tensor, Tensor, Tensor],
    x: Tensor,
    h0: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
    saved: LSTMForward,
    need_dx: bool = True,
) -> LSTMGrads:
    """BPTT of :func:`lstm_forward` (engine None: the one dispatch chooses); grads_out =
    (d_out, d_hn, d_cn); saved: the forward's out, gates and cs (its h_n, c_n are not read).
    need_dx=False: dx may come back None (the input needs no gradient)."""
    engine = engine or dispatch.lstm_engine(x, w)
    d_out, d_hn, d_cn = grads_out
    if segment > 0:
        g = segmented.lstm_backward(engine, segment, d_out, d_hn, d_cn, x, w, lengths, saved.cs)
    else:
        g = engine.lstm_backward(d_out, d_hn, d_cn, x, h0, w, lengths, saved, need_dx)
    gradient_norms.record("lstm", g.norms)
    return g


def rnn_forward(
    x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
) -> tuple[Engine, RNNForward]:
    engine = dispatch.rnn_engine(x)
    return engine, engine.rnn_forward(x, h0, w, lengths, nonlinearity)


def rnn_backward(
    engine: Engine | None,
    grads_out: tuple[Tensor, Tensor],
    x: Tensor,
    h0: Tensor,
    w: RNNWeights,
    lengths: Tensor | None,
    hs: Tensor,
    nonlinearity: str,
) -> RNNGrads:
    """BPTT of :func:`rnn_forward`; grads_out = (d_out, d_hn); hs: the forward's states."""
    engine = engine or dispatch.rnn_engine(x)
    d_out, d_hn = grads_out
    saved = RNNForward(hs, d_hn, hs)  # only hs is read by BPTT
    g = engine.rnn_backward(d_out, d_hn, x, h0, w, lengths, saved, nonlinearity)
    gradient_norms.record("rnn", g.norms)
    return g


def gru_forward(
    x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None
) -> tuple[Engine, GRUForward]:
    engine = dispatch.gru_engine(x)
    return engine, engine.gru_forward(x, h0, w, lengths)


def gru_backward(
    engine: Engine | None,
    grads_out: tuple[Tensor, Tensor],
    x: Tensor,
    h0: Tensor,
    w: GRUWeights,
    lengths: Tensor | None,
    gates: Tensor,
    hs: Tensor,
) -> GRUGrads:
    """BPTT of :func:`gru_forward`; grads_out = (d_out, d_hn); the forward's gates and hs."""
    engine = engine or dispatch.gru_engine(x)
    d_out, d_hn = grads_out
    saved = GRUForward(hs, d_hn, gates, hs)  # out and h_n are not read by BPTT
    g = engine.gru_backward(d_out, d_hn, x, h0, w, lengths, saved)
    gradient_norms.record("gru", g.norms)
    return g


@functools.cache
def _random() -> types.ModuleType:
    """The compiled engine's generator, imported at its first use (an import statement in a
    call costs microseconds, and a cell draws its masks at every step)."""
    from longshort.engine.cpu import random

    return random


def bernoulli(shape: Sequence[int], p: float, like: Tensor) -> Tensor:
    """:func:`longshort.engine.bernoulli`'s draw."""
    if dispatch.compiled_masks(like):
        return _random().mask(tuple(shape), p, like)
    return (torch.rand(tuple(shape), dtype=like.dtype, device=like.device) < p).to(like.dtype)


def variant_forward(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    segment: int = 0,
    keep: bool = True,
) -> tuple[Engine, VariantForward, variant.InputPart]:
    """The engine chosen for (x, w), the variant layer's forward and its input part (empty
    when segmented: BPTT recomputes it); keep=False as for :func:`variant.forward`."""
    engine = dispatch.variant_engine(x, w)
    if segment > 0:
        res = variant.segmented_forward(engine, segment, x, h0, c0, w, v, masks, lengths)
        empty = x.new_empty(0)
        return engine, res, variant.InputPart(empty, empty, empty)
    res, part = variant.forward(engine, x, h0, c0, w, v, masks, lengths, keep)
    return engine, res, part


def variant_backward(
    engine: Engine | None,
    segment: int,
    grads_out: tuple[Tensor, Tensor, Tensor],
    x: Tensor,
    h0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
    lengths: Tensor | None,
    saved: VariantForward,
    part: variant.InputPart,
    need_dx: bool = True,
) -> VariantGrads:
    """BPTT of :func:`variant_forward`; grads_out = (d_out, d_hn, d_cn); saved: the
    forward's out, gates, cs and rec (its h_n, c_n are not read)."""
    engine = engine or dispatch.variant_engine(x, w)
    d_out, d_hn, d_cn = grads_out
    if segment > 0:
        g = variant.segmented_backward(
            engine, segment, d_out, d_hn, d_cn, x, w, v, masks, lengths, saved.cs
        )
    else:
        g = variant.backward(
            engine, d_out, d_hn, d_cn, x, h0, w, v, masks, lengths, saved, part, need_dx
        )
    gradient_norms.record("lstm", g.norms)
    return g
