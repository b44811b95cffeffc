"""Construction, initialisation, state_dict and conversion behave as torch.nn's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import longshort

CONFIGS = [
    dict(input_size=3, hidden_size=5),
    dict(input_size=3, hidden_size=5, num_layers=3, bidirectional=True, proj_size=2),
    dict(input_size=3, hidden_size=5, num_layers=2, bias=False, batch_first=True, dropout=0.3),
]


@pytest.mark.parametrize("kw", CONFIGS)
def test_lstm_same_init_names_and_shapes_as_torch(kw):
    torch.manual_seed(7)
    theirs = nn.LSTM(**kw)
    torch.manual_seed(7)
    ours = longshort.LSTM(**kw)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert repr(ours).replace("longshort.", "") == repr(theirs)


def test_rnn_same_init_and_keys():
    kw = dict(input_size=3, hidden_size=4, num_layers=2, nonlinearity="relu", bidirectional=True)
    torch.manual_seed(1)
    theirs = nn.RNN(**kw)
    torch.manual_seed(1)
    ours = longshort.RNN(**kw)
    for (ka, va), (kb, vb) in zip(
        ours.state_dict().items(), theirs.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    assert repr(ours) == repr(theirs)[:-1] + ", nonlinearity=relu)"  # torch omits it


def test_cells_same_init():
    for ours_cls, torch_cls in ((longshort.LSTMCell, nn.LSTMCell), (longshort.RNNCell, nn.RNNCell)):
        torch.manual_seed(3)
        theirs = torch_cls(3, 4)
        torch.manual_seed(3)
        ours = ours_cls(3, 4)
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_state_dict_both_ways_and_conversion():
    kw = CONFIGS[1]
    theirs = nn.LSTM(**kw)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=0, atol=1e-5)
    back = ours.to_torch()
    assert type(back) is nn.LSTM
    torch.testing.assert_close(back(x)[0], theirs(x)[0], rtol=0, atol=0)
    rnn = nn.RNN(3, 4, nonlinearity="relu")
    ours_rnn = longshort.RNN.from_torch(rnn)
    assert ours_rnn.nonlinearity == "relu"
    torch.testing.assert_close(ours_rnn(x)[0], rnn(x)[0], rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match=r"expected a torch\.nn\.modules\.rnn\.LSTM"):
        longshort.LSTM.from_torch(rnn)


def test_forget_bias_option():
    m = longshort.LSTM(3, 4, num_layers=2, bidirectional=True, forget_bias=1.0)
    for layer in range(2):
        for d in range(2):
            _, _, b_ih, b_hh, _ = m.layer_weights(layer, d)
            assert torch.all(b_ih[4:8] == 1.0) and torch.all(b_hh[4:8] == 0.0)
            assert not torch.all(b_ih[0:4] == 1.0)
    # the forget gate starts mostly open: mean f close to sigmoid(1) for small inputs
    _, _, traces = m(torch.zeros(3, 2, 3), return_trace=True)
    f = traces[0].gates[..., 4:8]
    assert f.mean() > 0.6


def test_dropout_between_layers_only_in_training():
    m = longshort.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(6, 2, 3)
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])
    m.train()
    torch.manual_seed(0)
    a = m(x)[0]
    torch.manual_seed(1)
    b = m(x)[0]
    assert not torch.equal(a, b)
    with pytest.warns(UserWarning, match="num_layers=1"):
        longshort.LSTM(3, 4, dropout=0.5)


def test_dtype_and_device_arguments():
    m = longshort.LSTM(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, _ = m(torch.randn(2, 1, 3, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_bfloat16_runs_on_reference():
    m = longshort.LSTM(3, 4, dtype=torch.bfloat16)
    t = nn.LSTM(3, 4, dtype=torch.bfloat16)
    m.load_state_dict(t.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.bfloat16)
    torch.testing.assert_close(m(x)[0], t(x)[0], rtol=2e-2, atol=2e-2)


def test_input_and_forget_bias_initialisation():
    m = longshort.LSTM(3, 4, num_layers=2, bidirectional=True, forget_bias=2.0, input_bias=-3.0)
    for layer in range(2):
        for direction in range(2):
            _, _, b_ih, b_hh, _ = m.layer_weights(layer, direction)
            assert b_ih[:4].eq(-3.0).all() and b_ih[4:8].eq(2.0).all()
            assert b_hh[:8].eq(0.0).all() and b_ih[8:].abs().le(0.5).all()
