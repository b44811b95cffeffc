"""Eager calls: the engine under a plain ``torch.autograd.Function`` with the handwritten BPTT.

The custom operators of :mod:`longshort.engine.ops` exist for ``torch.compile``, which needs an
opaque op to trace through the layer without a graph break. Outside of it, going through
``torch.library`` costs a dispatch of about 30 us a call and, on the first call of a process,
the import of ``torch._dynamo`` (1.2 s). Eager calls therefore take this path, with the same
engines, the same saved tensors and the same results; :mod:`longshort.engine` picks the path.

Second-order gradients: a backward asked to build a graph (``create_graph=True``, as gradient
penalties and Hessian-vector products do) recomputes the layer with the reference engine's
plain torch ops and differentiates that by autograd, so double backward works as in torch.nn;
an ordinary backward runs the handwritten BPTT.

Autocast: under ``torch.autocast(device, dtype=...)`` the layer runs in the autocast dtype (as
the custom ops' registered autocast rule does on CPU); inside, nothing is autocast again.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from torch._C._functorch import is_legacy_batchedtensor

from longshort.engine import calls, gradient_norms, reference, variant
from longshort.engine.types import (
    GRUWeights,
    LSTMForward,
    LSTMWeights,
    RNNWeights,
    VariantForward,
    VariantMasks,
    VariantStepSaved,
    VariantWeights,
)


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off inside the engine, if it is on (entering the context costs microseconds)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def autocast(tensors: tuple) -> tuple:
    """The floating tensors cast to the autocast dtype of x's device when autocast is on there
    (the first tensor is x)."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(
        t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t for t in tensors
    )


class LSTMLayer(torch.autograd.Function):
    """apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment) -> LSTMForward
    fields, for a call autograd records (a call without a graph goes to :mod:`.calls`
    directly, no-grad loop included)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, segment):
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)
        with no_autocast(x.device):
            engine, res = calls.lstm_forward(x, h0, c0, w, lengths, segment)
        ctx.mark_non_differentiable(res.gates, res.cs)
        ctx.set_materialize_grads(False)  # no zero tensors for the gates and states
        ctx.engine, ctx.segment = engine, segment
        ctx.save_for_backward(x, h0, c0, *w, lengths, res.out, res.gates, res.cs)
        return tuple(res)

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn, _d_gates, _d_cs):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, out, gates, cs = ctx.saved_tensors
        d_out, d_hn, d_cn = _zeros_if_none((d_out, d_hn, d_cn), (out, h0, c0))
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh, w_hr)
        if _composable(d_out, d_hn, d_cn):  # a backward that can be differentiated or batched
            inputs = (x, h0, c0, *w)
            grads = _differentiable(
                lambda *a: reference.lstm_outputs(*a[:3], LSTMWeights(*a[3:]), lengths)[:3],
                inputs,
                (d_out, d_hn, d_cn),
            )
            return (*grads, None, None)
        saved = LSTMForward(out, d_hn, d_cn, gates, cs)  # h_n, c_n are not read
        with no_autocast(x.device):
            g = calls.lstm_backward(
                ctx.engine, ctx.segment, (d_out, d_hn, d_cn), x, h0, w, lengths, saved,
                need_dx=ctx.needs_input_grad[0],
            )  # fmt: skip
        db = g.db if b_ih is not None else None
        return g.dx, g.dh0, g.dc0, g.dw_ih, g.dw_hh, db, db, g.dw_hr, None, None


class LSTMStep(torch.autograd.Function):
    """apply(step, x, h0, c0, w_ih, w_hh, b_ih, b_hh) -> h_1, C_1: one step of an LSTMCell in
    one call each way on `step`, the :class:`~longshort.engine.types.StepEngine` that
    :func:`longshort.engine.dispatch.step_engine` chose (the layer's machinery cost a cell
    tens of us)."""

    @staticmethod
    def forward(ctx, step, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh)
        h, c, z = step.lstm_step(x, h0, c0, w)
        ctx.step = step
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, z, c)
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, z, c = ctx.saved_tensors
        dh, dc = _zeros_if_none((dh, dc), (h0, c0))
        w = LSTMWeights(w_ih, w_hh, b_ih, b_hh)
        if _composable(dh, dc):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: reference.lstm_outputs(a[0][None], *a[1:3], LSTMWeights(*a[3:]), None)[
                    1:3
                ],
                (x, h0, c0, *w[:4]),
                (dh, dc),
            )
            return (None, *grads)
        dx, dh0, dc0, dw_ih, dw_hh, db, norms = ctx.step.lstm_step_backward(
            dh, dc, x, h0, c0, w, z, c, *ctx.needs_input_grad[1:3]
        )
        gradient_norms.record("lstm", norms)
        db = db if b_ih is not None else None
        return None, dx, dh0, dc0, dw_ih, dw_hh, db, db


class VariantStep(torch.autograd.Function):
    """apply(step, x, h0, c0, v, zone_c, zone_h, keep, *VariantWeights fields) -> h_1, C_1:
    one step of a variant LSTMCell in one call each way on `step` (as :class:`LSTMStep`)."""

    @staticmethod
    def forward(ctx, step, x, h0, c0, v, zone_c, zone_h, keep, *weights):
        w, masks = VariantWeights(*weights), VariantMasks(zone_c, zone_h, keep)
        h, c, saved = step.variant_step(x, h0, c0, w, v, masks)
        ctx.step, ctx.v = step, v
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, h0, c0, *masks, *saved, *w)
        return h, c

    @staticmethod
    def backward(ctx, dh, dc):
        x, h0, c0, zone_c, zone_h, keep, *rest = ctx.saved_tensors
        saved, w = VariantStepSaved(*rest[:4]), VariantWeights(*rest[4:])
        masks, v = VariantMasks(zone_c, zone_h, keep), ctx.v
        dh, dc = _zeros_if_none((dh, dc), (h0, c0))
        if _composable(dh, dc):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: variant.outputs(
                    a[0][None], a[1], a[2], VariantWeights(*a[3:]), v, masks, None
                )[1:3],
                (x, h0, c0, *w),
                (dh, dc),
            )
            return (None, *grads[:3], *[None] * 4, *grads[3:])
        need = ctx.needs_input_grad[1:3]  # x's and h0's
        g = ctx.step.variant_step_backward(dh, dc, x, h0, w, v, masks, saved, *need)
        gradient_norms.record("lstm", g.norms)
        return (None, g.dx, g.dh0, g.dc0, *[None] * 4, *g.weights)


class RNNStep(torch.autograd.Function):
    """apply(step, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> h_1: one step of an RNNCell
    in one call each way on `step` (as :class:`LSTMStep`)."""

    @staticmethod
    def forward(ctx, step, x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity):
        h = step.rnn_step(x, h0, RNNWeights(w_ih, w_hh, b_ih, b_hh), nonlinearity)
        ctx.step, ctx.nonlinearity = step, nonlinearity
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, h)
        return h

    @staticmethod
    def backward(ctx, dh):
        x, h0, w_ih, w_hh, b_ih, b_hh, h = ctx.saved_tensors
        w, nl = RNNWeights(w_ih, w_hh, b_ih, b_hh), ctx.nonlinearity
        if _composable(dh):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: reference.rnn_outputs(a[0][None], a[1], RNNWeights(*a[2:]), None, nl)[1],
                (x, h0, *w),
                (dh,),
            )
            return (None, *grads, None)
        dx, dh0, dw_ih, dw_hh, db, norms = ctx.step.rnn_step_backward(
            dh, x, h0, h, w, nl, *ctx.needs_input_grad[1:3]
        )
        gradient_norms.record("rnn", norms)
        db = db if b_ih is not None else None
        return None, dx, dh0, dw_ih, dw_hh, db, db, None


class GRUStep(torch.autograd.Function):
    """apply(step, x, h0, w_ih, w_hh, b_ih, b_hh) -> h_1: one step of a GRUCell in one call
    each way on `step` (as :class:`LSTMStep`)."""

    @staticmethod
    def forward(ctx, step, x, h0, w_ih, w_hh, b_ih, b_hh):
        h, gates = step.gru_step(x, h0, GRUWeights(w_ih, w_hh, b_ih, b_hh))
        ctx.step = step
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, gates)
        return h

    @staticmethod
    def backward(ctx, dh):
        x, h0, w_ih, w_hh, b_ih, b_hh, gates = ctx.saved_tensors
        w = GRUWeights(w_ih, w_hh, b_ih, b_hh)
        if _composable(dh):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: reference.gru_outputs(a[0][None], a[1], GRUWeights(*a[2:]), None)[1],
                (x, h0, *w),
                (dh,),
            )
            return (None, *grads)
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh, norms = ctx.step.gru_step_backward(
            dh, x, h0, w, gates, *ctx.needs_input_grad[1:3]
        )
        gradient_norms.record("gru", norms)
        return None, dx, dh0, dw_ih, dw_hh, db_ih, db_hh


class RNNLayer(torch.autograd.Function):
    """apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity) -> RNNForward fields."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity):
        w = RNNWeights(w_ih, w_hh, b_ih, b_hh)
        with no_autocast(x.device):
            engine, res = calls.rnn_forward(x, h0, w, lengths, nonlinearity)
        ctx.mark_non_differentiable(res.hs)
        ctx.set_materialize_grads(False)  # no zero tensors for the gates and states
        ctx.engine, ctx.nonlinearity, ctx.has_bias = engine, nonlinearity, b_ih is not None
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, res.hs)
        return tuple(res)

    @staticmethod
    def backward(ctx, d_out, d_hn, _d_hs):
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, hs = ctx.saved_tensors
        d_out, d_hn = _zeros_if_none((d_out, d_hn), (hs, h0))
        if _composable(d_out, d_hn):  # a backward that can be differentiated or batched
            nl = ctx.nonlinearity
            grads = _differentiable(
                lambda *a: reference.rnn_outputs(*a[:2], RNNWeights(*a[2:]), lengths, nl)[:2],
                (x, h0, w_ih, w_hh, b_ih, b_hh),
                (d_out, d_hn),
            )
            return (*grads, None, None)
        w, nl = RNNWeights(w_ih, w_hh), ctx.nonlinearity
        with no_autocast(x.device):
            g = calls.rnn_backward(ctx.engine, (d_out, d_hn), x, h0, w, lengths, hs, nl)
        db = g.db if ctx.has_bias else None
        return g.dx, g.dh0, g.dw_ih, g.dw_hh, db, db, None, None


class GRULayer(torch.autograd.Function):
    """apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths) -> GRUForward fields."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
        w = GRUWeights(w_ih, w_hh, b_ih, b_hh)
        with no_autocast(x.device):
            engine, res = calls.gru_forward(x, h0, w, lengths)
        ctx.mark_non_differentiable(res.gates, res.hs)
        ctx.set_materialize_grads(False)  # no zero tensors for the gates and states
        ctx.engine = engine
        ctx.save_for_backward(x, h0, *w, lengths, res.gates, res.hs)
        return tuple(res)

    @staticmethod
    def backward(ctx, d_out, d_hn, _d_gates, _d_hs):
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates, hs = ctx.saved_tensors
        d_out, d_hn = _zeros_if_none((d_out, d_hn), (hs, h0))
        w = GRUWeights(w_ih, w_hh, b_ih, b_hh)
        if _composable(d_out, d_hn):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: reference.gru_outputs(*a[:2], GRUWeights(*a[2:]), lengths)[:2],
                (x, h0, *w),
                (d_out, d_hn),
            )
            return (*grads, None)
        with no_autocast(x.device):
            g = calls.gru_backward(ctx.engine, (d_out, d_hn), x, h0, w, lengths, gates, hs)
        has_bias = b_ih is not None
        return (
            g.dx,
            g.dh0,
            g.dw_ih,
            g.dw_hh,
            g.db_ih if has_bias else None,
            g.db_hh if has_bias else None,
            None,
        )


class VariantLayer(torch.autograd.Function):
    """apply(x, h0, c0, v, zone_c, zone_h, keep, lengths, segment, *VariantWeights fields)
    -> out, h_n, c_n, gates, cs (the fields of VariantForward but rec)."""

    @staticmethod
    def forward(ctx, x, h0, c0, v, zone_c, zone_h, keep, lengths, segment, *weights):
        w, masks = VariantWeights(*weights), VariantMasks(zone_c, zone_h, keep)
        with no_autocast(x.device):
            engine, res, part = calls.variant_forward(x, h0, c0, w, v, masks, lengths, segment)
        ctx.mark_non_differentiable(res.gates, res.cs)
        ctx.set_materialize_grads(False)  # no zero tensors for the gates and states
        ctx.engine, ctx.segment, ctx.v = engine, segment, v
        saved = (res.out, res.gates, res.cs, res.rec, *part)
        ctx.save_for_backward(x, h0, c0, *masks, lengths, *saved, *w)
        return res.out, res.h_n, res.c_n, res.gates, res.cs

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn, _d_gates, _d_cs):
        x, h0, c0, zone_c, zone_h, keep, lengths, out, gates, cs, rec, *rest = ctx.saved_tensors
        part, weights = variant.InputPart(*rest[:3]), rest[3:]
        d_out, d_hn, d_cn = _zeros_if_none((d_out, d_hn, d_cn), (out, h0, c0))
        w, masks, v = VariantWeights(*weights), VariantMasks(zone_c, zone_h, keep), ctx.v
        if _composable(d_out, d_hn, d_cn):  # a backward that can be differentiated or batched
            grads = _differentiable(
                lambda *a: variant.outputs(*a[:3], VariantWeights(*a[3:]), v, masks, lengths)[:3],
                (x, h0, c0, *w),
                (d_out, d_hn, d_cn),
            )
            return (*grads[:3], *[None] * 6, *grads[3:])
        saved = VariantForward(out, d_hn, d_cn, gates, cs, rec)  # h_n, c_n are not read
        with no_autocast(x.device):
            g = calls.variant_backward(
                ctx.engine, ctx.segment, (d_out, d_hn, d_cn), x, h0, w, v, masks, lengths,
                saved, part, need_dx=ctx.needs_input_grad[0],
            )  # fmt: skip
        return (g.dx, g.dh0, g.dc0, *[None] * 6, *g.weights)


def _zeros_if_none(grads: tuple, likes: tuple) -> tuple:
    """The output gradients, zeros (shaped like the matching saved tensor) for outputs that
    received none: the Functions do not let autograd fill zero tensors, which for the gates and
    cell states (never differentiated) cost a T x B x 4H fill on every backward."""
    return tuple(
        torch.zeros_like(like) if g is None else g for g, like in zip(grads, likes, strict=True)
    )


def _differentiable(forward, inputs: tuple, grad_outputs: tuple) -> tuple:
    """The vector-Jacobian product of forward(*inputs) with grad_outputs, as a graph of torch
    ops (for double backward); None for inputs that are None or need no gradient."""
    wanted = [i for i, t in enumerate(inputs) if t is not None and t.requires_grad]
    with torch.enable_grad():
        outputs = forward(*inputs)
        found = torch.autograd.grad(
            outputs,
            [inputs[i] for i in wanted],
            grad_outputs,
            create_graph=True,
            allow_unused=True,
        )
    grads: list[Tensor | None] = [None] * len(inputs)
    for i, g in zip(wanted, found, strict=True):
        grads[i] = g if g is not None else torch.zeros_like(inputs[i])
    return tuple(grads)


def _composable(*grads: Tensor | None) -> bool:
    """Whether a backward must be a graph of torch ops rather than the compiled BPTT: asked to
    build a graph (``create_graph=True``: gradient penalties, Hessian-vector products), or
    given batched output gradients (``torch.autograd.grad(..., is_grads_batched=True)``, which
    ``gradcheck(check_batched_grad=True)`` and ``torch.func`` Jacobians run)."""
    if torch.is_grad_enabled():
        return True
    return any(g is not None and is_legacy_batchedtensor(g) for g in grads)
