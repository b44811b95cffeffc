"""Traces: every gate, cell state and hidden state of every step, from the fast engine."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from longshort.nn import GRU, LSTM, RNN


@dataclass
class Trace:
    """One layer and direction, time-major (T, B, H) each, zero at padded steps.

    LSTM: i, f, g (= C~), o, c and h (before any projection). The LSTM's variants show
    f = 1 without a forget gate and i = 1 - f with coupled gates; c is the carried C_t (after
    zoneout), h is o_t ⊙ tanh(C'_t) (after layer norm, before zoneout), and extras holds
    "c_new" (C'_t before zoneout) and, with layer norm, "c_norm" (LN(C'_t)·γ + β).
    GRU: r, z, n and h; its update gate z is the LSTM's forget gate's counterpart
    (∂h_t/∂h_{t-1} = z_t along the additive path), so ``carousel(tr.z)`` is its carousel.
    RNN: h only.
    """

    layer: int
    direction: int
    h: Tensor
    i: Tensor | None = None
    f: Tensor | None = None
    g: Tensor | None = None
    o: Tensor | None = None
    c: Tensor | None = None
    r: Tensor | None = None
    z: Tensor | None = None
    n: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)


def trace(
    model: LSTM | GRU | RNN, x: Tensor, lengths: Tensor | None = None, hx=None
) -> list[Trace]:
    """Run `model` once (no gradient) and return a :class:`Trace` per layer and direction.

    x as the model takes it (batch_first respected, 2-D unbatched allowed, or a
    PackedSequence); lengths as for the model's forward. Traces are time-major: (T, B, H), in the
    batch's original order, zero at padded steps.
    """
    if not isinstance(model, LSTM | GRU | RNN):
        raise TypeError(
            "trace: model must be a longshort.LSTM, GRU or RNN, got " + type(model).__name__
        )
    if isinstance(x, PackedSequence):
        lengths = pad_packed_sequence(x)[1]
        with torch.no_grad():
            _, _, layers = model(x, hx, return_trace=True)
    else:
        with torch.no_grad():
            _, _, layers = model(x, hx, lengths=lengths, return_trace=True)
    steps = layers[0].gates.shape[0]
    mask = None
    if lengths is not None:
        t = torch.arange(steps, device=layers[0].gates.device)[:, None]
        mask = (t < lengths.to(t.device)[None, :]).unsqueeze(-1)
    result = []
    for k, layer in enumerate(layers):
        gates = layer.gates if mask is None else torch.where(mask, layer.gates, 0)
        layer_index, direction = divmod(k, model.num_directions)
        if isinstance(model, RNN):
            result.append(Trace(layer_index, direction, gates))
            continue
        if isinstance(model, GRU):
            r, z, n, _ = gates.chunk(4, dim=2)
            h = layer.states if mask is None else torch.where(mask, layer.states, 0)
            result.append(Trace(layer_index, direction, h, r=r, z=z, n=n))
            continue
        i, f, g, o = gates.chunk(4, dim=2)
        c = layer.cells if mask is None else torch.where(mask, layer.cells, 0)
        extras = {
            k: t if mask is None else torch.where(mask, t, 0)
            for k, t in (layer.extras or {}).items()
        }
        h = extras.pop("h_new", None)
        if h is None:
            h = o * torch.tanh(c)  # h_t = o_t ⊙ tanh(C_t) (before any projection)
        result.append(Trace(layer_index, direction, h, i, f, g, o, c, extras=extras))
    return result
