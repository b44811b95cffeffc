"""``longshort.LSTM``: a drop-in for ``torch.nn.LSTM`` running longshort's engine."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longshort import engine
from longshort.nn.base import LayerTrace, RecurrentBase


class LSTM(RecurrentBase):
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
    """

    gate_multiplier = 4
    state_count = 2
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
        **kwargs,
    ) -> None:
        self.forget_bias, self.input_bias = forget_bias, input_bias
        super().__init__(*args, **kwargs)

    def _mode(self) -> str:
        return "LSTM"

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if not self.bias:
            return
        h = self.hidden_size
        with torch.no_grad():
            for layer in range(self.num_layers):
                for direction in range(self.num_directions):
                    _, _, b_ih, b_hh, _ = self.layer_weights(layer, direction)
                    for block, value in ((1, self.forget_bias), (0, self.input_bias)):
                        if value is not None:
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
    ) -> tuple[Tensor, tuple[Tensor, ...], LayerTrace]:
        h0, c0 = states
        out, h_n, c_n, gates, cs = engine.lstm_layer(
            x, h0, c0, *self.layer_weights(layer, direction), lengths=lengths, segment=segment
        )
        return out, (h_n, c_n), LayerTrace(gates, cs[1:])
