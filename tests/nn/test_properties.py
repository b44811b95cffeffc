"""Property-based parity: hypothesis draws valid configurations and shapes; longshort must match
torch.nn.LSTM / nn.RNN with the same weights on every one."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import longshort
from tests.nn.parity import run_both


@st.composite
def configs(draw):
    lstm = draw(st.booleans())
    hidden = draw(st.integers(1, 9))
    kw = dict(
        input_size=draw(st.integers(1, 6)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
    )
    if lstm and hidden > 1:
        kw["proj_size"] = draw(st.integers(0, hidden - 1))
    if not lstm:
        kw["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    steps, batch = draw(st.integers(1, 12)), draw(st.integers(1, 5))
    lengths = draw(st.none() | st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    mode = draw(st.sampled_from(["plain", "packed", "lengths"])) if lengths else "plain"
    return lstm, kw, steps, batch, lengths, mode, draw(st.booleans()), draw(st.integers(0, 99))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(configs())
def test_random_configs_match_torch(case):
    lstm, kw, steps, batch, lengths, mode, given_state, seed = case
    torch.manual_seed(seed)
    theirs = (nn.LSTM if lstm else nn.RNN)(**kw)
    ours = (longshort.LSTM if lstm else longshort.RNN)(**kw)
    ours.load_state_dict(theirs.state_dict())
    shape = (batch, steps) if kw["batch_first"] else (steps, batch)
    x = torch.randn(*shape, kw["input_size"])
    hx = None
    if given_state:
        d = kw["num_layers"] * (2 if kw["bidirectional"] else 1)
        h = torch.randn(d, batch, kw.get("proj_size") or kw["hidden_size"])
        hx = (h, torch.randn(d, batch, kw["hidden_size"])) if lstm else h
    if mode == "plain":
        run_both(ours, theirs, x, hx, seed=seed)
        return
    packed = pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=kw["batch_first"], enforce_sorted=False
    )
    if mode == "packed":
        run_both(ours, theirs, packed, hx, seed=seed)
    else:
        run_both(
            ours,
            theirs,
            x[:, : max(lengths)] if kw["batch_first"] else x[: max(lengths)],
            hx,
            ours_kwargs={"lengths": torch.tensor(lengths)},
            theirs_x=packed,
            seed=seed,
        )
