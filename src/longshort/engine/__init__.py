"""Engines: a recurrent layer run over a whole sequence, forward and handwritten BPTT.

Modules in :mod:`longshort.nn` validate and dispatch; the functions here compute one layer in
one direction: eagerly through :mod:`.eager` (or, when autograd has nothing to record, straight
to :mod:`.calls`, without an autograd.Function's 20 us of bookkeeping), under ``torch.compile``
through the custom ops of :mod:`.ops`; either way :mod:`.dispatch` picks the engine. All
return, besides outputs and final states, what BPTT saved (the gates and cell states of every
step): the trace that :mod:`longshort.inspect` shows, at no extra cost.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.engine import calls, dispatch, eager, ops, reference, variant
from longshort.engine.dispatch import cpu_engine, use_cpu_engine
from longshort.engine.types import (
    GRUForward,
    GRUWeights,
    LSTMForward,
    LSTMVariant,
    LSTMWeights,
    RNNForward,
    RNNWeights,
    VariantForward,
    VariantMasks,
    VariantWeights,
)

__all__ = [
    "bernoulli",
    "cpu_engine",
    "gru_cell",
    "gru_layer",
    "lstm_cell",
    "lstm_layer",
    "lstm_stack",
    "rnn_cell",
    "rnn_layer",
    "use_cpu_engine",
    "variant_layer",
]


def bernoulli(shape: tuple[int, ...], p: float, like: Tensor, draw: int = 0) -> Tensor:
    """A new tensor of `shape`, like's dtype and device: 1 with probability p, else 0,
    reproduced by ``torch.manual_seed``. On CPU from the compiled engine's counter-based
    generator, on all of torch's threads (:func:`dispatch.compiled_masks` says where),
    elsewhere ``torch.rand``. Under torch.compile, an opaque op drawn when the graph runs:
    the same draws as eager for the same seed. draw numbers the masks of one call: two
    draws alike in shape and p would otherwise be merged into one in a compiled graph."""
    if not 0.0 <= p <= 1.0:  # also NaN
        raise ValueError(
            f"bernoulli: p must be a probability in [0, 1], got {p!r}; for zoneout or "
            "recurrent dropout, pass the rate the module was built with"
        )
    if torch.compiler.is_compiling():
        return ops.bernoulli(like.detach(), list(shape), p, draw)  # no gradient: a draw
    return calls.bernoulli(shape, p, like)


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    lengths: Tensor | None = None,
    segment: int = 0,
    keep: bool = True,
) -> LSTMForward:
    """One LSTM layer, one direction, time-major.

    x (T, B, I); h0 (B, P); c0 (B, H); w_ih (4H, I); w_hh (4H, P); biases (4H,); w_hr (P, H);
    lengths (B,) int64 on x's device or None. Returns out (T, B, P), h_n (B, P), c_n (B, H),
    gates (T, B, 4H) = [i, f, g, o] and cs (T+1, B, H) = [C_0 .. C_T]; the last two carry no
    gradient. With segment S > 0, BPTT recomputes the gates segment by segment
    (:mod:`longshort.engine.segmented`): gates is then empty and cs holds the segment starts.
    With keep=False, a call for which no input needs a gradient may return both empty (the
    compiled engine then stores nothing per step).
    """
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment)
    if torch.compiler.is_compiling():
        return LSTMForward(*ops.lstm_fwd(*args))
    args = x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment = eager.autocast(args)
    w = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)
    if dispatch.transformed():  # torch.func: plain torch ops
        return reference.lstm_outputs(x, h0, c0, w, lengths)
    if not _needs_grad(x, h0, c0, *w):  # no graph to record
        with eager.no_autocast(x.device):
            return calls.lstm_forward(x, h0, c0, w, lengths, segment, keep)[1]
    return LSTMForward(*eager.LSTMLayer.apply(*args))


def lstm_stack(
    x: Tensor, h0: Tensor, c0: Tensor, ws: list[LSTMWeights]
) -> tuple[Tensor, Tensor, Tensor]:
    """A unidirectional stack of LSTM layers without projection, for a call that asks for no
    gradient and no trace (inference). x (T, B, I); h0, c0 (L, B, H); ws: each layer's
    weights, layer 0's w_ih (4H, I), the others' (4H, H). Returns out (T, B, H), h_n and c_n
    (L, B, H). In one host call on the compiled engine where :func:`dispatch.stack_engine`
    says so and nothing needs a gradient, else layer by layer."""
    stack = dispatch.stack_engine(x)
    if stack is not None and not (torch.is_grad_enabled() and _stack_needs_grad(x, h0, c0, ws)):
        return stack.lstm_stack_infer(x, h0, c0, ws)
    finals: list[tuple[Tensor, Tensor]] = []
    for k, w in enumerate(ws):
        x, h, c, _, _ = lstm_layer(x, h0[k], c0[k], *w, keep=False)
        finals.append((h, c))
    return x, torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals])


def _stack_needs_grad(x: Tensor, h0: Tensor, c0: Tensor, ws: list[LSTMWeights]) -> bool:
    """Whether autograd would record a call of :func:`lstm_stack` on these tensors."""
    return _needs_grad(x, h0, c0) or any(_needs_grad(*w) for w in ws)


def lstm_cell(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step (an LSTMCell's): x (B, I), h0, c0 (B, H) -> h_1, C_1. On the compiled
    engine's one-call step where :func:`dispatch.step_engine` says so, else as a one-step
    layer."""
    if dispatch.widened_step(x):  # bf16: the float32 step, rounded back
        h, c = lstm_cell(*_widened(x, h0, c0, w_ih, w_hh, b_ih, b_hh))
        return h.to(x.dtype), c.to(x.dtype)
    w = LSTMWeights(w_ih, w_hh, b_ih, b_hh)
    step = dispatch.step_engine(x, w)
    if step is not None:
        if not _needs_grad(x, h0, c0, *w[:4]):  # no graph to record: the step alone
            h, c, _ = step.lstm_step(x, h0, c0, w)
            return h, c
        return eager.LSTMStep.apply(step, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    _, h, c, _, _ = lstm_layer(x[None], h0, c0, w_ih, w_hh, b_ih, b_hh, keep=False)
    return h, c


def variant_cell(
    x: Tensor, h0: Tensor, c0: Tensor, w: VariantWeights, v: LSTMVariant, masks: VariantMasks
) -> tuple[Tensor, Tensor]:
    """One step of a variant LSTMCell: x (B, I), h0, c0 (B, H) -> h_1, C_1; masks over one
    step as :class:`VariantMasks` says. On the compiled engine's one-call step where
    :func:`dispatch.step_engine` says so, else as a one-step variant layer."""
    if dispatch.widened_step(x):  # bf16: the float32 step, rounded back
        x32, h32, c32, *rest = _widened(x, h0, c0, *w, *masks)
        n = len(VariantWeights._fields)
        h, c = variant_cell(x32, h32, c32, VariantWeights(*rest[:n]), v, VariantMasks(*rest[n:]))
        return h.to(x.dtype), c.to(x.dtype)
    step = dispatch.step_engine(x, w)
    if step is not None:
        if not _needs_grad(x, h0, c0, *w):  # no graph to record: the step alone
            h, c, _ = step.variant_step(x, h0, c0, w, v, masks)
            return h, c
        return eager.VariantStep.apply(step, x, h0, c0, v, *masks, *w)
    res = variant_layer(x[None], h0, c0, w, v, masks, keep=False)
    return res.h_n, res.c_n


def _widened(*tensors: Tensor | None) -> list:
    """float32 copies of a bf16 cell's tensors (None stays None), differentiable: autograd
    rounds their gradients back to bf16."""
    return [None if t is None else t.float() for t in tensors]


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether autograd would record a call on these tensors (a loop: a cell asks at every
    step, and a generator costs a microsecond)."""
    if not torch.is_grad_enabled():
        return False
    for t in tensors:  # noqa: SIM110 - a loop, not any() over a generator
        if t is not None and t.requires_grad:
            return True
    return False


def variant_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks | None = None,
    lengths: Tensor | None = None,
    segment: int = 0,
    keep: bool = True,
) -> VariantForward:
    """One layer of an LSTM variant (:mod:`longshort.cells.lstm_variant`), one direction.

    x (T, B, I); h0 (B, P); c0 (B, H); w and masks as :class:`VariantWeights` and
    :class:`VariantMasks` describe them. Returns out (T, B, P), h_n (B, P), c_n (B, H), the
    gate blocks (T, B, G) and cs (T+1, B, H); rec is left empty. With keep=False, a call for
    which no input needs a gradient may return the gates and cs empty (the compiled engine
    then stores nothing per step).
    """
    masks = VariantMasks() if masks is None else masks
    if torch.compiler.is_compiling():
        out, h_n, c_n, gates, cs, *_ = ops.variant_fwd(x, h0, c0, *masks, lengths, segment, *v, *w)
        return VariantForward(out, h_n, c_n, gates, cs, x.new_empty(0))
    x, h0, c0, zone_c, zone_h, kept_units, *weights = eager.autocast((x, h0, c0, *masks, *w))
    if dispatch.transformed():  # torch.func: plain torch ops
        masks = VariantMasks(zone_c, zone_h, kept_units)
        return variant.outputs(x, h0, c0, VariantWeights(*weights), v, masks, lengths)
    if not _needs_grad(x, h0, c0, *weights):  # no graph to record
        masks = VariantMasks(zone_c, zone_h, kept_units)
        with eager.no_autocast(x.device):
            w = VariantWeights(*weights)
            res = calls.variant_forward(x, h0, c0, w, v, masks, lengths, segment, keep)[1]
        return res._replace(rec=x.new_empty(0))
    out, h_n, c_n, gates, cs = eager.VariantLayer.apply(
        x, h0, c0, v, zone_c, zone_h, kept_units, lengths, segment, *weights
    )
    return VariantForward(out, h_n, c_n, gates, cs, x.new_empty(0))


def rnn_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    lengths: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> RNNForward:
    """One vanilla RNN layer, one direction, time-major.

    x (T, B, I); h0 (B, H); w_ih (H, I); w_hh (H, H). Returns out (T, B, H), h_n (B, H) and
    hs (T, B, H), the states of every step before padding is zeroed (no gradient).
    """
    args = (x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity)
    if torch.compiler.is_compiling():
        return RNNForward(*ops.rnn_fwd(*args))
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, _ = args = eager.autocast(args)
    if dispatch.transformed():  # torch.func: plain torch ops
        w = RNNWeights(w_ih, w_hh, b_ih, b_hh)
        return reference.rnn_outputs(x, h0, w, lengths, nonlinearity)
    if not _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):  # no graph to record
        with eager.no_autocast(x.device):
            w = RNNWeights(w_ih, w_hh, b_ih, b_hh)
            return calls.rnn_forward(x, h0, w, lengths, nonlinearity)[1]
    return RNNForward(*eager.RNNLayer.apply(*args))


def rnn_cell(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """One RNN step (an RNNCell's): x (B, I), h0 (B, H) -> h_1. On the compiled engine's
    one-call step where :func:`dispatch.step_engine` says so, else as a one-step layer."""
    if dispatch.widened_step(x):  # bf16: the float32 step, rounded back
        x32, h32, w_ih32, w_hh32, b_ih32, b_hh32 = _widened(x, h0, w_ih, w_hh, b_ih, b_hh)
        return rnn_cell(x32, h32, w_ih32, w_hh32, b_ih32, b_hh32, nonlinearity).to(x.dtype)
    step = dispatch.step_engine(x)
    if step is not None:
        if not _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):  # no graph to record: the step alone
            return step.rnn_step(x, h0, RNNWeights(w_ih, w_hh, b_ih, b_hh), nonlinearity)
        return eager.RNNStep.apply(step, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    return rnn_layer(x[None], h0, w_ih, w_hh, b_ih, b_hh, None, nonlinearity)[1]


def gru_cell(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    """One GRU step (a GRUCell's): x (B, I), h0 (B, H) -> h_1. On the compiled engine's
    one-call step where :func:`dispatch.step_engine` says so, else as a one-step layer."""
    if dispatch.widened_step(x):  # bf16: the float32 step, rounded back
        return gru_cell(*_widened(x, h0, w_ih, w_hh, b_ih, b_hh)).to(x.dtype)
    step = dispatch.step_engine(x)
    if step is not None:
        w = GRUWeights(w_ih, w_hh, b_ih, b_hh)
        if not _needs_grad(x, h0, *w):  # no graph to record: the step alone
            return step.gru_step(x, h0, w)[0]
        return eager.GRUStep.apply(step, x, h0, w_ih, w_hh, b_ih, b_hh)
    return gru_layer(x[None], h0, w_ih, w_hh, b_ih, b_hh)[1]


def gru_layer(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    lengths: Tensor | None = None,
) -> GRUForward:
    """One GRU layer, one direction, time-major.

    x (T, B, I); h0 (B, H); w_ih (3H, I); w_hh (3H, H); biases (3H,). Returns out (T, B, H),
    h_n (B, H), gates (T, B, 4H) = [r, z, n, W_hn h_{t-1} + b_hn] and hs (T, B, H), the states
    of every step before padding is zeroed (no gradient through the last two).
    """
    args = (x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    if torch.compiler.is_compiling():
        return GRUForward(*ops.gru_fwd(*args))
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = args = eager.autocast(args)
    if dispatch.transformed():  # torch.func: plain torch ops
        return reference.gru_outputs(x, h0, GRUWeights(w_ih, w_hh, b_ih, b_hh), lengths)
    if not _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):  # no graph to record
        with eager.no_autocast(x.device):
            return calls.gru_forward(x, h0, GRUWeights(w_ih, w_hh, b_ih, b_hh), lengths)[1]
    return GRUForward(*eager.GRULayer.apply(*args))
