"""The compiled CPU engine: the same functions as :mod:`longshort.engine.reference`, with the
recurrent loops in numba (:mod:`.lstm`, :mod:`.rnn`).

Every matrix product of the op, the per-step recurrent ones and the large ones (input
projections of all steps, weight gradients over all T*B rows), goes to one BLAS, so a call
runs on one thread pool: mixing it with torch's OpenMP pool made both spin against each other
on small machines. Compiled code is cached on disk by numba: only a first process compiles.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from longshort.engine.cpu import cache

cache.refresh()

from longshort.engine.cpu import lstm, rnn  # noqa: E402
from longshort.engine.cpu.activations import gate_coefficients  # noqa: E402
from longshort.engine.cpu.blas import matmul_at, matmul_w, matmul_wt, step_threads  # noqa: E402


def _np(t: Tensor) -> np.ndarray:
    """A C-contiguous NumPy view (or copy, when t is strided) of a CPU tensor."""
    return np.ascontiguousarray(t.detach().numpy())


def _lengths(lengths: Tensor | None) -> np.ndarray:
    return np.empty(0, np.int64) if lengths is None else _np(lengths)


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


def _project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """z = W·x_t + b for all T steps as one (T*B, I) @ (I, G) product: (T, B, G)."""
    steps, batch, _ = x.shape
    z = x.new_empty(steps, batch, w_ih.shape[0])
    zn = z.numpy()
    zn[:] = 0.0 if b_ih is None else _np(b_ih) + _np(b_hh)
    matmul_wt(_rows(_np(x)), _np(w_ih), _rows(zn), 1.0)
    return z


def _input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx = dz W, dW_ih = Σ_t dz_tᵀ x_t, dW_hh = Σ_t dz_tᵀ h_{t-1}, db = Σ_t dz_t: one product
    each over all T*B rows. hs (T, B, P) holds h_1 .. h_T."""
    dzn, xn, wn = _np(dz), _np(x), _np(w_ih)
    dx = torch.empty_like(x, memory_format=torch.contiguous_format)
    dw_ih = w_ih.new_empty(w_ih.shape)
    dw_hh = w_ih.new_empty(dz.shape[2], h0.shape[1])
    matmul_w(_rows(dzn), wn, _rows(dx.numpy()), 0.0)
    matmul_at(_rows(dzn), _rows(xn), dw_ih.numpy(), 0.0)
    matmul_at(dzn[0], _np(h0), dw_hh.numpy(), 0.0)  # h_{t-1} is h_0 at t = 0 ...
    if dz.shape[0] > 1:
        matmul_at(_rows(dzn[1:]), _rows(_np(hs)[:-1]), dw_hh.numpy(), 1.0)  # ... then h
    db = torch.from_numpy(_rows(dzn).sum(0))
    return dx, dw_ih, dw_hh, db


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
    gates = _project(x, w_ih, b_ih, b_hh)  # becomes the gates in place
    out = x.new_empty(steps, batch, out_size)
    cs = x.new_empty(steps + 1, batch, hidden)
    cs[0] = c0
    h = h0.clone(memory_format=torch.contiguous_format)
    dtype = out.numpy().dtype
    with step_threads(2 * batch * 4 * hidden * out_size):
        lstm.forward(
            gates.numpy(),
            h.numpy(),
            cs.numpy(),
            _np(w_hh),
            np.empty((0, 0), dtype) if w_hr is None else _np(w_hr),
            _lengths(lengths),
            out.numpy(),
            np.empty((batch, hidden), dtype),
            np.empty((batch, out_size), dtype),
            np.stack(gate_coefficients(hidden, dtype)),
            np.empty(4 * hidden, np.int32),
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
    """See :func:`longshort.engine.reference.lstm_backward`; also returns norms (T, B, 2)."""
    steps, batch, _ = x.shape
    hidden, out_size = cs.shape[2], out.shape[2]
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    dc = d_cn.clone(memory_format=torch.contiguous_format)
    dz = torch.empty_like(gates)
    norms = x.new_empty(steps, batch, 2)
    dh_t = x.new_empty(steps if w_hr is not None else 1, batch, out_size)
    dtype = dz.numpy().dtype
    with step_threads(2 * batch * 4 * hidden * out_size):
        lstm.backward(
            _np(d_out),
            dh.numpy(),
            dc.numpy(),
            _np(gates),
            _np(cs),
            _np(w_hh),
            np.empty((0, 0), dtype) if w_hr is None else _np(w_hr),
            _lengths(lengths),
            dz.numpy(),
            dh_t.numpy(),
            np.empty((batch, hidden), dtype),
            np.empty((batch, out_size), dtype),
            np.empty((batch, hidden), dtype),
            norms.numpy(),
            np.empty(hidden, np.int32),
        )
    dx, dw_ih, dw_hh, db = _input_and_weight_grads(dz, x, h0, out, w_ih)
    dw_hr = None
    if w_hr is not None:
        m = gates[..., 3 * hidden :] * torch.tanh(cs[1:])  # o_t ⊙ tanh(C_t), recomputed
        dw_hr = w_hr.new_empty(w_hr.shape)
        matmul_at(_rows(dh_t.numpy()), _rows(_np(m)), dw_hr.numpy(), 0.0)
    return dx, dh, dc, dw_ih, dw_hh, db, dw_hr, norms


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
    hs = _project(x, w_ih, b_ih, b_hh)  # becomes h_1 .. h_T in place
    h = h0.clone(memory_format=torch.contiguous_format)
    with step_threads(2 * hs.shape[1] * hs.shape[2] ** 2):
        rnn.forward(
            hs.numpy(),
            h.numpy(),
            _lengths(lengths),
            _np(w_hh),
            nonlinearity == "relu",
            np.empty(hs.shape[2], np.int32),
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
    """See :func:`longshort.engine.reference.rnn_backward`; also returns norms (T, B, 1)."""
    dh = d_hn.clone(memory_format=torch.contiguous_format)
    da = torch.empty_like(hs)
    norms = x.new_empty(hs.shape[0], hs.shape[1], 1)
    with step_threads(2 * hs.shape[1] * hs.shape[2] ** 2):
        rnn.backward(
            _np(d_out),
            dh.numpy(),
            _np(hs),
            _lengths(lengths),
            _np(w_hh),
            nonlinearity == "relu",
            da.numpy(),
            np.empty_like(dh.numpy()),
            norms.numpy(),
        )
    dx, dw_ih, dw_hh, db = _input_and_weight_grads(da, x, h0, hs, w_ih)
    return dx, dh, dw_ih, dw_hh, db, norms
