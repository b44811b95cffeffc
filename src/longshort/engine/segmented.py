"""Recomputation in segments: BPTT over very long sequences in memory that grows with T/S + S.

The forward keeps only the outputs and the states (h, C) at the start of every segment of S
steps; the backward walks the segments from last to first, recomputes one segment's gates
with the forward kernel and runs its BPTT, carrying dL/dh and dL/dC across segment boundaries
and summing the weight gradients. The kernels are whichever engine the call uses.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor


def _segment_lengths(lengths: Tensor | None, start: int, size: int) -> Tensor | None:
    return None if lengths is None else (lengths - start).clamp(0, size)


def lstm_forward(
    kernels: ModuleType,
    segment: int,
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """As the kernels' lstm_forward, but gates is empty (0, B, 4H) and the last output holds
    the segment starts: (ceil(T/S), B, P + H) = [h, C] before each segment."""
    steps, batch, _ = x.shape
    out_size, hidden = h0.shape[1], c0.shape[1]
    out = x.new_empty(steps, batch, out_size)
    starts = x.new_empty((steps + segment - 1) // segment, batch, out_size + hidden)
    h, c = h0, c0
    for k, s in enumerate(range(0, steps, segment)):
        starts[k] = torch.cat((h, c), dim=1)
        xs = x[s : s + segment]
        out[s : s + segment], h, c, _, _ = kernels.lstm_forward(
            xs, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, _segment_lengths(lengths, s, xs.shape[0])
        )
    return out, h, c, x.new_empty(0, batch, 4 * hidden), starts


def lstm_backward(
    kernels: ModuleType,
    segment: int,
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    starts: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor]:
    """BPTT of :func:`lstm_forward`, segment by segment from the last."""
    steps, batch, _ = x.shape
    out_size = d_hn.shape[1]
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    norms = x.new_empty(steps, batch, 2)
    dw_ih, dw_hh = torch.zeros_like(w_ih), torch.zeros_like(w_hh)
    db = x.new_zeros(w_ih.shape[0])
    dw_hr = None if w_hr is None else torch.zeros_like(w_hr)
    dh, dc = d_hn, d_cn
    for k in reversed(range(starts.shape[0])):
        s = k * segment
        xs = x[s : s + segment]
        ls = _segment_lengths(lengths, s, xs.shape[0])
        h0, c0 = starts[k, :, :out_size], starts[k, :, out_size:]
        out, _, _, gates, cs = kernels.lstm_forward(xs, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, ls)
        g = kernels.lstm_backward(
            d_out[s : s + segment], dh, dc, xs, h0, w_ih, w_hh, w_hr, ls, out, gates, cs
        )
        dx[s : s + segment], dh, dc = g[0], g[1], g[2]
        dw_ih += g[3]
        dw_hh += g[4]
        db += g[5]
        if dw_hr is not None:
            dw_hr += g[6]
        norms[s : s + segment] = g[7]
    return dx, dh, dc, dw_ih, dw_hh, db, dw_hr, norms
