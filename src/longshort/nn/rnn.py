"""``longshort.RNN``: a drop-in for ``torch.nn.RNN`` running longshort's engine."""

from __future__ import annotations

from torch import Tensor, nn

from longshort import engine
from longshort.cells.rnn import NONLINEARITIES
from longshort.nn import onnx
from longshort.nn.base import LayerTrace, RecurrentBase


class RNN(RecurrentBase):
    """Multi-layer Elman RNN, h_t = tanh(W x_t + U h_{t-1} + b) (or relu), handwritten BPTT.

    Same constructor, parameters, shapes and return values as ``torch.nn.RNN``:
    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``.

    forward(input, hx=None, lengths=None, return_trace=False) returns output (T, B, D*H) and
    h_n (L*D, B, H); see :class:`longshort.LSTM` for lengths and traces.
    """

    torch_class = nn.RNN
    gate_multiplier = 1
    state_count = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        check_finite: bool = False,
        proj_size: int = 0,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(  # torch.nn's sentence
                f"RNN: Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            check_finite=check_finite,
        )

    def _mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"

    def _onnx_node(self, x: Tensor, states: list[Tensor], layer: int) -> list[Tensor]:
        weights = [self.layer_weights(layer, d)[:4] for d in range(self.num_directions)]
        return onnx.rnn_node(x, states[0], weights, self.hidden_size, self.nonlinearity)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.nonlinearity == "tanh" else f"{s}, nonlinearity={self.nonlinearity}"

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
        w_ih, w_hh, b_ih, b_hh, _ = self.layer_weights(layer, direction)
        out, h_n, hs = engine.rnn_layer(
            x, states[0], w_ih, w_hh, b_ih, b_hh, lengths, self.nonlinearity
        )
        return out, (h_n,), LayerTrace(hs, None)
