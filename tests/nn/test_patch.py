"""longshort.patch_torch(): code that builds torch.nn's recurrent classes gets longshort's, and
gets torch.nn's back on undo."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.modules.rnn
from torch import nn

import longshort
from longshort.nn.patch import PLACES, REPLACEMENTS

ORIGINAL = {name: getattr(torch.nn.modules.rnn, name) for name in REPLACEMENTS}


@pytest.fixture(autouse=True)
def _torch_nn_restored():
    yield
    for place in PLACES:
        for name, cls in ORIGINAL.items():
            setattr(place, name, cls)


class ThirdParty(nn.Module):
    """A model written against torch.nn, as a library outside our control writes it: every
    recurrent class reached through torch.nn at build time."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, proj_size=4, batch_first=True)
        self.gru = torch.nn.modules.GRU(4, 5, bidirectional=True)
        self.rnn = torch.nn.modules.rnn.RNN(10, 4, nonlinearity="relu")
        self.cell = nn.LSTMCell(4, 4)
        self.gcell, self.rcell = nn.GRUCell(4, 4), nn.RNNCell(4, 4)

    def forward(self, x):
        y = self.lstm(x)[0].transpose(0, 1)
        y = self.rnn(self.gru(y)[0])[0][-1]
        h, _ = self.cell(y)
        return self.rcell(self.gcell(h, h))


def test_every_place_is_patched_and_undone():
    with longshort.patch_torch() as patch:
        for place in PLACES:
            for name, cls in REPLACEMENTS.items():
                assert getattr(place, name) is cls
        assert patch.active and patch.replaced == ORIGINAL
    for place in PLACES:
        for name, cls in ORIGINAL.items():
            assert getattr(place, name) is cls
    assert not patch.active
    patch.undo()  # a second undo does nothing
    assert nn.LSTM is ORIGINAL["LSTM"]


def test_a_third_party_model_runs_on_longshort_unchanged():
    torch.manual_seed(0)
    theirs = ThirdParty()
    torch.manual_seed(0)
    patch = longshort.patch_torch()
    ours = ThirdParty()
    patch.undo()
    kinds = {type(m) for m in ours.modules()} - {ThirdParty}
    assert kinds == set(REPLACEMENTS.values())
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)  # same initialisation, same seed: the same weights
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)
    ga = torch.autograd.grad(ours(x).sum(), list(ours.parameters()))
    gb = torch.autograd.grad(theirs(x).sum(), list(theirs.parameters()))
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_longshort_reads_no_torch_nn_name_while_patched(monkeypatch):
    """Projection, conversion both ways, and the cells' export forward (torch.nn's step) keep
    working with torch.nn's names pointing at longshort's classes."""
    with longshort.patch_torch():
        lstm = nn.LSTM(3, 6, proj_size=2)
        assert isinstance(lstm, longshort.LSTM)
        back = lstm.to_torch()
        assert type(back) is ORIGINAL["LSTM"]
        x = torch.randn(4, 2, 3)
        torch.testing.assert_close(back(x)[0], lstm(x)[0], rtol=0, atol=1e-6)
        assert type(longshort.LSTM.from_torch(back)) is longshort.LSTM
        cells = [getattr(nn, name)(3, 4) for name in ("LSTMCell", "GRUCell", "RNNCell")]
        ours = [cell(x[0]) for cell in cells]
        monkeypatch.setattr(longshort.nn.cells.onnx, "exporting", lambda: True)
        for cell, out in zip(cells, ours, strict=True):  # torch.nn's step, as ONNX export runs
            torch.testing.assert_close(cell(x[0]), out, rtol=0, atol=1e-6)
        with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
            nn.GRU(3, 4, proj_size=2)


def test_torch_compile_traces_the_patched_layers_whole():
    """torch.compile refuses what torch.nn.LSTM names unless allow_rnn is set: the patch sets
    it while in place and undo restores it."""
    import torch._dynamo.config as dynamo_config

    before = dynamo_config.allow_rnn
    with longshort.patch_torch():
        model = nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 4))
        x = torch.randn(5, 2, 3)
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x)[0], model(x)[0], rtol=0, atol=1e-6)
    assert dynamo_config.allow_rnn == before
    torch._dynamo.reset()


def test_patches_nest_and_names_choose():
    outer = longshort.patch_torch(["LSTM"])
    assert nn.LSTM is longshort.LSTM and nn.GRU is ORIGINAL["GRU"]
    with longshort.patch_torch():
        assert nn.GRU is longshort.GRU
    assert nn.LSTM is longshort.LSTM and nn.GRU is ORIGINAL["GRU"]
    outer.undo()
    assert nn.LSTM is ORIGINAL["LSTM"]
    for bad in ("LSTM", ["Transformer"]):
        with pytest.raises(ValueError, match=r"names must be a list drawn from \['LSTM'"):
            longshort.patch_torch(bad)


class RNNModel(nn.Module):
    """pytorch/examples' word_language_model model, as its file writes it: the recurrent class
    taken from torch.nn by name."""

    def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=0.2)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens, hidden=None):
        out, hidden = self.rnn(self.drop(self.encoder(tokens)), hidden)
        return self.decoder(self.drop(out)), hidden


def _train_and_keep_best(model: nn.Module, data: torch.Tensor, path) -> float:
    """The example's loop in small: truncated BPTT chunks, clipping, SGD, the best model by
    validation saved whole with torch.save; returns the best validation loss."""
    opt = torch.optim.SGD(model.parameters(), lr=20.0)  # the example's default
    loss_fn, best = nn.CrossEntropyLoss(), float("inf")
    train, valid = data[:, :3], data[:, 3:]
    for _ in range(4):
        model.train()
        for i in range(0, train.shape[0] - 1, 5):
            x, y = train[i : i + 5], train[i + 1 : i + 6]
            x = x[: y.shape[0]]
            opt.zero_grad()
            loss = loss_fn(model(x)[0].flatten(0, 1), y.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(loss_fn(model(valid[:-1])[0].flatten(0, 1), valid[1:].flatten()))
        if val < best:
            best = val
            torch.save(model, path)
    return best


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_word_language_model_flow_end_to_end(tmp_path, rnn_type):
    """Train, save the whole best model, load it with weights_only=True given only the classes
    the example's user lists, torch.nn's recurrent class among them (longshort's, patched)."""
    torch.manual_seed(0)
    data = (torch.arange(41)[:, None] * 7 + torch.arange(5) * 3) % 30  # next = this + 7
    path = tmp_path / "model.pt"
    with longshort.patch_torch():
        model = RNNModel(rnn_type, 30, 8, 12, 2)
        assert isinstance(model.rnn, REPLACEMENTS[rnn_type])
        best = _train_and_keep_best(model, data, path)
        allowed = [RNNModel, nn.Dropout, nn.Embedding, nn.Linear, getattr(nn, rnn_type)]
        with torch.serialization.safe_globals(allowed):
            loaded = torch.load(path, weights_only=True)
    assert type(loaded.rnn) is REPLACEMENTS[rnn_type]
    loaded.eval()
    with torch.no_grad():
        out = loaded(data[:-1, 3:])[0].flatten(0, 1)
    assert float(nn.CrossEntropyLoss()(out, data[1:, 3:].flatten())) == pytest.approx(
        best, abs=1e-6
    )
    assert best < float(torch.log(torch.tensor(30.0)))  # it learned something


def test_a_plain_model_pickle_names_no_longshort_internals():
    buf = io.BytesIO()
    torch.save(longshort.LSTM(3, 4), buf)
    assert b"longshort.nn.variants" not in buf.getvalue()
    assert b"longshort.engine" not in buf.getvalue()
