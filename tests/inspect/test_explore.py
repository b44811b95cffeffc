"""The explorer's data: text features, units ranked by them, per-unit gradient flow, and the
page of every run kind (the page in a real browser: tests/report/test_browser.py)."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

import longshort
from longshort.apps.inspection import explore_run
from longshort.apps.runs import QUIET, Budget
from longshort.inspect.explorer import explore, explore_data
from longshort.inspect.features import correlations, text_features, tracking_units
from longshort.inspect.gradients import unit_gradient_flow
from longshort.train.model import SequenceModel

SOURCE = "def f(a, b=\"x(y\"):  # c(\n    return [a, '''q\nr''']\n"


def test_text_features_by_hand():
    f = text_features(SOURCE)
    as_digits = {k: "".join(str(int(v))[-1] for v in t.tolist()) for k, t in f.items()}
    assert as_digits["in_string"] == "000000000001111100000000000000000000000011111111100"
    assert as_digits["bracket_depth"] == "000001111111111100000000000000000000111111111111100"
    assert as_digits["in_comment"] == "000000000000000000001111100000000000000000000000000"
    assert as_digits["indentation"] == "000000000000000000000000044444444444444444444000000"
    assert f["line_position"][:3].tolist() == [0, 1, 2] and f["line_position"][25] == 0


def test_correlations_find_a_planted_unit():
    torch.manual_seed(0)
    feature = torch.arange(50.0) % 7
    values = torch.randn(50, 6)
    values[:, 4] = -2 * feature + 0.01 * torch.randn(50)
    r = correlations(values, feature)
    assert r[4] == pytest.approx(-1, abs=1e-3)
    assert tracking_units(values, {"f": feature}, top=2)["f"][0][0] == 4
    numpy_r = [np.corrcoef(values[:, u], feature)[0, 1] for u in range(4)]
    np.testing.assert_allclose(r[:4].numpy(), numpy_r, atol=1e-9)


@pytest.mark.parametrize("cls", [longshort.LSTM, longshort.GRU, longshort.RNN])
def test_unit_gradient_flow_reruns_the_layer_and_ends_where_the_equations_say(cls):
    torch.manual_seed(0)
    rnn = cls(3, 4, num_layers=2).double()
    x = torch.randn(6, 3, dtype=torch.double)
    seen = []
    grads = unit_gradient_flow(rnn, x, lambda out: seen.append(out) or out[-1].sum())
    torch.testing.assert_close(seen[0], rnn(x)[0], rtol=0, atol=1e-12)  # the same steps
    last = grads[-1][-1]  # ∂ sum(h_T) / ∂ state_T of the top layer
    if cls is longshort.LSTM:
        tr = longshort.inspect.trace(rnn, x[:, None])[-1]
        c, o = tr.c[-1, 0], tr.o[-1, 0]
        torch.testing.assert_close(last, (o * (1 - torch.tanh(c) ** 2)).abs())  # h = o tanh(C)
    else:
        torch.testing.assert_close(last, torch.ones(4, dtype=torch.double))  # the state is h
    assert grads[0].shape == (6, 4) and bool((grads[0][:-1] > 0).all())


def _page_data(path):
    text = path.read_text()
    raw = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(raw.group(1).replace("<\\/", "</"))


def test_page_data_decode_to_the_trace(tmp_path):
    torch.manual_seed(0)
    text = "if (a):\n    b = 'c'\n" * 5
    chars = sorted(set(text))
    model = SequenceModel("lstm", len(chars), 8, len(chars), tokens=True, readout="all")
    x = torch.tensor([[chars.index(c) for c in text]])
    data = _page_data(explore(model, x, list(text), tmp_path / "p.html"))
    assert data["tokens"] == list(text) and data["text"] and data["carousel"] == "f"
    tr = longshort.inspect.trace(model.rnn, model.features(x).detach())[0]
    for q in ("c", "h", "i", "f", "o", "g"):
        packed = data["layers"][0]["quantities"][q]
        codes = np.frombuffer(base64.b64decode(packed["b64"]), np.uint8).reshape(len(text), 8)
        lo, hi = np.array(packed["lo"]), np.array(packed["hi"])
        decoded = lo + (hi - lo) * codes / 255
        want = getattr(tr, q)[:, 0].detach().numpy()
        assert np.abs(decoded - want).max() <= (hi - lo).max() / 255 + 1e-4
    features = {row[0] for row in data["ranking"]}
    assert features == {"in_string", "line_position", "indentation", "bracket_depth", "in_comment"}
    assert data["gradient"]["start"] == 0 and len(data["layers"][0]["saturation"]) == 3


def test_several_sequences_with_lengths_and_labels():
    torch.manual_seed(0)
    model = SequenceModel("gru", 2, 5, 3)
    x = torch.randn(3, 7, 2)
    tokens = [
        [f"{v:.1f}" for v in row[:n, 0].tolist()] for row, n in zip(x, [7, 4, 5], strict=True)
    ]
    data = explore_data(model, x, tokens, lengths=[7, 4, 5], labels=["a", "b", "a"])
    assert model.training  # evaluation mode inside, the caller's mode back after
    assert data["starts"] == [0, 7, 11] and len(data["tokens"]) == 16
    assert set(data["layers"][0]["quantities"]) == {"h", "r", "z", "n"}
    assert data["carousel"] == "z" and data["ranking"] == []
    with pytest.raises(ValueError, match=r"got lists of \[7, 4, 5\] strings for .* \[7, 4, 6\]"):
        explore_data(model, x, tokens, lengths=[7, 4, 6])
    with pytest.raises(TypeError, match="must be a longshort LSTM, GRU or RNN"):
        explore_data(torch.nn.Linear(2, 2), x, tokens)


SHORT = Budget(hidden=8, steps=4, batch_size=4, eval_every=2)


RUNS = [
    ("adding", "lstm"),
    ("sentiment", "gru"),
    ("temporal-order", "lstm-peephole"),
    ("copy", "rnn"),
]


@pytest.mark.parametrize(("task", "cell"), RUNS)
def test_every_task_run_gets_its_page(tmp_path, task, cell):
    from longshort.apps.experiment import train_one

    train_one(task, 20, cell, SHORT, tmp_path / "run", session=QUIET)
    page = explore_run(tmp_path / "run")
    data = _page_data(page)
    assert page.name == "explore.html" and len(data["starts"]) == 12
    if task == "sentiment":
        assert data["tokens"][0] == "the" and set(data["labels"]) <= {"negative", "positive"}


def test_classifier_and_language_model_runs_get_their_pages(tmp_path):
    from longshort.apps.classify import train_classifier
    from longshort.apps.lm import train_lm

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(10, 6, 2)), y=np.array(["u", "d"] * 5))
    train_classifier(None, tmp_path / "d.npz", tmp_path / "d.npz", tmp_path / "cls", SHORT, QUIET)
    data = _page_data(explore_run(tmp_path / "cls", input_file=tmp_path / "d.npz"))
    assert data["labels"][:2] == ["u", "d"] and len(data["starts"]) == 10
    (tmp_path / "t.py").write_text("def f(x):\n    return 'a' + x\n" * 200)
    train_lm([tmp_path / "t.py"], tmp_path / "lm", seq_len=20, budget=SHORT, session=QUIET)
    page = explore_run(tmp_path / "lm", input_file=tmp_path / "t.py", chars=300)
    data = _page_data(page)
    assert "".join(data["tokens"]) == ("def f(x):\n    return 'a' + x\n" * 200)[-300:]
    assert "The last 300 characters" in data["note"]
    with pytest.raises(ValueError, match="trained on files; give them to explore with --input"):
        explore_run(tmp_path / "lm")


def test_forecaster_run_gets_its_page_and_the_command_line_writes_it(tmp_path, capsys):
    from longshort.apps.forecast import train_forecaster
    from longshort.cli import main

    series = 10 + torch.sin(torch.arange(300.0) / 4)
    (tmp_path / "s.csv").write_text("y\n" + "\n".join(f"{v:.4f}" for v in series) + "\n")
    train_forecaster(None, tmp_path / "s.csv", "y", tmp_path / "fc", window=24, horizon=6,
                     test_steps=48, season=24, budget=SHORT, session=QUIET)  # fmt: skip
    assert main(["inspect", str(tmp_path / "fc"), "--explore"]) == 0
    assert "explore.html" in capsys.readouterr().out
    data = _page_data(tmp_path / "fc" / "inspect" / "explore.html")
    assert len(data["starts"]) == 12 and len(data["tokens"]) == 12 * 24
    assert main(["inspect", str(tmp_path / "fc"), "--explore", "--chars", "0"]) != 0
    assert "--chars must be a positive number of characters, got 0" in capsys.readouterr().err


def test_a_folder_of_runs_gets_a_page_per_run(tmp_path):
    from longshort.apps.experiment import train_one
    from longshort.apps.inspection import explore_runs

    for cell in ("lstm", "rnn"):
        train_one("adding", 10, cell, SHORT, tmp_path / "demo" / f"adding-{cell}", session=QUIET)
    pages = explore_runs(tmp_path / "demo", tmp_path / "pages")
    assert [p.name for p in pages] == ["adding-lstm.html", "adding-rnn.html"]
    assert _page_data(pages[1])["cell"] == "RNN" and _page_data(pages[1])["carousel"] is None


def test_gradient_window_starts_from_the_traced_states():
    """A window that starts mid-sequence reruns from the traced states there: the same
    gradients as the whole sequence gives on those steps."""
    torch.manual_seed(0)
    model = SequenceModel("lstm", 3, 6, 2, num_layers=2).double()
    x = torch.randn(1, 30, 3, dtype=torch.double)
    tokens = [[str(t) for t in range(30)]]

    def grads(window):
        g = explore_data(model, x, tokens, window=window)["gradient"]
        codes = np.frombuffer(base64.b64decode(g["layers"][1]["b64"]), np.uint8).reshape(-1, 6)
        lo, hi = np.array(g["layers"][1]["lo"]), np.array(g["layers"][1]["hi"])
        return g["start"], lo + (hi - lo) * codes / 255

    (start, part), (_, whole) = grads(10), grads(300)
    assert start == 20
    np.testing.assert_allclose(part, whole[20:], atol=(whole.max() - whole.min()) / 100)
