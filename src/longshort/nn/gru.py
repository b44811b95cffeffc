"""``longshort.GRU``: a drop-in for ``torch.nn.GRU`` running longshort's engine."""

from __future__ import annotations

from torch import Tensor, nn

from longshort import engine
from longshort.nn import onnx
from longshort.nn.base import LayerTrace, RecurrentBase


class GRU(RecurrentBase):
    """Multi-layer gated recurrent unit (Cho et al. 2014) in torch's formulation, handwritten BPTT:

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Same constructor, parameters, shapes and return values as ``torch.nn.GRU``:
    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None)``; extras as :class:`longshort.LSTM`
    (``lengths=``, ``return_trace=``, ``check_finite``). A trace's gates are (T, B, 4H) =
    [r, z, n, W_hn h_{t-1} + b_hn]; the update gates z play the part of the LSTM's forget gates
    (∂h_t/∂h_{t-1} = z_t along the additive path), so ``inspect.carousel`` takes them.
    """

    torch_class = nn.GRU
    gate_multiplier = 3
    state_count = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        check_finite: bool = False,
        proj_size: int = 0,
    ) -> None:
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
        return "GRU"

    def _onnx_node(self, x: Tensor, states: list[Tensor], layer: int) -> list[Tensor]:
        weights = [self.layer_weights(layer, d)[:4] for d in range(self.num_directions)]
        return onnx.gru_node(x, states[0], weights, self.hidden_size)

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
        out, h_n, gates, hs = engine.gru_layer(x, states[0], w_ih, w_hh, b_ih, b_hh, lengths)
        return out, (h_n,), LayerTrace(gates, None, hs)
