"""Each mistake torch.nn names gets, from longshort, an instance of the exception class torch.nn
raises and a message that contains torch.nn's own sentence (read from torch.nn at test time, so
a torch release that rewords one shows here), besides longshort's own explanation."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import longshort

LAYERS = ("LSTM", "GRU", "RNN")
CELLS = ("LSTMCell", "GRUCell", "RNNCell")


def _r(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def _states(name: str, *shape, dtype=torch.float32):
    """hx for a module of that name: (h, c) for the LSTM's, h for the others."""
    h = _r(*shape, dtype=dtype)
    return (h, h.clone()) if name.startswith("LSTM") else h


LAYER_MISTAKES = {
    "input 4-D": lambda L, n: L(10, 20)(_r(5, 3, 10, 1)),
    "input 1-D": lambda L, n: L(10, 20)(_r(10)),
    "input_size": lambda L, n: L(10, 20)(_r(5, 3, 11)),
    "input dtype": lambda L, n: L(10, 20)(_r(5, 3, 10, dtype=torch.float64)),
    "hx batch": lambda L, n: L(10, 20)(_r(5, 3, 10), _states(n, 1, 2, 20)),
    "hx size": lambda L, n: L(10, 20)(_r(5, 3, 10), _states(n, 1, 3, 21)),
    "hx 2-D for batched input": lambda L, n: L(10, 20)(_r(5, 3, 10), _states(n, 3, 20)),
    "hx 3-D for unbatched input": lambda L, n: L(10, 20)(_r(5, 10), _states(n, 1, 1, 20)),
    "proj_size too large": lambda L, n: L(10, 20, proj_size=20),
    "proj_size negative": lambda L, n: L(10, 20, proj_size=-1),
    "dropout": lambda L, n: L(10, 20, dropout=2.0),
    "hidden_size 0": lambda L, n: L(10, 0),
    "input_size 0": lambda L, n: L(0, 10),
    "num_layers 0": lambda L, n: L(10, 10, num_layers=0),
    "input_size float": lambda L, n: L(10.0, 10),
    "bias int": lambda L, n: L(10, 10, bias=1),
    "batch_first int": lambda L, n: L(10, 10, batch_first=1),
}

CELL_MISTAKES = {
    "input_size": lambda C, n: C(10, 20)(_r(3, 11)),
    "input 3-D": lambda C, n: C(10, 20)(_r(3, 2, 10)),
    "hx batch": lambda C, n: C(10, 20)(_r(3, 10), _states(n, 2, 20)),
    "hx size": lambda C, n: C(10, 20)(_r(3, 10), _states(n, 3, 21)),
    "hx 3-D": lambda C, n: C(10, 20)(_r(3, 10), _states(n, 1, 3, 20)),
    "shape before dtype": lambda C, n: C(10, 20)(_r(3, 10, dtype=torch.float64), _states(n, 3, 21)),
}


def _raised(make, cls, name) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            make(cls, name)
    return info.value


def _check_same_mistake(make, name: str) -> None:
    theirs = _raised(make, getattr(nn, name), name)
    ours = _raised(make, getattr(longshort, name), name)
    assert isinstance(ours, type(theirs)), (type(theirs), ours)
    assert str(theirs) in str(ours), (str(theirs), str(ours))
    assert str(ours).startswith(f"{name}: "), str(ours)  # and longshort's naming of the module


@pytest.mark.parametrize("mistake", LAYER_MISTAKES)
@pytest.mark.parametrize("name", LAYERS)
def test_layer_mistakes_carry_torch_sentence(name, mistake):
    _check_same_mistake(LAYER_MISTAKES[mistake], name)


@pytest.mark.parametrize("mistake", CELL_MISTAKES)
@pytest.mark.parametrize("name", CELLS)
def test_cell_mistakes_carry_torch_sentence(name, mistake):
    _check_same_mistake(CELL_MISTAKES[mistake], name)


def test_layer_only_messages():
    """The LSTM's cell-state shape, proj_size on the others, and the RNN's nonlinearity."""
    _check_same_mistake(lambda L, n: L(10, 20)(_r(5, 3, 10), (_r(1, 3, 20), _r(1, 3, 21))), "LSTM")
    for name in ("GRU", "RNN"):
        _check_same_mistake(lambda L, n: L(10, 20, proj_size=5), name)
    _check_same_mistake(lambda L, n: L(10, 20, nonlinearity="sigmoid"), "RNN")
    _check_same_mistake(lambda C, n: C(10, 20)(_r(3, 10), (_r(3, 20), _r(3, 21))), "LSTMCell")


def test_dropout_warning_carries_torch_sentence():
    with pytest.warns(UserWarning) as theirs:
        nn.LSTM(3, 4, dropout=0.5)
    with pytest.warns(UserWarning, match="has no effect") as ours:
        longshort.LSTM(3, 4, dropout=0.5)
    assert str(theirs[0].message) in str(ours[0].message)


def test_deliberate_differences():
    """Where torch.nn's error comes from a kernel rather than a check (a state of another dtype
    than the weights: "mat1 and mat2 must have the same dtype"), longshort names the argument
    instead, with an exception of torch.nn's class. A cell's bias must be a bool: torch.nn's
    cells take ``RNNCell(10, 20, "relu")`` with "relu" as the bias; longshort refuses it. An
    RNNCell's unknown nonlinearity is refused at construction, not at the first call."""
    for name in CELLS:
        with pytest.raises(RuntimeError, match=r"h_0 dtype \(torch.float64\) does not match"):
            getattr(longshort, name)(10, 20)(_r(3, 10), _states(name, 3, 20, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"h_0 dtype \(torch.float64\) does not match"):
        longshort.GRU(10, 20)(_r(5, 3, 10), _r(1, 3, 20, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"for nonlinearity='relu', pass it by keyword"):
        longshort.RNNCell(10, 20, "relu")
    nn.RNNCell(10, 20, "relu")  # torch.nn accepts it
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: sigmoid"):
        longshort.RNNCell(10, 20, nonlinearity="sigmoid")
