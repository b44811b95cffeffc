"""``longshort.LSTM``: a drop-in for ``torch.nn.LSTM`` running longshort's engine."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from longshort import engine
from longshort.engine.types import LSTMWeights
from longshort.nn import onnx, variants
from longshort.nn.base import LayerTrace, Prepared, RecurrentBase


class LSTM(variants.PicklesOptions, RecurrentBase):
    """Multi-layer LSTM (Hochreiter and Schmidhuber 1997, with the forget gate of Gers et al.
    2000) and its handwritten BPTT:

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     f_t = σ(W_if x_t + ... + b_hf)
        C~_t = tanh(W_ig x_t + ... + b_hg)                  o_t = σ(W_io x_t + ... + b_ho)
        C_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t                    h_t = o_t ⊙ tanh(C_t)

    Same constructor, parameters, shapes and return values as ``torch.nn.LSTM``:
    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None)``.

    Extras:
      forget_bias: if given, the forget-gate biases start at this value (``bias_ih``'s forget
        block set to it, ``bias_hh``'s to 0), as Jozefowicz et al. (2015) recommend with 1.0.
        Default None keeps torch's initialisation, so seeded models match ``torch.nn.LSTM``.
      input_bias: if given, the input-gate biases start at this value, in the same way. A
        negative value starts the gates closed, as Hochreiter and Schmidhuber (1997) did, so
        the cell is not filled with every input before the network learns what to store.
      lengths (forward): (B,) integer tensor on any device, in any order, instead of packing.
      recompute_segment: if set to S, training runs each layer in segments of S steps and
        recomputes a segment's gates during BPTT instead of keeping them, so memory grows
        with T/S + S instead of T (S near sqrt(T) is the usual choice). Same results.
      Variants (any combination; equations in the README and in
        :mod:`longshort.cells.lstm_variant`; ``to_torch()`` refuses them):
      forget_gate: False runs the LSTM of Hochreiter and Schmidhuber (1997), f_t = 1: the
        pure constant error carousel; the weights then hold 3 gate blocks [i, g, o].
      peephole: True lets i_t and f_t see C_{t-1} and o_t see C_t (Gers and Schmidhuber
        2000) through diagonal weights ``weight_ch_l{k}``.
      coupled_gates: True sets i_t = 1 - f_t (CIFG); 3 gate blocks [f, g, o].
      layer_norm: True normalises the input and recurrent pre-activations and the cell state
        before tanh (Ba et al. 2016), with gains ``weight_ln_{ih,hh,c}_l{k}`` and bias
        ``bias_ln_c_l{k}``.
      zoneout: z or (z_c, z_h): in training each unit keeps its previous C (h) with
        probability z_c (z_h); in evaluation the expectation (Krueger et al. 2017).
      recurrent_dropout: p: in training, one dropout mask per sequence on h_{t-1} in the
        recurrent product (Gal and Ghahramani 2016).
      check_finite: if True, a NaN or inf in the input or the initial states raises ValueError
        naming where it is, and one in a layer's output raises FloatingPointError naming the
        layer, the direction and the first step where it appeared. Off by default, as in
        torch.nn: a NaN then propagates to the output (never clamped away) and no scan costs
        time.

    forward(input, hx=None, lengths=None, return_trace=False):
      input (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence;
      hx = (h_0 (L*D, B, P), c_0 (L*D, B, H)). Returns output (T, B, D*P) and (h_n, c_n);
      padded steps of output are zero and h_n, c_n come from each sequence's own last step.
      With return_trace=True a third value lists a :class:`LayerTrace` per layer and direction.

    Example::

        >>> import torch, longshort
        >>> lstm = longshort.LSTM(8, 16, num_layers=2, batch_first=True)
        >>> out, (h_n, c_n) = lstm(torch.randn(4, 10, 8))
        >>> out.shape, h_n.shape, c_n.shape
        (torch.Size([4, 10, 16]), torch.Size([2, 4, 16]), torch.Size([2, 4, 16]))
        >>> out, _ = lstm(torch.randn(4, 10, 8), lengths=torch.tensor([10, 3, 7, 1]))
        >>> bool(out[1, 3:].eq(0).all())  # padded steps of the output are zero
        True
    """

    gate_multiplier = 4
    state_count = 2
    allows_projection = True
    options = variants.Options()  # the plain LSTM until __init__ says otherwise
    torch_class = nn.LSTM
    # torch.nn.LSTM's own versions of RNNBase's hooks, for code that calls or overrides them
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args
    permute_hidden = nn.LSTM.permute_hidden

    def __init__(
        self,
        *args,
        forget_bias: float | None = None,
        input_bias: float | None = None,
        forget_gate: bool = True,
        peephole: bool = False,
        coupled_gates: bool = False,
        layer_norm: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
        **kwargs,
    ) -> None:
        name = type(self).__name__
        self.options = variants.options(
            name, forget_gate, peephole, coupled_gates, layer_norm, zoneout, recurrent_dropout
        )
        variants.check_biases(name, self.options, forget_bias, input_bias)
        self.forget_bias, self.input_bias = forget_bias, input_bias
        super().__init__(*args, **kwargs)
        if self.options.active:
            variants.make_parameters(self, self.options.variant, self._suffixes())
            self._init_flat_weights()
            self.reset_parameters()

    def _suffixes(self) -> list[str]:
        return [
            self._param_name("", layer, direction)
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
        ]

    def _runs_variant(self) -> bool:
        return self.options.active

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + ", " + self.options.describe() if self.options.active else s

    def flatten_parameters(self) -> None:
        """torch.nn's (cuDNN's weight layout); a no-op for variants, which cuDNN cannot run."""
        if not self.options.active:
            super().flatten_parameters()

    def to_torch(self) -> nn.RNNBase:
        if self.options.active:
            raise ValueError(
                f"{type(self).__name__}.to_torch: torch.nn.LSTM cannot express "
                f"{self.options.describe()}; only the plain LSTM converts"
            )
        return super().to_torch()

    def _mode(self) -> str:
        return "LSTM"

    def _export_forward(self, input: object, hx: object, lengths: object, return_trace: bool):
        if self.options.active:
            name = type(self).__name__
            onnx.check_exportable(name, self.options)
            if self.proj_size or isinstance(input, PackedSequence):
                what = "proj_size" if self.proj_size else "a PackedSequence input"
                raise ValueError(f"{name}: torch.onnx.export of a variant cannot take {what}")
        return super()._export_forward(input, hx, lengths, return_trace)

    def _onnx_node(self, x: Tensor, states: list[Tensor], layer: int) -> list[Tensor]:
        weights = [
            variants.weights(self, self._param_name("", layer, d))
            for d in range(self.num_directions)
        ]
        return onnx.lstm_node(x, *states, weights, self.options.variant, self.hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if not self.bias:
            return
        h = self.hidden_size
        if self.options.active:
            variants.reset_extras(self, self._suffixes(), h)
        blocks = variants.bias_blocks(self.options.variant)
        with torch.no_grad():
            for layer in range(self.num_layers):
                for direction in range(self.num_directions):
                    _, _, b_ih, b_hh, _ = self.layer_weights(layer, direction)
                    for gate, value in (("forget", self.forget_bias), ("input", self.input_bias)):
                        if value is not None:
                            block = blocks[gate]
                            b_ih[block * h : (block + 1) * h] = value
                            b_hh[block * h : (block + 1) * h] = 0.0

    def _run_layer(
        self,
        x: Tensor,
        states: tuple[Tensor, ...],
        layer: int,
        direction: int,
        lengths: Tensor | None,
        segment: int = 0,
        trace: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...], LayerTrace]:
        h0, c0 = states
        plain = self.options.runs_plain(self.training) and not trace  # a trace keeps its extras
        if self.options.active and not plain:
            return self._run_variant(x, states, layer, direction, lengths, segment, trace)
        w = self.layer_weights(layer, direction)
        out, h_n, c_n, gates, cs = engine.lstm_layer(
            x, h0, c0, *w, lengths=lengths, segment=segment, keep=trace
        )
        return out, (h_n, c_n), LayerTrace(gates, cs[1:] if trace else cs)

    def _stacks(self, prep: Prepared, want_trace: bool) -> bool:
        """One :func:`engine.lstm_stack` call for the whole stack where it computes what the
        layer loop would: the plain LSTM (or a variant that computes it in evaluation), one
        direction, no projection, no trace, lengths or NaN scan, no dropout drawn between
        layers, no segments kept for BPTT."""
        return not (
            want_trace
            or prep.lengths is not None
            or self.check_finite
            or self.bidirectional
            or self.proj_size
            or (self.options.active and not self.options.runs_plain(self.training))
            or (self.training and self.dropout and self.num_layers > 1)
            or (self.recompute_segment and torch.is_grad_enabled())
        )

    def _run_stack(
        self, x: Tensor, states: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...], list[LayerTrace]]:
        ws = [LSTMWeights(*self.layer_weights(layer, 0)[:4]) for layer in range(self.num_layers)]
        out, h_n, c_n = engine.lstm_stack(x, *states, ws)
        return out, (h_n, c_n), []

    def _run_variant(
        self,
        x: Tensor,
        states: tuple[Tensor, ...],
        layer: int,
        direction: int,
        lengths: Tensor | None,
        segment: int,
        trace: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...], LayerTrace]:
        sizes = (self.hidden_size, self.output_size)
        masks = variants.draw_masks(self.options, x, sizes, self.training)
        w = variants.weights(self, self._param_name("", layer, direction))
        v = self.options.variant
        res = engine.variant_layer(x, *states, w, v, masks, lengths, segment, keep=trace)
        return res.out, (res.h_n, res.c_n), LayerTrace(res.gates, res.cs, variant=(w, v))

    def _finish_trace(self, trace: LayerTrace) -> LayerTrace:
        """A variant's trace in the plain LSTM's terms: [i, f, g, o], C_t, and the extras."""
        if trace.variant is None:
            return trace
        w, v = trace.variant
        gates, cs = trace.gates.detach(), trace.cells.detach()
        with torch.no_grad():
            extras = variants.cell_output(gates, cs, w, v)
        return LayerTrace(variants.full_gates(gates, v), cs[1:], extras=extras)
