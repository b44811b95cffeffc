"""Recomputation in segments: BPTT over very long sequences in memory that grows with T/S + S.

The forward keeps only the outputs and the states (h, C) at the start of every segment of S
steps; the backward walks the segments from last to first, recomputes one segment's gates
with the forward kernel and runs its BPTT, carrying dL/dh and dL/dC across segment boundaries
and summing the weight gradients. The kernels are whichever engine the call uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.engine.types import Engine, LSTMForward, LSTMGrads, LSTMWeights


def segment_lengths(lengths: Tensor | None, start: int, size: int) -> Tensor | None:
    return None if lengths is None else (lengths - start).clamp(0, size)


def lstm_forward(
    engine: Engine,
    segment: int,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
) -> LSTMForward:
    """As the engine's lstm_forward, but gates is empty (0, B, 4H) and cs holds the segment
    starts: (ceil(T/S), B, P + H) = [h, C] before each segment."""
    steps, batch, _ = x.shape
    out_size, hidden = h0.shape[1], c0.shape[1]
    out = x.new_empty(steps, batch, out_size)
    starts = x.new_empty((steps + segment - 1) // segment, batch, out_size + hidden)
    h, c = h0, c0
    for k, s in enumerate(range(0, steps, segment)):
        starts[k] = torch.cat((h, c), dim=1)
        xs = x[s : s + segment]
        part = engine.lstm_forward(xs, h, c, w, segment_lengths(lengths, s, xs.shape[0]))
        out[s : s + segment], h, c = part.out, part.h_n, part.c_n
    return LSTMForward(out, h, c, x.new_empty(0, batch, 4 * hidden), starts)


def lstm_backward(
    engine: Engine,
    segment: int,
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    w: LSTMWeights,
    lengths: Tensor | None,
    starts: Tensor,
) -> LSTMGrads:
    """BPTT of :func:`lstm_forward`, segment by segment from the last."""
    steps, batch, _ = x.shape
    out_size = d_hn.shape[1]
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    norms = x.new_empty(steps, batch, 2)
    dw_ih, dw_hh = torch.zeros_like(w.w_ih), torch.zeros_like(w.w_hh)
    db = x.new_zeros(w.w_ih.shape[0])
    dw_hr = None if w.w_hr is None else torch.zeros_like(w.w_hr)
    dh, dc = d_hn, d_cn
    for k in reversed(range(starts.shape[0])):
        s = k * segment
        xs = x[s : s + segment]
        ls = segment_lengths(lengths, s, xs.shape[0])
        h0, c0 = starts[k, :, :out_size], starts[k, :, out_size:]
        saved = engine.lstm_forward(xs, h0, c0, w, ls)
        g = engine.lstm_backward(d_out[s : s + segment], dh, dc, xs, h0, w, ls, saved)
        assert g.dx is not None  # need_dx is left True here
        dx[s : s + segment], dh, dc = g.dx, g.dh0, g.dc0
        dw_ih += g.dw_ih
        dw_hh += g.dw_hh
        db += g.db
        if dw_hr is not None and g.dw_hr is not None:
            dw_hr += g.dw_hr
        norms[s : s + segment] = g.norms
    return LSTMGrads(dx, dh, dc, dw_ih, dw_hh, db, dw_hr, norms)
