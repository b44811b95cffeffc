"""The compiled CPU engine: the same functions as :mod:`longshort.engine.reference`, with the
recurrent loops in numba (:mod:`.lstm`, :mod:`.rnn`).

Every matrix product of the op, the per-step recurrent ones and the large ones (input
projections of all steps, weight gradients over all T*B rows), goes to one BLAS, so a call
runs on one thread pool: mixing it with torch's OpenMP pool made both spin against each other
on small machines. Compiled code is cached on disk by numba: only a first process compiles.

bfloat16 (with MKL): the products take bf16 operands and accumulate in float32 (AMX where the
CPU has it); the gates, the cell state and the recurrent state stay float32, and only the
layer's outputs and gradients are rounded back to bf16. Projections (proj_size) and the RNN in
bf16 run on the reference engine.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from longshort.engine import reference
from longshort.engine.cpu import cache

cache.refresh()

from longshort.engine.cpu import lstm, rnn  # noqa: E402
from longshort.engine.cpu.activations import gate_coefficients  # noqa: E402
from longshort.engine.cpu.blas import (  # noqa: E402
    BF16,
    matmul_at,
    matmul_w,
    matmul_wt,
    step_threads,
)

__all__ = ["BF16", "lstm_backward", "lstm_forward", "rnn_backward", "rnn_forward"]

_NO_BF16 = np.empty((1, 1), np.uint16)  # the bf16 scratch, unused by float32/float64 weights


def _np(t: Tensor) -> np.ndarray:
    """A C-contiguous NumPy view (or copy, when t is strided) of a CPU tensor; bfloat16 as the
    uint16 bits the bf16 products take."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _acc(t: Tensor) -> torch.dtype:
    """The dtype the engine computes and keeps state in: float32 for bfloat16 tensors."""
    return torch.float32 if t.dtype == torch.bfloat16 else t.dtype


def _bf16_scratch(t: Tensor, rows: int, cols: int) -> np.ndarray:
    return np.empty((rows, cols), np.uint16) if t.dtype == torch.bfloat16 else _NO_BF16


def _lengths(lengths: Tensor | None) -> np.ndarray:
    return np.empty(0, np.int64) if lengths is None else _np(lengths)


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])


def _project(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor:
    """z = W·x_t + b for all T steps as one (T*B, I) @ (I, G) product: (T, B, G)."""
    steps, batch, _ = x.shape
    z = x.new_empty(steps, batch, w_ih.shape[0], dtype=_acc(x))
    zn = z.numpy()
    zn[:] = 0.0 if b_ih is None else (b_ih.to(z.dtype) + b_hh.to(z.dtype)).numpy()
    matmul_wt(_rows(_np(x)), _np(w_ih), _rows(zn), 1.0)
    return z


def _input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx = dz W, dW_ih = Σ_t dz_tᵀ x_t, dW_hh = Σ_t dz_tᵀ h_{t-1}, db = Σ_t dz_t: one product
    each over all T*B rows, in x's dtype. hs (T, B, P) holds h_1 .. h_T."""
    acc, dtype = dz.dtype, x.dtype
    dzn, xn, wn = _np(dz.to(dtype)), _np(x), _np(w_ih)
    dx = x.new_empty(x.shape, dtype=acc)
    dw_ih = w_ih.new_empty(w_ih.shape, dtype=acc)
    dw_hh = w_ih.new_empty(dz.shape[2], h0.shape[1], dtype=acc)
    matmul_w(_rows(dzn), wn, _rows(dx.numpy()), 0.0)
    matmul_at(_rows(dzn), _rows(xn), dw_ih.numpy(), 0.0)
    matmul_at(dzn[0], _np(h0), dw_hh.numpy(), 0.0)  # h_{t-1} is h_0 at t = 0 ...
    if dz.shape[0] > 1:
        matmul_at(_rows(dzn[1:]), _rows(_np(hs)[:-1]), dw_hh.numpy(), 1.0)  # ... then h
    db = dz.sum(dim=(0, 1))
    return dx.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype), db.to(dtype)


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
    if x.dtype == torch.bfloat16 and w_hr is not None:
        return reference.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths)
    steps, batch, _ = x.shape
    hidden, out_size = c0.shape[1], h0.shape[1]
    gates = _project(x, w_ih, b_ih, b_hh)  # becomes the gates in place
    out = x.new_empty(steps, batch, out_size, dtype=gates.dtype)
    cs = x.new_empty(steps + 1, batch, hidden, dtype=gates.dtype)
    cs[0] = c0
    h = h0.to(gates.dtype, memory_format=torch.contiguous_format, copy=True)
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
            _bf16_scratch(x, batch, out_size),
        )
    if x.dtype == out.dtype:
        return out, h, cs[steps].clone(), gates, cs
    return out.to(x.dtype), h.to(x.dtype), cs[steps].to(x.dtype), gates, cs


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
    if x.dtype == torch.bfloat16 and w_hr is not None:
        return reference.lstm_backward(
            d_out, d_hn, d_cn, x, h0, w_ih, w_hh, w_hr, lengths, out, gates, cs
        )
    steps, batch, _ = x.shape
    hidden, out_size = cs.shape[2], out.shape[2]
    acc = gates.dtype
    dh = d_hn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dc = d_cn.to(acc, memory_format=torch.contiguous_format, copy=True)
    dz = torch.empty_like(gates)
    norms = x.new_empty(steps, batch, 2, dtype=acc)
    dh_t = x.new_empty(steps if w_hr is not None else 1, batch, out_size, dtype=acc)
    dtype = dz.numpy().dtype
    with step_threads(2 * batch * 4 * hidden * out_size):
        lstm.backward(
            _np(d_out.to(acc)),
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
            _bf16_scratch(x, batch, 4 * hidden),
        )
    dx, dw_ih, dw_hh, db = _input_and_weight_grads(dz, x, h0, out, w_ih)
    dw_hr = None
    if w_hr is not None:
        m = gates[..., 3 * hidden :] * torch.tanh(cs[1:])  # o_t ⊙ tanh(C_t), recomputed
        dw_hr = w_hr.new_empty(w_hr.shape)
        matmul_at(_rows(dh_t.numpy()), _rows(_np(m)), dw_hr.numpy(), 0.0)
    return dx, dh.to(x.dtype), dc.to(x.dtype), dw_ih, dw_hh, db, dw_hr, norms


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
    if x.dtype == torch.bfloat16:
        return reference.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, nonlinearity)
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
    if x.dtype == torch.bfloat16:
        return reference.rnn_backward(d_out, d_hn, x, h0, w_ih, w_hh, lengths, hs, nonlinearity)
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
