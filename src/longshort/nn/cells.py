"""``longshort.LSTMCell``, ``RNNCell`` and ``GRUCell``: one step, drop-ins for torch.nn's cells.

They run the same engine as the layers with a one-step sequence, so a hand-written loop over
these cells gets the handwritten backward too.
"""

from __future__ import annotations

from torch import Tensor, nn

from longshort import engine
from longshort.cells.rnn import NONLINEARITIES
from longshort.nn import checks, onnx, variants


class _CellBase(nn.RNNCellBase):
    """Base of the cells: torch.nn.RNNCellBase's constructor, parameters, initialisation and
    repr; LSTMCell subclasses torch.nn.LSTMCell and RNNCell torch.nn.RNNCell."""

    gate_multiplier: int

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        name = type(self).__name__
        for arg, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                kind = "a positive int" if low else "an int >= 0"
                raise ValueError(f"{name}: {arg} must be {kind}, got {value!r}")
        if not isinstance(bias, bool):
            raise TypeError(f"{name}: bias must be a bool, got {type(bias).__name__}")
        nn.RNNCellBase.__init__(
            self, input_size, hidden_size, bias, self.gate_multiplier, device, dtype
        )

    def _check(
        self, input: object, hx: tuple | None, count: int
    ) -> tuple[Tensor, list[Tensor], bool]:
        """Returns input as (B, I), states as (B, H) each (zeros if hx is None), unbatched."""
        name = type(self).__name__
        x = checks.check_tensor(name, "input", input)
        if x.dim() not in (1, 2) or x.shape[-1] != self.input_size:
            raise checks.InputError(
                f"{name}: input must have shape (batch, {self.input_size}) or "
                f"({self.input_size},), got {checks.shape_str(x)}"
            )
        checks.check_like(name, "input", x, self.weight_ih.dtype, self.weight_ih.device)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        if hx is None:
            return x, [x.new_zeros(x.shape[0], self.hidden_size) for _ in range(count)], unbatched
        states = []
        expected = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        for label, state in zip(("h_0", "c_0")[:count], hx, strict=True):
            state = checks.check_tensor(name, label, state)
            checks.check_shape(name, label, state, expected, "matching input's batch")
            checks.check_like(name, label, state, self.weight_ih.dtype, self.weight_ih.device)
            states.append(state.unsqueeze(0) if unbatched else state)
        return x, states, unbatched


class LSTMCell(variants.PicklesOptions, _CellBase, nn.LSTMCell):
    """One LSTM step. forward(input (B, I) or (I,), hx=(h (B, H), c (B, H))) -> (h', c').

    The variant options of :class:`longshort.LSTM` apply here too (forget_gate, peephole,
    coupled_gates, layer_norm, zoneout, recurrent_dropout), with the parameters named without
    the layer suffix (``weight_ch``, ``weight_ln_ih``, ...). A cell sees one step, so in
    training it draws its zoneout and recurrent dropout masks at every call; for one recurrent
    dropout mask per sequence, run :class:`longshort.LSTM` over the sequence instead.
    """

    gate_multiplier = 4
    options = variants.Options()  # the plain LSTM until __init__ says otherwise

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        forget_gate: bool = True,
        peephole: bool = False,
        coupled_gates: bool = False,
        layer_norm: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
        recurrent_dropout: float = 0.0,
    ) -> None:
        self.options = variants.options(
            type(self).__name__,
            forget_gate,
            peephole,
            coupled_gates,
            layer_norm,
            zoneout,
            recurrent_dropout,
        )
        super().__init__(input_size, hidden_size, bias, device, dtype)
        if self.options.active:
            variants.make_parameters(self, self.options.variant, [""])
            self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.options.active:
            variants.reset_extras(self, [""], self.hidden_size)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + ", " + self.options.describe() if self.options.active else s

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, tuple | list) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
        if onnx.exporting():
            return self._export_forward(input, hx)
        x, (h0, c0), unbatched = self._check(input, hx, 2)
        if self.options.active and not self.options.runs_plain(self.training):
            h, c = self._variant_step(x, h0, c0)
        else:
            w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
            h, c = engine.lstm_cell(x, h0, c0, *w)
        return (h[0], c[0]) if unbatched else (h, c)

    def _export_forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None):
        """What torch.onnx.export records (:mod:`longshort.nn.onnx`): torch.nn's step, or for a
        variant one step of ONNX's LSTM operator."""
        if not self.options.active:
            return nn.LSTMCell.forward(self, input, hx)
        onnx.check_exportable(type(self).__name__, self.options)
        x = input.unsqueeze(0) if input.dim() == 1 else input
        h0, c0 = (x.new_zeros(x.shape[0], self.hidden_size),) * 2 if hx is None else hx
        h0, c0 = (h0.unsqueeze(0), c0.unsqueeze(0)) if input.dim() == 1 else (h0, c0)
        w = variants.weights(self, "")
        _, h, c = onnx.lstm_node(
            x[None], h0[None], c0[None], [w], self.options.variant, self.hidden_size
        )
        return (h[0, 0], c[0, 0]) if input.dim() == 1 else (h[0], c[0])

    def _variant_step(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor]:
        size = (self.hidden_size, self.hidden_size)
        masks = variants.draw_masks(self.options, x[None], size, self.training)
        w = variants.weights(self, "")
        res = engine.variant_layer(x[None], h0, c0, w, self.options.variant, masks)
        return res.h_n, res.c_n


class RNNCell(_CellBase, nn.RNNCell):
    """One Elman RNN step. forward(input (B, I) or (I,), hx (B, H)) -> h'."""

    gate_multiplier = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if onnx.exporting():  # torch.nn's step (longshort.nn.onnx)
            return nn.RNNCell.forward(self, input, hx)
        x, (h0,), unbatched = self._check(input, None if hx is None else (hx,), 1)
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        h = engine.rnn_cell(x, h0, *w, nonlinearity=self.nonlinearity)
        return h[0] if unbatched else h


class GRUCell(_CellBase, nn.GRUCell):
    """One GRU step (torch's formulation). forward(input (B, I) or (I,), hx (B, H)) -> h'."""

    gate_multiplier = 3

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if onnx.exporting():  # torch.nn's step (longshort.nn.onnx)
            return nn.GRUCell.forward(self, input, hx)
        x, (h0,), unbatched = self._check(input, None if hx is None else (hx,), 1)
        w = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        h = engine.gru_cell(x, h0, *w)
        return h[0] if unbatched else h
