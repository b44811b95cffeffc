"""What code written against torch.nn expects of LSTM, RNN and their cells, checked by running
the same call on torch.nn and on longshort: second-order gradients, empty batches, zero-size
cells, the exception classes, the public surface, dropout's random numbers, copies."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call

import longshort

F64 = torch.float64


def _pair(ours_cls, theirs_cls, *args, **kw):
    torch.manual_seed(0)
    theirs = theirs_cls(*args, **kw)
    ours = ours_cls(*args, **kw)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


# -- 1. second-order gradients -------------------------------------------------------------


def _fast(cpu_engine: str, kw: dict) -> bool:
    """gradgradcheck in fast mode (random projections of the Jacobians, as torch documents it)
    for the reference engine's two-layer bidirectional case, 20 s a run in full: a compiled
    engine's double backward recomputes the layer with the reference engine's torch ops, and
    its run of the same case checks those second derivatives in full."""
    return cpu_engine == "reference" and kw.get("num_layers", 1) > 1


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"bidirectional": True, "num_layers": 2},
        {"proj_size": 2},
        {"bias": False, "batch_first": True},
    ],
)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_gradgradcheck(cpu_engine, kw, with_lengths):
    """First and second derivatives in float64 against finite differences, for the input and
    every parameter (batch_first input is (B, T, I))."""
    torch.manual_seed(1)
    m = longshort.LSTM(2, 3, dtype=F64, **kw)
    x = torch.randn(3, 4, 2, dtype=F64, requires_grad=True)  # (T, B) or (B, T) alike
    lengths = torch.tensor([3, 1, 2]) if with_lengths and kw.get("batch_first") else None
    if with_lengths and not kw.get("batch_first"):
        lengths = torch.tensor([3, 1, 2, 3])
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, *ps):
        out, (h, c) = functional_call(
            m, dict(zip(names, ps, strict=True)), (x,), {"lengths": lengths}
        )
        return out, h, c

    assert gradcheck(f, (x, *params), eps=1e-6, atol=1e-6)
    assert gradgradcheck(f, (x, *params), eps=1e-6, atol=1e-5, fast_mode=_fast(cpu_engine, kw))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("lengths", [None, torch.tensor([4, 2])])
def test_rnn_gradgradcheck(cpu_engine, nonlinearity, lengths):
    torch.manual_seed(2)
    m = longshort.RNN(2, 3, num_layers=2, bidirectional=True, nonlinearity=nonlinearity, dtype=F64)
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda x, h0: m(x, h0, lengths=lengths), (x, h0), eps=1e-6, atol=1e-5)


def test_cells_gradgradcheck(cpu_engine):
    torch.manual_seed(3)
    lstm, rnn = longshort.LSTMCell(2, 3, dtype=F64), longshort.RNNCell(2, 3, dtype=F64)
    x = torch.randn(4, 2, dtype=F64, requires_grad=True)
    h = torch.randn(4, 3, dtype=F64, requires_grad=True)
    c = torch.randn(4, 3, dtype=F64, requires_grad=True)
    assert gradgradcheck(lambda x, h, c: lstm(x, (h, c)), (x, h, c), eps=1e-6, atol=1e-5)
    assert gradgradcheck(lambda x, h: rnn(x, h), (x, h), eps=1e-6, atol=1e-5)


def test_gradient_penalty_matches_torch():
    """A gradient penalty (double backward through the layer) gives torch.nn's gradients."""
    ours, theirs = _pair(longshort.LSTM, nn.LSTM, 3, 5, num_layers=2)
    x = torch.randn(6, 2, 3)
    grads = []
    for m in (ours, theirs):
        xi = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(m(xi)[0].pow(2).sum(), xi, create_graph=True)
        grads.append(torch.autograd.grad(gx.pow(2).sum(), list(m.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# -- 2, 3. empty batch, zero hidden size in the cells -----------------------------------------


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls"), [(longshort.LSTM, nn.LSTM), (longshort.RNN, nn.RNN)]
)
def test_empty_batch_like_torch(cpu_engine, ours_cls, theirs_cls):
    ours, theirs = _pair(ours_cls, theirs_cls, 3, 4, num_layers=2)
    x = torch.zeros(5, 0, 3, requires_grad=True)
    a, b = ours(x), theirs(x)
    assert a[0].shape == b[0].shape == (5, 0, 4)
    sa = a[1] if ours_cls is longshort.RNN else a[1][0]
    sb = b[1] if ours_cls is longshort.RNN else b[1][0]
    assert sa.shape == sb.shape == (2, 0, 4)
    a[0].sum().backward()
    assert x.grad.shape == (5, 0, 3)
    assert all(p.grad is not None and not p.grad.any() for p in ours.parameters())


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls"), [(longshort.LSTMCell, nn.LSTMCell), (longshort.RNNCell, nn.RNNCell)]
)
def test_cells_empty_batch_and_zero_hidden(cpu_engine, ours_cls, theirs_cls):
    for inp, hid, batch in ((3, 4, 0), (10, 0, 2)):
        ours, theirs = _pair(ours_cls, theirs_cls, inp, hid)
        x = torch.randn(batch, inp)
        a, b = ours(x), theirs(x)
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        for p, q in zip(a, b, strict=True):
            assert p.shape == q.shape == (batch, hid)


# -- 4. exception classes ------------------------------------------------------------------------


def _raised(fn) -> BaseException | None:
    try:
        fn()
    except Exception as e:
        return e
    return None


MISTAKES = [
    ("wrong input size", lambda m: m(torch.zeros(5, 2, 7))),
    ("4-D input", lambda m: m(torch.zeros(1, 5, 2, 3))),
    ("float64 input", lambda m: m(torch.zeros(5, 2, 3, dtype=F64))),
    (
        "h_0 of the wrong batch",
        lambda m: m(torch.zeros(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4))),
    ),
    (
        "c_0 of the wrong size",
        lambda m: m(torch.zeros(5, 2, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 5))),
    ),
]


@pytest.mark.parametrize(("what", "call"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_lstm_raises_what_torch_raises(what, call):
    ours, theirs = _pair(longshort.LSTM, nn.LSTM, 3, 4)
    mine, torchs = _raised(lambda: call(ours)), _raised(lambda: call(theirs))
    assert torchs is not None and mine is not None, what
    assert isinstance(mine, type(torchs)), f"{what}: {type(mine)} is not a {type(torchs)}"
    assert "LSTM" in str(mine)


CELL_MISTAKES = [
    ("input of the wrong size", lambda m: m(torch.zeros(2, 7))),
    ("3-D input", lambda m: m(torch.zeros(1, 2, 3))),
    (
        "state of another batch",
        lambda m: m(torch.zeros(2, 3), (torch.zeros(3, 4), torch.zeros(3, 4))),
    ),
    ("float64 input", lambda m: m(torch.zeros(2, 3, dtype=F64))),
]


@pytest.mark.parametrize(("what", "call"), CELL_MISTAKES, ids=[m[0] for m in CELL_MISTAKES])
def test_cell_raises_what_torch_raises(what, call):
    ours, theirs = _pair(longshort.LSTMCell, nn.LSTMCell, 3, 4)
    mine, torchs = _raised(lambda: call(ours)), _raised(lambda: call(theirs))
    assert torchs is not None and mine is not None, what
    assert isinstance(mine, type(torchs)), f"{what}: {type(mine)} is not a {type(torchs)}"


def test_rnn_proj_size_refused_as_torch_does():
    with pytest.raises(ValueError) as theirs:
        nn.RNN(3, 4, proj_size=2)
    with pytest.raises(type(theirs.value), match="proj_size argument is only supported for LSTM"):
        longshort.RNN(3, 4, proj_size=2)


# -- dropout, modes, copies ----------------------------------------------------------------------


def test_inter_layer_dropout_draws_torchs_random_numbers():
    ours, theirs = _pair(longshort.LSTM, nn.LSTM, 3, 8, num_layers=3, dropout=0.5)
    x = torch.randn(7, 4, 3)
    torch.manual_seed(5)
    a = ours(x)[0]
    torch.manual_seed(5)
    b = theirs(x)[0]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=0, atol=1e-5)
    assert not torch.equal(ours(x)[0], a)


@pytest.mark.parametrize(
    "make", [lambda: longshort.LSTM(3, 4, num_layers=2), lambda: longshort.LSTMCell(3, 4)]
)
def test_deepcopy_and_pickle_keep_weights_and_results(make):
    m = make()
    x = torch.randn(5, 2, 3) if isinstance(m, longshort.LSTM) else torch.randn(2, 3)
    want = m(x)[0]
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        torch.testing.assert_close(other(x)[0], want, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = make()
    m2.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(m2(x)[0], want, rtol=0, atol=0)


# -- 5, 6, 7. the public surface, isinstance, whole pickled models -------------------------------


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls", "kw"),
    [
        (longshort.LSTM, nn.LSTM, {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
        (longshort.RNN, nn.RNN, {"num_layers": 2, "nonlinearity": "relu"}),
    ],
)
def test_public_surface_like_torch(ours_cls, theirs_cls, kw):
    ours, theirs = _pair(ours_cls, theirs_cls, 3, 4, **kw)
    assert ours.mode == theirs.mode
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert all(
        torch.equal(a, b) for a, b in zip(ours._flat_weights, theirs._flat_weights, strict=True)
    )
    assert [[w.shape for w in layer] for layer in ours.all_weights] == [
        [w.shape for w in layer] for layer in theirs.all_weights
    ]
    ours.flatten_parameters()
    x = torch.randn(5, 2, 3)
    hidden = theirs(x)[1]
    ours.check_forward_args(x, hidden, None)  # no error, as torch's
    assert ours.get_expected_hidden_size(x, None) == theirs.get_expected_hidden_size(x, None)
    if ours_cls is longshort.LSTM:
        assert ours.get_expected_cell_size(x, None) == theirs.get_expected_cell_size(x, None)
        perm = torch.tensor([1, 0])
        for a, b in zip(
            ours.permute_hidden(hidden, perm), theirs.permute_hidden(hidden, perm), strict=True
        ):
            assert torch.equal(a, b)
    with pytest.raises(RuntimeError) as mine:
        ours.check_input(torch.randn(5, 2, 9), None)
    with pytest.raises(RuntimeError) as torchs:
        theirs.check_input(torch.randn(5, 2, 9), None)
    assert str(mine.value) == str(torchs.value)


def test_isinstance_and_compile():
    """An RNNBase (so the surface above exists) but not an nn.LSTM, which torch.compile would
    refuse to trace; the cells are torch's cell classes."""
    assert isinstance(longshort.LSTM(2, 3), nn.RNNBase)
    assert not isinstance(longshort.LSTM(2, 3), nn.LSTM)
    assert isinstance(longshort.LSTMCell(2, 3), nn.LSTMCell)
    assert isinstance(longshort.RNNCell(2, 3), nn.RNNCell)


def test_weight_norm_parametrization_like_torch():
    ours, theirs = _pair(longshort.LSTM, nn.LSTM, 3, 4)
    for m in (ours, theirs):
        nn.utils.parametrizations.weight_norm(m, "weight_hh_l0")
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=0, atol=1e-5)
    ga = torch.autograd.grad(ours(x)[0].sum(), list(ours.parameters()))
    gb = torch.autograd.grad(theirs(x)[0].sum(), list(theirs.parameters()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"layer_norm": True}])
def test_weight_norm_parametrization_of_a_cell(kw):
    """A cell reads its weights from the parameter dict first: a parametrized weight (no
    longer in it) must still be the one the step uses, as in torch.nn's cell."""
    torch.manual_seed(0)
    ours = longshort.LSTMCell(3, 4, **kw)
    nn.utils.parametrizations.weight_norm(ours, "weight_hh")
    with torch.no_grad():
        ours.parametrizations.weight_hh.original0.mul_(2.0)  # g: the weight doubles
    plain = longshort.LSTMCell(3, 4, **kw)
    state = {k: v for k, v in ours.state_dict().items() if "parametrizations" not in k}
    plain.load_state_dict({**state, "weight_hh": ours.weight_hh.detach()})
    x, hx = torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))
    torch.testing.assert_close(ours(x, hx), plain(x, hx), rtol=0, atol=1e-6)
    g = ours.parametrizations.weight_hh.original0
    assert torch.autograd.grad(ours(x, hx)[0].sum(), g)[0].abs().sum() > 0


def test_whole_model_loads_with_the_safe_globals_line():
    m = nn.Sequential(nn.Linear(3, 3), longshort.LSTMCell(3, 4))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(buf, weights_only=True)
    buf.seek(0)
    with torch.serialization.safe_globals([*longshort.SAFE_GLOBALS, nn.Sequential, nn.Linear]):
        loaded = torch.load(buf, weights_only=True)
    x = torch.randn(2, 3)
    torch.testing.assert_close(loaded(x)[0], m(x)[0], rtol=0, atol=0)


class WordModel(nn.Module):
    """pytorch/examples' word_language_model in small: embedding, LSTM, dropout, decoder."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.encoder, self.rnn = nn.Embedding(20, 6), rnn
        self.drop, self.decoder = nn.Dropout(0.2), nn.Linear(8, 20)

    def forward(self, tokens):
        out = self.rnn(self.drop(self.encoder(tokens)))[0]
        return self.decoder(self.drop(out))


ALLOWED = [WordModel, nn.Embedding, nn.Dropout, nn.Linear]  # what a torch.nn user lists


@pytest.mark.parametrize("kw", [{}, {"peephole": True, "zoneout": 0.1}], ids=["plain", "variant"])
def test_a_whole_model_loads_with_the_classes_a_torch_nn_user_lists(kw):
    """torch.nn's user lists their model, Embedding, Dropout, Linear and nn.LSTM; here
    longshort.LSTM takes nn.LSTM's place, and nothing of longshort's insides is needed."""
    torch.manual_seed(0)
    model = WordModel(longshort.LSTM(6, 8, num_layers=2, **kw)).eval()
    ref = WordModel(nn.LSTM(6, 8, num_layers=2)).eval()
    for m, rnn_class in ((model, longshort.LSTM), (ref, nn.LSTM)):
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        with torch.serialization.safe_globals([*ALLOWED, rnn_class]):
            loaded = torch.load(buf, weights_only=True)
        tokens = torch.randint(0, 20, (7, 3))
        torch.testing.assert_close(loaded(tokens), m(tokens), rtol=0, atol=0)
        if rnn_class is longshort.LSTM:
            assert loaded.rnn.options == model.rnn.options


def test_pickles_that_hold_the_options_type_still_load_with_safe_globals(monkeypatch):
    from longshort.nn import variants

    monkeypatch.setattr(variants.PicklesOptions, "__getstate__", lambda self: self.__dict__)
    m = longshort.LSTMCell(3, 4, coupled_gates=True)
    buf = io.BytesIO()
    torch.save(m, buf)
    monkeypatch.undo()
    buf.seek(0)
    with (
        torch.serialization.safe_globals([longshort.LSTMCell]),
        pytest.raises(pickle.UnpicklingError, match="Options"),
    ):
        torch.load(buf, weights_only=True)
    buf.seek(0)
    with torch.serialization.safe_globals(longshort.SAFE_GLOBALS):
        loaded = torch.load(buf, weights_only=True)
    assert loaded.options == m.options
