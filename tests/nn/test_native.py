"""The CUDA path's dispatch, checked on CPU: plain runs go to PyTorch's fused op (cuDNN on CUDA,
oneDNN here when asked with ``use_native(("cpu",))``), everything else to longshort's engine."""

from __future__ import annotations

import pytest
import torch

import longshort
from longshort.engine import dispatch, gradient_norms

T, B, I, H = 7, 3, 4, 5


@pytest.mark.parametrize(
    ("ours", "theirs", "kw"),
    [
        (longshort.LSTM, torch.nn.LSTM, {"num_layers": 2, "bidirectional": True}),
        (longshort.LSTM, torch.nn.LSTM, {"proj_size": 3}),
        (longshort.GRU, torch.nn.GRU, {"num_layers": 2}),
        (longshort.RNN, torch.nn.RNN, {"nonlinearity": "relu", "bidirectional": True}),
    ],
)
def test_plain_runs_on_the_native_op_match_torch(ours, theirs, kw):
    torch.manual_seed(0)
    ref = theirs(I, H, **kw)
    model = ours.from_torch(ref)
    x = torch.randn(T, B, I, requires_grad=True)
    with dispatch.use_native(("cpu",)):
        out, state = model(x)
    want, want_state = ref(x)
    torch.testing.assert_close(out, want)
    out.sum().backward()
    assert x.grad is not None and model.weight_ih_l0.grad is not None
    finals = state if isinstance(state, tuple) else (state,)
    wants = want_state if isinstance(want_state, tuple) else (want_state,)
    for a, b in zip(finals, wants, strict=True):
        torch.testing.assert_close(a, b)


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = longshort.LSTM._run_native

    def spy(self, *a):
        calls.append(1)
        return original(self, *a)

    monkeypatch.setattr(longshort.LSTM, "_run_native", spy)
    return calls


def test_only_plain_runs_go_native(monkeypatch):
    calls = _spy(monkeypatch)
    x = torch.randn(T, B, I)
    with dispatch.use_native(("cpu",)):
        longshort.LSTM(I, H)(x)
        assert len(calls) == 1
        longshort.LSTM(I, H)(x, return_trace=True)  # traces need our engine
        longshort.LSTM(I, H)(x, lengths=torch.tensor([7, 2, 5]))
        longshort.LSTM(I, H, peephole=True)(x)
        longshort.LSTM(I, H, recompute_segment=2)(x)
        longshort.LSTM(I, H, check_finite=True)(x)
        with gradient_norms.recording():
            longshort.LSTM(I, H)(x)
    assert len(calls) == 1
    longshort.LSTM(I, H)(x)  # CPU default: longshort's compiled engine
    assert len(calls) == 1
    with pytest.raises(TypeError, match="tuple of device type names"), dispatch.use_native("cuda"):
        pass
    plain = dispatch.LayerCall(False, False, False, False, False)
    assert dispatch.layers_on_native(torch.device("cuda"), plain)
    assert not dispatch.layers_on_native(torch.device("cpu"), plain)
    assert not dispatch.layers_on_native(torch.device("cuda"), plain._replace(trace=True))
