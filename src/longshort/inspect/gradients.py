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
