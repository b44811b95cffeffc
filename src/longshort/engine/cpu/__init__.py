"""The compiled CPU engine: the same functions as :mod:`longshort.engine.reference`, with the
recurrent loops in numba (:mod:`.lstm`, :mod:`.rnn`) and the big matrix products (input
projections of all steps, weight gradients over all T*B rows) as single torch GEMMs around them.

Compiled code is cached on disk by numba, so only the first process pays for compilation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from longshort.engine.cpu import lstm, rnn
from longshort.engine.cpu.blas import scratch
from longshort.engine.reference import _input_projection, _weight_grads


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _lengths(lengths: Tensor | None) -> np.ndarray:
    return np.empty(0, np.int64) if lengths is None else _np(lengths)


def _empty2(like: Tensor) -> np.ndarray:
    return np.empty((0, 0), _np(like[:0]).dtype)


def lstm_forward(
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
    """See :func:`longshort.engine.reference.lstm_forward`."""
    steps, batch, _ = x.shape
    hidden, out_size = c0.shape[1], h0.shape[1]
    gates = _input_projection(x, w_ih, b_ih, b_hh).contiguous()  # becomes the gates in place
    out = x.new_empty(steps, batch, out_size)
    cs = x.new_empty(steps + 1, batch, hidden)
    cs[0] = c0
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = _np(gates[:0]).dtype
    lstm.forward(
        _np(gates),
        h.numpy(),
        cs.numpy(),
        _np(w_hh),
        _empty2(x) if w_hr is None else _np(w_hr),
        _lengths(lengths),
        out.numpy(),
        np.empty((batch, hidden), dtype),
        np.empty((batch, out_size), dtype),
        np.empty(hidden, np.int32),
        *scratch(dtype),
    )
    return out, h, cs[steps].clone(), gates, cs


def lstm_backward(
    d_out: Tensor,
    d_hn: Tensor,
    d_cn: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    out: Tensor,
    gates: Tensor,
    cs: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """See :func:`longshort.engine.reference.lstm_backward`."""
    steps, batch, _ = x.shape
    hidden, out_size = cs.shape[2], out.shape[2]
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    dc = d_cn.clone(memory_format=torch.contiguous_format)
    dz = torch.empty_like(gates)
    dh_t = x.new_empty(steps if w_hr is not None else 1, batch, out_size)
    dtype = _np(dz[:0]).dtype
    lstm.backward(
        _np(d_out),
        dh.numpy(),
        dc.numpy(),
        _np(gates),
        _np(cs),
        _np(w_hh),
        _empty2(x) if w_hr is None else _np(w_hr),
        _lengths(lengths),
        dz.numpy(),
        dh_t.numpy(),
        np.empty((batch, hidden), dtype),
        np.empty((batch, out_size), dtype),
        np.empty((batch, hidden), dtype),
        np.empty(hidden, np.int32),
        *scratch(dtype),
    )
    h_prev = torch.cat((h0[None], out[:-1]))
    dw_ih, dw_hh, db = _weight_grads(dz, x, h_prev)
    dw_hr = None
    if w_hr is not None:
        m = gates[..., 3 * hidden :] * torch.tanh(cs[1:])  # o_t ⊙ tanh(C_t), recomputed
        dw_hr = dh_t.flatten(0, 1).T @ m.flatten(0, 1)
    return dz @ w_ih, dh, dc, dw_ih, dw_hh, db, dw_hr


def rnn_forward(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    nonlinearity: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """See :func:`longshort.engine.reference.rnn_forward`."""
    hs = _input_projection(x, w_ih, b_ih, b_hh).contiguous()  # becomes h_1 .. h_T in place
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = _np(hs[:0]).dtype
    rnn.forward(
        _np(hs),
        h.numpy(),
        _lengths(lengths),
        _np(w_hh),
        nonlinearity == "relu",
        np.empty(hs.shape[2], np.int32),
        *scratch(dtype),
    )
    return hs.clone(), h, hs


def rnn_backward(
    d_out: Tensor,
    d_hn: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    lengths: Tensor | None,
    hs: Tensor,
    nonlinearity: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """See :func:`longshort.engine.reference.rnn_backward`."""
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    da = torch.empty_like(hs)
    dtype = _np(da[:0]).dtype
    rnn.backward(
        _np(d_out),
        dh.numpy(),
        _np(hs),
        _lengths(lengths),
        _np(w_hh),
        nonlinearity == "relu",
        da.numpy(),
        np.empty_like(dh.numpy()),
        *scratch(dtype),
    )
    h_prev = torch.cat((h0[None], hs[:-1]))
    dw_ih, dw_hh, db = _weight_grads(da, x, h_prev)
    return da @ w_ih, dh, dw_ih, dw_hh, db
