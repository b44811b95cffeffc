"""The engine interface: what goes into a layer's forward and BPTT, and what comes out.

Every engine (:mod:`longshort.engine.reference`, :mod:`longshort.engine.cpu.compiled`) implements
:class:`Engine` with these named tuples; :mod:`longshort.engine.dispatch` alone decides which one
runs a call, and :mod:`longshort.engine.ops` flattens the tuples into plain tensors only where
``torch.library`` needs them.

Shapes: T steps, B batch, I input size, H hidden size, P size of h (``proj_size`` or H).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class LSTMWeights(NamedTuple):
    """One LSTM layer and direction; gate blocks in torch's order i, f, g, o (G = 4H)."""

    w_ih: Tensor  # (G, I)
    w_hh: Tensor  # (G, P)
    b_ih: Tensor | None = None  # (G,)
    b_hh: Tensor | None = None  # (G,)
    w_hr: Tensor | None = None  # (P, H), the projection (proj_size)


class LSTMForward(NamedTuple):
    """What an LSTM layer's forward returns; gates and cs are saved for BPTT (no gradient)."""

    out: Tensor  # (T, B, P), zero at padded steps
    h_n: Tensor  # (B, P)
    c_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, G) = [i, f, g, o] after their nonlinearities
    cs: Tensor  # (T+1, B, H) = [C_0 .. C_T]


class LSTMGrads(NamedTuple):
    """What an LSTM layer's BPTT returns."""

    dx: Tensor  # (T, B, I)
    dh0: Tensor  # (B, P)
    dc0: Tensor  # (B, H)
    dw_ih: Tensor  # (G, I)
    dw_hh: Tensor  # (G, P)
    db: Tensor  # (G,), the gradient of b_ih and of b_hh alike
    dw_hr: Tensor | None  # (P, H), None without projection
    norms: Tensor  # (T, B, 2): ||dL/dh_t|| and ||dL/dC_t|| of every step, 0 at padding


class RNNWeights(NamedTuple):
    """One vanilla RNN layer and direction."""

    w_ih: Tensor  # (H, I)
    w_hh: Tensor  # (H, H)
    b_ih: Tensor | None = None  # (H,)
    b_hh: Tensor | None = None  # (H,)


class RNNForward(NamedTuple):
    out: Tensor  # (T, B, H), zero at padded steps
    h_n: Tensor  # (B, H)
    hs: Tensor  # (T, B, H) = [h_1 .. h_T] before padding is zeroed, saved for BPTT


class RNNGrads(NamedTuple):
    dx: Tensor  # (T, B, I)
    dh0: Tensor  # (B, H)
    dw_ih: Tensor  # (H, I)
    dw_hh: Tensor  # (H, H)
    db: Tensor  # (H,)
    norms: Tensor  # (T, B, 1): ||dL/dh_t|| of every step, 0 at padding


class GRUWeights(NamedTuple):
    """One GRU layer and direction; gate blocks in torch's order r, z, n (G = 3H)."""

    w_ih: Tensor  # (G, I)
    w_hh: Tensor  # (G, H)
    b_ih: Tensor | None = None  # (G,)
    b_hh: Tensor | None = None  # (G,)


class GRUForward(NamedTuple):
    out: Tensor  # (T, B, H), zero at padded steps
    h_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, 4H) = [r, z, n, W_hn h_{t-1} + b_hn], saved for BPTT
    hs: Tensor  # (T, B, H) = [h_1 .. h_T], carried (not zeroed) at padded steps


class GRUGrads(NamedTuple):
    dx: Tensor  # (T, B, I)
    dh0: Tensor  # (B, H)
    dw_ih: Tensor  # (G, I)
    dw_hh: Tensor  # (G, H)
    db_ih: Tensor  # (G,)
    db_hh: Tensor  # (G,), unlike the LSTM's: the n block differs (it is scaled by r)
    norms: Tensor  # (T, B, 1): ||dL/dh_t|| of every step, 0 at padding


class Engine(Protocol):
    """What an engine computes: one layer, one direction, time-major, forward and BPTT.

    ``lengths`` is (B,) int64 on x's device, or None when every sequence runs all T steps;
    padded steps carry the state unchanged, output zero and pass the gradient untouched.
    ``d_out`` (T, B, P), ``d_hn`` (B, P), ``d_cn`` (B, H) are the gradients arriving at the
    layer's outputs (zeros where none arrived).
    """

    name: str

    def saved_dtype(self, x: Tensor) -> torch.dtype:
        """The dtype of the gates and states this engine saves for x."""
        ...

    def lstm_forward(
        self, x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
    ) -> LSTMForward: ...

    def lstm_backward(
        self,
        d_out: Tensor,
        d_hn: Tensor,
        d_cn: Tensor,
        x: Tensor,
        h0: Tensor,
        w: LSTMWeights,
        lengths: Tensor | None,
        saved: LSTMForward,
    ) -> LSTMGrads: ...

    def rnn_forward(
        self, x: Tensor, h0: Tensor, w: RNNWeights, lengths: Tensor | None, nonlinearity: str
    ) -> RNNForward: ...

    def rnn_backward(
        self,
        d_out: Tensor,
        d_hn: Tensor,
        x: Tensor,
        h0: Tensor,
        w: RNNWeights,
        lengths: Tensor | None,
        saved: RNNForward,
        nonlinearity: str,
    ) -> RNNGrads: ...

    def gru_forward(
        self, x: Tensor, h0: Tensor, w: GRUWeights, lengths: Tensor | None
    ) -> GRUForward: ...

    def gru_backward(
        self,
        d_out: Tensor,
        d_hn: Tensor,
        x: Tensor,
        h0: Tensor,
        w: GRUWeights,
        lengths: Tensor | None,
        saved: GRUForward,
    ) -> GRUGrads: ...
