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
    torch_class: type[nn.RNNCellBase]  # the torch.nn cell this one replaces, held from import

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        name = type(self).__name__
        for arg, value, low in (("input_size", input_size, 1), ("hidden_size", hidden_size, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                kind = "a positive int" if low else "an int >= 0"
                raise ValueError(f"{name}: {arg} must be {kind}, got {value!r}")
        if not isinstance(bias, bool):  # torch.nn's cells take anything here
            meant = bias in NONLINEARITIES and hasattr(
                self, "nonlinearity"
            )  # RNNCell(10, 20, "relu")
            hint = f" (for nonlinearity={bias!r}, pass it by keyword)" if meant else ""
            raise TypeError(
                f"{name}: bias should be of type bool, got: {type(bias).__name__}; the third "
                f"positional argument is bias{hint}"
            )
        nn.RNNCellBase.__init__(
            self, input_size, hidden_size, bias, self.gate_multiplier, device, dtype
        )

    def _weights(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """(weight_ih, weight_hh, bias_ih, bias_hh), from the parameter dict where they are
        there (``nn.Module.__getattr__`` costs a microsecond a name, at every step of a loop);
        by attribute otherwise (a parametrization, or weight norm, puts them there)."""
        p = self._parameters
        try:
            return p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]
        except KeyError:
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _check(
        self, input: object, hx: tuple | None, count: int
    ) -> tuple[Tensor, list[Tensor], bool]:
        """Returns input as (B, I), states as (B, H) each (zeros if hx is None), unbatched.
        Each message contains torch.nn's sentence for the same mistake. A cell in a loop is
        checked at every step: the messages are built only for a mistake."""
        name, size = type(self).__name__, self.input_size
        x = checks.check_tensor(name, "input", input)
        if x.dim() not in (1, 2) or x.shape[-1] != size:
            raise self._input_error(x)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        states = [self._check_state(k, count, s, x, unbatched) for k, s in enumerate(hx or ())]
        weight = self._weights()[0]  # dtypes after shapes, in torch.nn's order
        dtype, device = weight.dtype, weight.device
        for label, t in zip(("input", "h_0", "c_0"), (x, *states), strict=False):
            checks.check_like(name, label, t, dtype, device)
        if hx is None:
            return x, [x.new_zeros(x.shape[0], self.hidden_size) for _ in range(count)], unbatched
        return x, [s.unsqueeze(0) for s in states] if unbatched else states, unbatched

    def _input_error(self, x: Tensor) -> checks.InputError:
        """The error for an input of the wrong dimensions or size."""
        name, size = type(self).__name__, self.input_size
        expected = f"(batch, {size}) or ({size},)"
        if x.dim() not in (1, 2):
            return checks.InputError(
                f"{name}: Expected input to be 1D or 2D, got {x.dim()}D instead: input must "
                f"have shape {expected}, got {checks.shape_str(x)}"
            )
        return checks.InputError(
            f"{name}: input has inconsistent input_size: got {x.shape[-1]} expected {size}: "
            f"input must have shape {expected}, got {checks.shape_str(x)}"
        )

    def _check_state(self, k: int, count: int, state: object, x: Tensor, unbatched: bool) -> Tensor:
        """The shape of state k (h_0, or c_0 for k = 1) against x (B, I)."""
        state = checks.check_tensor(type(self).__name__, ("h_0", "c_0")[k], state)
        dims, hidden = 2 - unbatched, self.hidden_size
        if (
            state.dim() != dims
            or state.shape[-1] != hidden
            or not (unbatched or state.shape[0] == x.shape[0])
        ):
            raise self._state_error(k, count, state, x, unbatched)
        return state

    def _state_error(
        self, k: int, count: int, state: Tensor, x: Tensor, unbatched: bool
    ) -> checks.InputError:
        """The error for state k of the wrong shape (:meth:`_check_state`)."""
        name, hidden = type(self).__name__, self.hidden_size
        label = ("h_0", "c_0")[k]
        torch_label = f"hx[{k}]" if count == 2 else "hidden"  # torch.nn's names
        shape = (hidden,) if unbatched else (x.shape[0], hidden)
        wanted = (
            f"{label} must have shape {shape}, matching the input, got {checks.shape_str(state)}"
        )
        if state.dim() not in (1, 2):
            return checks.InputError(
                f"{name}: Expected {torch_label} to be 1D or 2D, got {state.dim()}D instead: "
                + wanted
            )
        if state.dim() != 2 - unbatched:
            return checks.InputError(
                f"{name}: {label} must be {2 - unbatched}-D as the input is: {wanted}"
            )
        if not unbatched and state.shape[0] != x.shape[0]:
            return checks.InputError(
                f"{name}: Input batch size {x.shape[0]} doesn't match hidden{k} batch size "
                f"{state.shape[0]}: {wanted}"
            )
        return checks.InputError(
            f"{name}: hidden{k} has inconsistent hidden_size: got {state.shape[-1]}, "
            f"expected {hidden}: {wanted}"
        )


class LSTMCell(variants.PicklesOptions, _CellBase, nn.LSTMCell):
    """One LSTM step. forward(input (B, I) or (I,), hx=(h (B, H), c (B, H))) -> (h', c').

    The variant options of :class:`longshort.LSTM` apply here too (forget_gate, peephole,
    coupled_gates, layer_norm, zoneout, recurrent_dropout), with the parameters named without
    the layer suffix (``weight_ch``, ``weight_ln_ih``, ...). A cell sees one step, so in
    training it draws its zoneout and recurrent dropout masks at every call; for one recurrent
    dropout mask per sequence, run :class:`longshort.LSTM` over the sequence instead.
    """

    gate_multiplier = 4
    torch_class = nn.LSTMCell
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
            w = self._weights()
            h, c = engine.lstm_cell(x, h0, c0, *w)
        return (h[0], c[0]) if unbatched else (h, c)

    def _export_forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None):
        """What torch.onnx.export records (:mod:`longshort.nn.onnx`): torch.nn's step, or for a
        variant one step of ONNX's LSTM operator."""
        if not self.options.active:
            return self.torch_class.forward(self, input, hx)
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
        return engine.variant_cell(x, h0, c0, w, self.options.variant, masks)


class RNNCell(_CellBase, nn.RNNCell):
    """One Elman RNN step. forward(input (B, I) or (I,), hx (B, H)) -> h'."""

    gate_multiplier = 1
    torch_class = nn.RNNCell

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
            raise checks.ArgumentError(  # torch.nn's cell says the first sentence at forward
                f"RNNCell: Unknown nonlinearity: {nonlinearity}. It must be 'tanh' or 'relu', "
                f"got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if onnx.exporting():  # torch.nn's step (longshort.nn.onnx)
            return self.torch_class.forward(self, input, hx)
        x, (h0,), unbatched = self._check(input, None if hx is None else (hx,), 1)
        w = self._weights()
        h = engine.rnn_cell(x, h0, *w, nonlinearity=self.nonlinearity)
        return h[0] if unbatched else h


class GRUCell(_CellBase, nn.GRUCell):
    """One GRU step (torch's formulation). forward(input (B, I) or (I,), hx (B, H)) -> h'."""

    gate_multiplier = 3
    torch_class = nn.GRUCell

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if onnx.exporting():  # torch.nn's step (longshort.nn.onnx)
            return self.torch_class.forward(self, input, hx)
        x, (h0,), unbatched = self._check(input, None if hx is None else (hx,), 1)
        w = self._weights()
        h = engine.gru_cell(x, h0, *w)
        return h[0] if unbatched else h
