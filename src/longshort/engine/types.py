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

    dx: Tensor | None  # (T, B, I); None where the caller said it needs none (need_dx)
    dh0: Tensor  # (B, P)
    dc0: Tensor  # (B, H)
    dw_ih: Tensor  # (G, I)
    dw_hh: Tensor  # (G, P)
    db: Tensor  # (G,), the gradient of b_ih and of b_hh alike
    dw_hr: Tensor | None  # (P, H), None without projection
    norms: Tensor  # (T, B, 2): ||dL/dh_t|| and ||dL/dC_t|| of every step, 0 at padding


class LSTMVariant(NamedTuple):
    """Which of the LSTM's variants a layer runs (hashable, fixed per module).

    The gate blocks of the weights (G = blocks * H rows) are [i, f, g, o] with the forget gate,
    [i, g, o] without it (``forget_gate=False``: f_t = 1, the 1997 LSTM) and [f, g, o] with
    coupled gates (``coupled=True``: i_t = 1 - f_t). Peephole weights follow the same order
    without g: [p_i, p_f, p_o], [p_i, p_o] or [p_f, p_o].
    """

    forget_gate: bool = True
    peephole: bool = False
    coupled: bool = False
    layer_norm: bool = False

    @property
    def blocks(self) -> int:
        """Gate blocks in the weights: 4, or 3 without a forget gate or with coupled gates."""
        return 4 if self.forget_gate and not self.coupled else 3

    @property
    def has_input_gate(self) -> bool:
        return not self.coupled


class VariantWeights(NamedTuple):
    """One variant LSTM layer and direction (G = blocks * H, see :class:`LSTMVariant`)."""

    w_ih: Tensor  # (G, I)
    w_hh: Tensor  # (G, P)
    b_ih: Tensor | None = None  # (G,)
    b_hh: Tensor | None = None  # (G,)
    w_hr: Tensor | None = None  # (P, H), the projection (proj_size)
    w_ch: Tensor | None = None  # ((blocks - 1) * H,), the peepholes, with peephole
    ln_ih: Tensor | None = None  # (G,), gain of LN(W x_t), with layer_norm
    ln_hh: Tensor | None = None  # (G,), gain of LN(U h_{t-1}), with layer_norm
    ln_c_w: Tensor | None = None  # (H,), gain of LN(C_t), with layer_norm
    ln_c_b: Tensor | None = None  # (H,), bias of LN(C_t), with layer_norm

    def input_bias(self) -> Tensor | None:
        """The input part's bias: b_ih + b_hh, or whichever is present, or None."""
        if self.b_ih is None or self.b_hh is None:
            return self.b_ih if self.b_hh is None else self.b_hh
        return self.b_ih + self.b_hh


class VariantMasks(NamedTuple):
    """The random (training) or expected (evaluation) masks of one call, drawn by the module.

    zone_c (T or 1, B or 1, H) and zone_h (T or 1, B or 1, P): the probability (evaluation) or
    the 0/1 draw (training) of each unit keeping its previous C or h (zoneout), None for none;
    keep (B, P): the recurrent dropout mask on h_{t-1}, 0 or 1/(1-p), one per sequence, or None.
    """

    zone_c: Tensor | None = None
    zone_h: Tensor | None = None
    keep: Tensor | None = None

    def at(self, t: int) -> VariantMasks:
        """The masks of step t: zone_c (B or 1, H), zone_h (B or 1, P), keep (B, P)."""
        zc, zh = self.zone_c, self.zone_h
        return VariantMasks(
            None if zc is None else zc[t if zc.shape[0] > 1 else 0],
            None if zh is None else zh[t if zh.shape[0] > 1 else 0],
            self.keep,
        )

    def steps(self, start: int, stop: int) -> VariantMasks:
        """The masks of steps [start, stop) (recomputation in segments)."""

        def part(m: Tensor | None) -> Tensor | None:
            return m if m is None or m.shape[0] == 1 else m[start:stop]

        return VariantMasks(part(self.zone_c), part(self.zone_h), self.keep)


class VariantForward(NamedTuple):
    """What a variant layer's recurrent loop returns; all but out, h_n, c_n are saved for BPTT."""

    out: Tensor  # (T, B, P), zero at padded steps
    h_n: Tensor  # (B, P)
    c_n: Tensor  # (B, H)
    gates: Tensor  # (T, B, G): the gate blocks after their nonlinearities
    cs: Tensor  # (T+1, B, H) = [C_0 .. C_T], the carried cell states (after zoneout)
    rec: Tensor  # (T, B, G) the recurrent products U h_{t-1} (layer_norm), else (0,)


class InputPart(NamedTuple):
    """What a variant layer's BPTT needs of its input part: with layer norm W x_t (T, B, G)
    and its mean and 1/std per row (T, B, 1); empty tensors without."""

    wx: Tensor
    mean: Tensor
    rstd: Tensor


class VariantLoopGrads(NamedTuple):
    """What a variant layer's BPTT loop returns; the weight gradients follow from these."""

    da: Tensor  # (T, B, G): dL/da_t at the gates' pre-activations (input and bias path)
    dr: Tensor  # (T, B, G): dL/d(U h_{t-1}) (layer_norm), else the same tensor as da
    dhp: Tensor | None  # (T, B, P): dL/dh'_t at the projection's output (proj_size), else None
    dh0: Tensor  # (B, P)
    dc0: Tensor  # (B, H)
    norms: Tensor  # (T, B, 2): ||dL/dh_t|| and ||dL/dC_t|| of every step, 0 at padding
    w_ch: Tensor | None = None  # the gradients of the weights used inside the loop, or None
    ln_hh: Tensor | None = None
    ln_c_w: Tensor | None = None
    ln_c_b: Tensor | None = None
    # with layer norm on an engine that normalises W x_t in its loop (da is then dL/d(W x_t)):
    ln_ih: Tensor | None = None  # (G,) dL/dγ_x
    bias: Tensor | None = None  # (G,) dL/db, b = b_ih + b_hh


class VariantStepSaved(NamedTuple):
    """What one step of a variant cell (:class:`StepEngine`'s ``variant_step``) keeps for its
    BPTT."""

    gates: Tensor  # (B, G): the gate blocks after their nonlinearities
    cs: Tensor  # (2, B, H) = [C_0, C_1]
    rec: Tensor  # (B, G) U (m ⊙ h_0) with layer_norm, else empty
    wx: Tensor  # (B, G) W x with layer_norm, else empty


class VariantGrads(NamedTuple):
    """What a variant layer's BPTT returns, one gradient per input of the layer."""

    dx: Tensor | None  # (T, B, I); None where the caller said it needs none (need_dx)
    dh0: Tensor | None  # (B, P); None likewise (need_dh0, one step of a cell)
    dc0: Tensor  # (B, H)
    weights: VariantWeights  # gradients in the weights' fields; None where a weight is None
    norms: Tensor  # (T, B, 2)


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
    normalises_input: bool
    """Whether the variant loop normalises the input part itself (layer norm): its
    variant_forward then takes xa = W x_t without bias and an InputPart whose mean and rstd it
    fills, and its variant_backward takes that InputPart and returns da = dL/d(W x_t) with
    the gradients of γ_x and the bias (VariantLoopGrads.ln_ih, .bias)."""

    def saved_dtype(self, x: Tensor) -> torch.dtype:
        """The dtype of the gates and states this engine saves for x."""
        ...

    def lstm_forward(
        self, x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
    ) -> LSTMForward: ...

    def lstm_infer(
        self, x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights, lengths: Tensor | None
    ) -> LSTMForward:
        """lstm_forward for a call that needs no BPTT and no trace: gates and cs may come
        back empty."""
        ...

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
        need_dx: bool = True,
    ) -> LSTMGrads:
        """need_dx=False: the input needs no gradient (a first layer's data), and an engine
        may skip dx = dz W_ih over all T*B rows, returning None."""
        ...

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

    def project(self, x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
        """W x_t + bias for all T steps: (T, B, G)."""
        ...

    def variant_infer(
        self,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w: VariantWeights,
        v: LSTMVariant,
        masks: VariantMasks,
        lengths: Tensor | None,
    ) -> VariantForward:
        """A variant LSTM layer over x (T, B, I) for a call with no graph to record: input
        part and loop, as :meth:`variant_forward` with keep=False returns them (an engine
        may make W x_t inside its loop and keep nothing per step)."""
        ...

    def product_grads(
        self,
        d_in: Tensor,
        d_rec: Tensor,
        x: Tensor,
        h_prev: Tensor,
        w_ih: Tensor,
        need_dx: bool = True,
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """dx (None unless need_dx), dW_ih, dW_hh from the gradients at the input and
        recurrent products."""
        ...

    def variant_forward(
        self,
        xa: Tensor,
        h0: Tensor,
        c0: Tensor,
        w: VariantWeights,
        v: LSTMVariant,
        masks: VariantMasks,
        lengths: Tensor | None,
        keep: bool = True,
        part: InputPart | None = None,
    ) -> VariantForward:
        """The recurrent loop of a variant LSTM layer; xa (T, B, G) is its input part, made
        for this call (an engine may turn it into the gates in place). keep=False (no graph
        to record): an engine may return gates, cs and rec empty, keeping nothing per step.
        part: where the engine normalises the input part (normalises_input and layer norm),
        the InputPart whose wx is xa and whose mean and rstd the loop fills, else None."""
        ...

    def variant_backward(
        self,
        d_out: Tensor,
        d_hn: Tensor,
        d_cn: Tensor,
        h0: Tensor,
        w: VariantWeights,
        v: LSTMVariant,
        masks: VariantMasks,
        lengths: Tensor | None,
        saved: VariantForward,
        part: InputPart | None = None,
    ) -> VariantLoopGrads:
        """part: the InputPart the forward filled, where the engine normalises the input
        part (normalises_input and layer norm), else None."""
        ...

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


class StepEngine(Protocol):
    """One step of a cell, every row, in one call each way (the compiled engine's; the
    reference engine runs a one-step layer instead). Shapes: x (B, I), h0, c0 (B, H)."""

    def lstm_step(
        self, x: Tensor, h0: Tensor, c0: Tensor, w: LSTMWeights
    ) -> tuple[Tensor, Tensor, Tensor]:
        """h_1, C_1 (B, H) and the gates (B, 4H) BPTT reads."""
        ...

    def lstm_step_backward(
        self,
        dh: Tensor,
        dc: Tensor,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w: LSTMWeights,
        z: Tensor,
        c: Tensor,
        need_dx: bool = True,
        need_dh0: bool = True,
    ) -> tuple[Tensor | None, ...]:
        """dx, dh0, dc0, dW_ih, dW_hh, db and the norms (1, B, 2); dx may be None unless
        need_dx, dh0 unless need_dh0."""
        ...

    def gru_step(self, x: Tensor, h0: Tensor, w: GRUWeights) -> tuple[Tensor, Tensor]:
        """h_1 (B, H) and the gates (B, 4H) BPTT reads."""
        ...

    def gru_step_backward(
        self,
        dh: Tensor,
        x: Tensor,
        h0: Tensor,
        w: GRUWeights,
        gates: Tensor,
        need_dx: bool = True,
        need_dh0: bool = True,
    ) -> tuple[Tensor | None, ...]:
        """dx, dh0, dW_ih, dW_hh, db_ih, db_hh (None without bias) and the norms (1, B, 1)."""
        ...

    def variant_step(
        self,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        w: VariantWeights,
        v: LSTMVariant,
        masks: VariantMasks,
    ) -> tuple[Tensor, Tensor, VariantStepSaved]:
        """h_1, C_1 (B, H) of a variant LSTMCell, and what its BPTT reads; masks as
        :class:`VariantMasks` says, over one step (1, …)."""
        ...

    def variant_step_backward(
        self,
        dh: Tensor,
        dc: Tensor,
        x: Tensor,
        h0: Tensor,
        w: VariantWeights,
        v: LSTMVariant,
        masks: VariantMasks,
        saved: VariantStepSaved,
        need_dx: bool = True,
        need_dh0: bool = True,
    ) -> VariantGrads:
        """BPTT of :meth:`variant_step`: the gradients of x (None may come back unless
        need_dx), h0, c0 and the weights; norms (1, B, 2)."""
        ...

    def rnn_step(self, x: Tensor, h0: Tensor, w: RNNWeights, nonlinearity: str) -> Tensor:
        """h_1 (B, H)."""
        ...

    def rnn_step_backward(
        self,
        dh: Tensor,
        x: Tensor,
        h0: Tensor,
        h: Tensor,
        w: RNNWeights,
        nonlinearity: str,
        need_dx: bool = True,
        need_dh0: bool = True,
    ) -> tuple[Tensor | None, ...]:
        """dx, dh0, dW_ih, dW_hh, db and the norms (1, B, 1)."""
        ...


class CompiledEngine(Engine, StepEngine, Protocol):
    """The compiled engine (:mod:`longshort.engine.cpu.compiled`): an :class:`Engine` and a
    :class:`StepEngine`, and the calls it runs; :mod:`longshort.engine.dispatch` sends the
    others to the reference engine."""

    def supports_lstm(self, x: Tensor, w: LSTMWeights) -> bool: ...

    def supports_variant(self, x: Tensor, w: VariantWeights) -> bool: ...

    def supports_rnn(self, x: Tensor) -> bool: ...

    def supports_gru(self, x: Tensor) -> bool: ...

    def supports_step(self, x: Tensor, w: LSTMWeights | VariantWeights | None = None) -> bool: ...

    def supports_stack(self, x: Tensor) -> bool: ...

    def lstm_stack_infer(
        self, x: Tensor, h0: Tensor, c0: Tensor, ws: list[LSTMWeights]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A unidirectional LSTM stack without projection and without a graph: x (T, B, I);
        h0, c0 (L, B, H); ws: one LSTMWeights a layer. Returns out (T, B, H), h_n, c_n."""
        ...
