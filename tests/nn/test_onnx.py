"""torch.onnx.export of models holding longshort's layers, run by ONNX Runtime.

The exported graphs are checked against computations that share no code with the export:
torch.nn's modules loaded with the same weights (plain layers and cells), and the plain-torch
loop written from the papers' equations in ``test_variants.manual`` (peepholes, coupled gates).
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

import longshort
from tests.nn.test_variants import H, manual

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def run_exported(model: nn.Module, args: tuple, dynamo: bool, feeds: tuple | None = None, **kw):
    """Export `model` called on `args`, then run the ONNX graph on `feeds` (default: args)."""
    if dynamo:
        data = torch.onnx.export(model, args, dynamo=True, verbose=False, **kw)
        data = data.model_proto.SerializeToString()
    else:
        buffer = io.BytesIO()
        torch.onnx.export(model, args, buffer, dynamo=False, **kw)
        data = buffer.getvalue()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = args if feeds is None else feeds
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: a.numpy() for n, a in zip(names, feeds, strict=True)})


class Tagger(nn.Module):
    """A typical model: embedding, a 2-layer bidirectional LSTM, a GRU, an RNN, a head."""

    def __init__(self, lstm=longshort.LSTM, gru=longshort.GRU, rnn=longshort.RNN) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 5)
        self.lstm = lstm(5, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = gru(12, 4, batch_first=True)
        self.rnn = rnn(4, 3, batch_first=True, nonlinearity="relu")
        self.head = nn.Linear(3, 2)

    def forward(self, tokens):
        y, (h, c) = self.lstm(self.embed(tokens))
        y, _ = self.gru(y)
        y, _ = self.rnn(y)
        return self.head(y), h, c


def _as_torch_nn(model: Tagger) -> Tagger:
    ref = copy.deepcopy(model)
    for name in ("lstm", "gru", "rnn"):
        setattr(ref, name, getattr(model, name).to_torch())
        assert type(getattr(ref, name)).__module__.startswith("torch.nn")
    return ref


@pytest.mark.parametrize("dynamo", [True, False])
def test_a_model_holding_longshort_layers_exports_and_matches_torch_nn(dynamo):
    torch.manual_seed(0)
    model = Tagger().eval()
    tokens = torch.randint(0, 10, (3, 7))
    got = run_exported(model, (tokens,), dynamo)
    with torch.no_grad():
        want = _as_torch_nn(model)(tokens)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def test_the_exported_graph_takes_other_batch_sizes_and_lengths():
    torch.manual_seed(1)
    model = Tagger().eval()
    shapes = ({0: "batch", 1: "time"},)
    other = torch.randint(0, 10, (5, 11))
    got = run_exported(
        model, (torch.randint(0, 10, (3, 7)),), True, (other,), dynamic_shapes=shapes
    )
    with torch.no_grad():
        want = _as_torch_nn(model)(other)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


class Stepper(nn.Module):
    """A hand-written loop over the three cells."""

    def __init__(self, lstm=longshort.LSTMCell, gru=longshort.GRUCell, rnn=longshort.RNNCell):
        super().__init__()
        self.lstm, self.gru, self.rnn = lstm(3, 5), gru(5, 4), rnn(4, 2)

    def forward(self, x):
        h = c = g = r = None
        for t in range(x.shape[0]):
            h, c = self.lstm(x[t], None if h is None else (h, c))
            g = self.gru(h, g)
            r = self.rnn(g, r)
        return r, c


@pytest.mark.parametrize("dynamo", [True, False])
def test_cells_export_and_match_torch_nn(dynamo):
    torch.manual_seed(2)
    model = Stepper().eval()
    ref = Stepper(nn.LSTMCell, nn.GRUCell, nn.RNNCell)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(4, 2, 3)
    got = run_exported(model, (x,), dynamo)
    with torch.no_grad():
        want = ref(x)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


EXPRESSIBLE = {
    "peephole": {"peephole": True},
    "coupled": {"coupled_gates": True},
    "both": {"peephole": True, "coupled_gates": True},
}


def _spread(module: nn.Module) -> nn.Module:
    """Peephole weights away from their small start, so a sign or order slip shows."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "weight_ch" in name:
                p.add_(torch.randn_like(p) * 0.5)
    return module


def _manual_stack(m: longshort.LSTM, x: torch.Tensor, kw: dict) -> tuple:
    """m's layers and directions through test_variants.manual, time-major x (T, B, I)."""
    params = dict(m.named_parameters())
    finals_h, finals_c = [], []
    for layer in range(m.num_layers):
        outs = []
        for d in range(m.num_directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = {k[: -len(sfx)] + "_l0": v for k, v in params.items() if k.endswith(sfx)}
            zeros = x.new_zeros(x.shape[1], H)
            seq = x.flip(0) if d else x
            out, h, c = manual(seq, zeros, zeros, p, kw, (None, None, None))
            outs.append(out.flip(0) if d else out)
            finals_h.append(h)
            finals_c.append(c)
        x = torch.cat(outs, dim=-1)
    return x, torch.stack(finals_h), torch.stack(finals_c)


@pytest.mark.parametrize("case", list(EXPRESSIBLE))
def test_peepholes_and_coupled_gates_export_as_onnx_lstm_and_match_the_equations(case):
    kw = EXPRESSIBLE[case]
    torch.manual_seed(3)
    m = _spread(longshort.LSTM(3, H, num_layers=2, bidirectional=True, batch_first=True, **kw))
    m.eval()
    x = torch.randn(2, 6, 3)
    other = torch.randn(3, 9, 3)
    shapes = ({0: "batch", 1: "time"},)
    got = run_exported(m, (x,), True, (other,), dynamic_shapes=shapes)
    with torch.no_grad():
        out, h, c = _manual_stack(m, other.transpose(0, 1), kw)
    for g, w in zip(got, (out.transpose(0, 1), h, c), strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", list(EXPRESSIBLE))
def test_a_variant_cell_exports_one_step_of_onnx_lstm(case):
    kw = EXPRESSIBLE[case]
    torch.manual_seed(4)
    cell = _spread(longshort.LSTMCell(3, H, **kw)).eval()
    x, h0, c0 = torch.randn(2, 3), torch.randn(2, H), torch.randn(2, H)
    got = run_exported(cell, (x, (h0, c0)), True, (x, h0, c0))
    params = {f"{k}_l0": v for k, v in cell.named_parameters()}
    with torch.no_grad():
        _, h, c = manual(x[None], h0, c0, params, kw, (None, None, None))
    np.testing.assert_allclose(got[0], h.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], c.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kw, named",
    [
        ({"forget_gate": False}, "forget_gate=False"),
        ({"layer_norm": True}, "layer_norm=True"),
        ({"zoneout": 0.1}, "zoneout=(0.1, 0.1)"),
        ({"recurrent_dropout": 0.2, "peephole": True}, "recurrent_dropout=0.2"),
    ],
)
def test_variants_onnx_cannot_express_are_refused_naming_the_option(kw, named):
    m = longshort.LSTM(3, H, **kw).eval()
    with pytest.raises(Exception, match=named.replace("(", r"\(").replace(")", r"\)")) as info:
        torch.onnx.export(m, (torch.randn(4, 2, 3),), dynamo=True, verbose=False)
    causes, e = [], info.value
    while e is not None:
        causes.append(type(e))
        e = e.__cause__ or e.__context__
    assert ValueError in causes


def test_the_torchscript_exporter_refuses_variants_and_names_the_one_that_works():
    m = longshort.LSTM(3, H, peephole=True).eval()
    with pytest.raises(ValueError, match=r"dynamo=True"):
        torch.onnx.export(m, (torch.randn(4, 2, 3),), io.BytesIO(), dynamo=False)


def test_a_variant_with_a_projection_is_refused_in_export():
    m = longshort.LSTM(3, H, proj_size=2, peephole=True).eval()
    with pytest.raises(Exception, match="variant cannot take proj_size") as info:
        torch.onnx.export(m, (torch.randn(4, 2, 3),), dynamo=True, verbose=False)
    causes, e = [], info.value
    while e is not None:
        causes.append(type(e))
        e = e.__cause__ or e.__context__
    assert ValueError in causes


def test_lengths_are_refused_in_export():
    class WithLengths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = longshort.LSTM(3, H)

        def forward(self, x, lengths):
            return self.rnn(x, lengths=lengths)[0]

    with pytest.raises(ValueError, match="lengths= does not export"):
        torch.onnx.export(
            WithLengths(), (torch.randn(4, 2, 3), torch.tensor([4, 2])), io.BytesIO(), dynamo=False
        )
