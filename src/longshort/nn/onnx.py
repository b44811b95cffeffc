"""The forward that ``torch.onnx.export`` records: ONNX's own LSTM, GRU and RNN operators.

Under ``torch.onnx.export`` the layers and cells do not call the compiled engine, which no
exporter can trace. Instead:

- With the default exporter (``dynamo=True``), each layer becomes one ONNX ``LSTM``, ``GRU``
  or ``RNN`` node (both directions in one), built here from the module's parameters, so the
  graph takes any batch size and sequence length (``dynamic_shapes``), where torch.nn's own
  single-layer LSTM and RNN export with their length fixed.
- The LSTM's variants that ONNX's ``LSTM`` operator expresses become that operator too:
  peepholes (its input ``P``) and coupled gates (its attribute ``input_forget``). Every other
  variant (no forget gate, layer norm, zoneout, recurrent dropout) raises a ValueError naming
  the option; so do ``lengths=`` and ``return_trace=``.
- With the TorchScript exporter (``dynamo=False``), and for projections (ONNX's LSTM has
  none), plain layers run torch.nn's own forward on their parameters (they have torch.nn's
  names and layout), which that exporter turns into the same operators; variants need the
  default exporter. Cells run torch.nn's step: a few products and activations.

Gate orders: torch (and longshort) [i, f, g, o], ONNX's LSTM [i, o, f, c]; torch's GRU
[r, z, n], ONNX's [z, r, h] with ``linear_before_reset=1``, which is torch's formulation
n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn)). ONNX's coupling computes i_t and
sets f_t = 1 - i_t, where longshort computes f_t and sets i_t = 1 - f_t, so the exported input
gate is σ(-(a_f + p_f ⊙ C_{t-1})) = 1 - f_t, exactly longshort's i_t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from longshort.engine.types import LSTMVariant, VariantWeights
    from longshort.nn.variants import Options

EXPRESSIBLE = ("peephole=True", "coupled_gates=True")
OPSET = 14  # ONNX's recurrent operators as of opset 14 (the layout attribute); same math since 7


try:  # the two exporters' own flags, read directly: 0.05 us a call, where
    # torch.onnx.is_in_onnx_export() imports both at every call (1 us, on every layer and cell)
    from torch.onnx._internal.exporter import _flags
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS as _TORCHSCRIPT

    def exporting() -> bool:
        """Whether torch.onnx.export is recording the call, under either exporter. (dynamo
        folds ``torch.onnx.is_in_onnx_export()`` to False, and the default exporter's second
        strategy traces with dynamo; the exporter's own flag holds there too.)"""
        if _flags._is_onnx_exporting:
            return True  # (dynamo may not read the TorchScript one: it is only read outside)
        return not torch.compiler.is_compiling() and _TORCHSCRIPT.in_onnx_export

except ImportError:  # pragma: no cover - torch versions that keep the flags elsewhere

    def exporting() -> bool:
        return torch.onnx.is_in_onnx_export()


def builds_nodes() -> bool:
    """Whether this export records ONNX nodes built here (the default exporter, which traces
    with torch.export) rather than torch.nn's forward (the TorchScript exporter)."""
    return torch.compiler.is_exporting()


def check_exportable(owner: str, options: Options) -> None:
    """ValueError naming the options that ONNX's LSTM operator cannot express, or the exporter
    that cannot record it (the TorchScript one, ``dynamo=False``)."""
    described = [part for part in options.describe().split(", ") if part]
    refused = [part for part in described if part not in EXPRESSIBLE]
    if refused:
        raise ValueError(
            f"{owner}: torch.onnx.export cannot express {', '.join(refused)} (ONNX's LSTM "
            "operator has peepholes and coupled gates only); export a model without it"
        )
    if described and not builds_nodes():
        raise ValueError(
            f"{owner} with {options.describe()}: export with torch.onnx.export(..., "
            "dynamo=True), the default; the TorchScript exporter (dynamo=False) cannot record "
            "ONNX's LSTM operator with these options"
        )


def check_layer_call(owner: str, lengths: object, return_trace: bool) -> None:
    if lengths is not None:
        raise ValueError(
            f"{owner}: lengths= does not export to ONNX; export the padded batch without "
            "lengths, or pack it with torch.nn.utils.rnn.pack_padded_sequence"
        )
    if return_trace:
        raise ValueError(f"{owner}: return_trace=True does not export to ONNX")


# one layer, both directions: an ONNX node ------------------------------------------------


def _lstm_blocks(t: Tensor, v: LSTMVariant, hidden: int) -> Tensor:
    """A gate-stacked tensor (G*H, ...) in longshort's block order, as ONNX's [i, o, f, c]
    (4H, ...); with coupled gates the input block is -f (σ(-a) = 1 - σ(a)) and f is unused."""
    blocks = t.split(hidden, dim=0)
    if v.coupled:  # [f, g, o]
        f, g, o = blocks
        return torch.cat((-f, o, torch.zeros_like(f), g))
    i, f, g, o = blocks
    return torch.cat((i, o, f, g))


def _peepholes(w_ch: Tensor, v: LSTMVariant, hidden: int) -> Tensor:
    """longshort's [p_i, p_f, p_o] (or [p_f, p_o] coupled) as ONNX's P = [p_i, p_o, p_f]."""
    blocks = w_ch.split(hidden)
    if v.coupled:
        p_f, p_o = blocks
        return torch.cat((-p_f, p_o, torch.zeros_like(p_f)))
    p_i, p_f, p_o = blocks
    return torch.cat((p_i, p_o, p_f))


def _gru_blocks(t: Tensor, hidden: int) -> Tensor:
    """torch's [r, z, n] as ONNX's [z, r, h]."""
    r, z, n = t.split(hidden, dim=0)
    return torch.cat((z, r, n))


def _node(
    op: str,
    x: Tensor,
    states: list[Tensor],
    weights: list[tuple[Tensor, Tensor, Tensor, Tensor]],
    extra: list[Tensor],
    hidden: int,
    attrs: dict,
) -> list[Tensor]:
    """One ONNX recurrent node: x (T, B, I); states (D, B, H) each; weights per direction
    (W, R, Wb, Rb) already in ONNX's gate order; extra: inputs after the initial states (P).
    hidden is a Python int (the TorchScript exporter would trace a shape as a tensor).
    Returns Y (T, D, B, H) and each final state (D, B, H)."""
    steps, batch, directions = x.shape[0], x.shape[1], len(weights)
    inputs = [
        x,
        torch.stack([w[0] for w in weights]),
        torch.stack([w[1] for w in weights]),
        torch.stack([torch.cat((w[2], w[3])) for w in weights]),
        torch.full((batch,), steps, dtype=torch.int32, device=x.device),
        *states,
        *extra,
    ]
    attrs = {
        "hidden_size": hidden,
        "direction": "bidirectional" if directions == 2 else "forward",
        **attrs,
    }
    state = [directions, batch, hidden]
    return list(
        torch.onnx.ops.symbolic_multi_out(
            op,
            inputs,
            attrs,
            dtypes=(x.dtype,) * (1 + len(states)),
            shapes=([steps, directions, batch, hidden], *([state] * len(states))),
            version=OPSET,
        )
    )


def _biases(b_ih: Tensor | None, b_hh: Tensor | None, like: Tensor) -> tuple[Tensor, Tensor]:
    zeros = like.new_zeros(like.shape[0])
    return (zeros if b_ih is None else b_ih), (zeros if b_hh is None else b_hh)


def lstm_node(
    x: Tensor, h0: Tensor, c0: Tensor, weights: list[VariantWeights], v: LSTMVariant, hidden: int
) -> list[Tensor]:
    """One ONNX ``LSTM`` node (one layer, D = len(weights) directions, no projection):
    x (T, B, I), h0, c0 (D, B, H). Returns Y (T, D, B, H), Y_h, Y_c (D, B, H)."""
    onnx_w = []
    for w in weights:
        b_ih, b_hh = _biases(w.b_ih, w.b_hh, w.w_ih)
        onnx_w.append(tuple(_lstm_blocks(t, v, hidden) for t in (w.w_ih, w.w_hh, b_ih, b_hh)))
    extra = [torch.stack([_peepholes(w.w_ch, v, hidden) for w in weights])] if v.peephole else []
    attrs = {"input_forget": int(v.coupled)}
    return _node("LSTM", x, [h0, c0], onnx_w, extra, hidden, attrs)


def gru_node(x: Tensor, h0: Tensor, weights: list[tuple], hidden: int) -> list[Tensor]:
    """One ONNX ``GRU`` node; weights per direction (w_ih, w_hh, b_ih, b_hh) in torch's
    layout. Returns Y (T, D, B, H), Y_h (D, B, H)."""
    onnx_w = []
    for w_ih, w_hh, b_ih, b_hh in weights:
        b_ih, b_hh = _biases(b_ih, b_hh, w_ih)
        onnx_w.append(tuple(_gru_blocks(t, hidden) for t in (w_ih, w_hh, b_ih, b_hh)))
    return _node("GRU", x, [h0], onnx_w, [], hidden, {"linear_before_reset": 1})


def rnn_node(
    x: Tensor, h0: Tensor, weights: list[tuple], hidden: int, nonlinearity: str
) -> list[Tensor]:
    """One ONNX ``RNN`` node (tanh or relu); weights as for :func:`gru_node`."""
    onnx_w = [(w_ih, w_hh, *_biases(b_ih, b_hh, w_ih)) for w_ih, w_hh, b_ih, b_hh in weights]
    activation = {"tanh": "Tanh", "relu": "Relu"}[nonlinearity]
    attrs = {"activations": [activation] * len(weights)}
    return _node("RNN", x, [h0], onnx_w, [], hidden, attrs)


# a whole layer stack ------------------------------------------------------------------------


def layer_stack(module: nn.Module, input: Tensor, hx: object) -> tuple[Tensor, object]:
    """A longshort layer stack (LSTM, GRU or RNN, no projection) as one ONNX node a layer;
    input and hx as the module's forward takes them (batch_first, unbatched, hx None).
    Returns (output, h_n) or (output, (h_n, c_n)) as the module's forward does."""
    unbatched = input.dim() == 2
    x = input.unsqueeze(1) if unbatched else input
    x = x.transpose(0, 1) if module.batch_first and not unbatched else x  # (T, B, I)
    count = module.state_count
    size = (module.num_layers * module.num_directions, x.shape[1], module.hidden_size)
    states = [x.new_zeros(size) for _ in range(count)] if hx is None else hx
    states = [states] if count == 1 and isinstance(states, Tensor) else list(states)
    states = [s.unsqueeze(1) for s in states] if unbatched else states
    directions, finals = module.num_directions, [[] for _ in range(count)]
    for layer in range(module.num_layers):
        rows = slice(layer * directions, (layer + 1) * directions)
        y, *last = module._onnx_node(x, [s[rows] for s in states], layer)
        x = y.permute(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)  # (T, B, D*H)
        if layer + 1 < module.num_layers and module.dropout > 0:
            x = nn.functional.dropout(x, module.dropout, training=module.training)
        for kept, s in zip(finals, last, strict=True):
            kept.append(s)
    out = [torch.cat(f) for f in finals]
    if unbatched:
        x, out = x.squeeze(1), [s.squeeze(1) for s in out]
    elif module.batch_first:
        x = x.transpose(0, 1)
    return x, (out[0] if count == 1 else tuple(out))
