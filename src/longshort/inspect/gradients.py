"""Gradient flow through time, read from the handwritten BPTT itself.

``gradient_flow`` runs one forward and backward pass of a loss on the last step and returns
||dL/dh_k|| (and ||dL/dC_k|| for the LSTM) for every step k, as the engine's backward loop
computed them: no second autograd graph. Against the distance T - k this shows the vanishing
gradient of the RNN and the carousel of the LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from longshort.engine import gradient_norms
from longshort.nn import GRU, LSTM, RNN


@dataclass
class GradientFlow:
    """Per layer (forward order) and step: mean over the batch, shape (T,)."""

    dh: list[Tensor]
    dc: list[Tensor | None]

    def by_distance(self, layer: int = -1) -> Tensor:
        """||dL/dh_k|| of one layer indexed by distance T - k (index 0 is the last step)."""
        return self.dh[layer].flip(0)


def gradient_flow(model: LSTM | GRU | RNN, x: Tensor, seed: int = 0) -> GradientFlow:
    """Backpropagate L = <w, h_T> for a fixed random unit vector w (one per sequence) from the
    last step of the last layer, and collect per-step norms from the engine's BPTT.

    Supported: unidirectional models (the distance to the last step is what is measured).
    """
    if not isinstance(model, LSTM | GRU | RNN):
        raise TypeError(
            "gradient_flow: model must be a longshort.LSTM, GRU or RNN, got " + type(model).__name__
        )
    if model.bidirectional:
        raise ValueError("gradient_flow: needs a unidirectional model (bidirectional=False)")
    params = list(model.parameters())
    with gradient_norms.recording() as records:
        out, _ = model(x)
        last = out[:, -1] if model.batch_first else out[-1]
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(last.shape, generator=gen, dtype=last.dtype)
        w = (w / w.norm(dim=-1, keepdim=True)).to(last.device)
        torch.autograd.grad((last * w).sum(), params)
    records = records[::-1]  # autograd ran the last layer first
    dh = [norms[..., 0].mean(dim=1) for _, norms in records]
    dc = [norms[..., 1].mean(dim=1) if cell == "lstm" else None for cell, norms in records]
    return GradientFlow(dh, dc)


def unit_gradient_flow(
    rnn: LSTM | GRU | RNN, x: Tensor, score, start: tuple[Tensor, ...] | None = None
) -> list[Tensor]:
    """Per layer, |∂score/∂C_k| (LSTM) or |∂score/∂h_k| (GRU, RNN) for every step k and
    unit: (T, H) each, for one sequence x (T, I) that starts from `start` (the layers' states,
    (L, H) each, as hx; zeros if None). score(out (T, H)) -> a scalar, e.g. the logit of the
    prediction at the last step.

    The steps are rerun in plain torch ops from the cells' equations (:mod:`longshort.cells`)
    with a zero added to each step's state, whose gradient is then the state's own: per unit,
    what the carousel predicts along the cell path. One direction of a plain layer only.
    """
    from longshort.cells import gru as gru_cell
    from longshort.cells import lstm as lstm_cell
    from longshort.cells import rnn as rnn_cell

    variant = isinstance(rnn, LSTM) and rnn.options.active
    if rnn.bidirectional or getattr(rnn, "proj_size", 0) or variant:
        raise ValueError("unit_gradient_flow: one direction of a plain layer only")
    steps, hidden = x.shape[0], rnn.hidden_size
    probes = [x.new_zeros(steps, 1, hidden, requires_grad=True) for _ in range(rnn.num_layers)]
    inp = x
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh, _ = rnn.layer_weights(layer, 0)
        bias = [b for b in (b_ih, None if isinstance(rnn, GRU) else b_hh) if b is not None]
        xw = inp @ w_ih.T + sum(bias) if bias else inp @ w_ih.T  # W x_t + b (GRU: b_hn apart)
        h = x.new_zeros(1, hidden) if start is None else start[0][layer][None]
        c = x.new_zeros(1, hidden) if start is None else start[-1][layer][None]
        outs = []
        for t in range(steps):
            probe = probes[layer][t]
            if isinstance(rnn, LSTM):
                gates, c, _ = lstm_cell.forward_step(xw[t : t + 1], h, c, w_hh, None)
                c = c + probe  # C_t, with the zero whose gradient is ∂score/∂C_t
                h = gates.chunk(4, dim=1)[3] * torch.tanh(c)  # h_t = o_t ⊙ tanh(C_t)
            elif isinstance(rnn, GRU):
                h = gru_cell.forward_step(xw[t : t + 1], h, w_hh, b_hh)[1] + probe
            else:
                h = rnn_cell.forward_step(xw[t : t + 1], h, w_hh, rnn.nonlinearity) + probe
            outs.append(h)
        inp = torch.cat(outs)
    grads = torch.autograd.grad(score(inp), probes, allow_unused=True)
    return [
        p.new_zeros(steps, hidden) if g is None else g[:, 0].abs()
        for p, g in zip(probes, grads, strict=True)
    ]
