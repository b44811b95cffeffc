"""Bad input gets a clear error naming the argument, what was received and what was expected."""

from __future__ import annotations

import pytest
import torch

import longshort
from longshort.nn import pack_padded_sequence


@pytest.fixture
def lstm():
    return longshort.LSTM(3, 4, num_layers=2)


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((3,), r"Expected input to be 2D or 3D, got 1D instead: input must be 3-D .* shape \(3,\)"),
        ((2, 2, 2, 3), r"got 4D instead: .* got shape \(2, 2, 2, 3\)"),
        (
            (5, 2, 7),
            r"must be equal to input_size. Expected 3, got 7 \(input of shape \(5, 2, 7\)\)",
        ),
        ((0, 2, 3), r"empty sequence \(seq_len 0\)"),
    ],
)
def test_input_shape_errors(lstm, shape, match):
    with pytest.raises(ValueError, match=match):
        lstm(torch.zeros(shape))


def test_input_type_dtype_device(lstm):
    with pytest.raises(TypeError, match=r"input must be a torch\.Tensor, got list"):
        lstm([[1.0, 2.0, 3.0]])
    with pytest.raises(
        TypeError,
        match=r"input dtype \(torch.float64\) does not match weight dtype \(torch.float32\)",
    ):
        lstm(torch.zeros(2, 1, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"dtype \(torch.int64\)"):
        lstm(torch.zeros(2, 1, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"input is on device meta, expected cpu"):
        lstm(torch.zeros(2, 1, 3, device="meta"))


def test_nan_input_refused_with_check_finite_else_propagated_as_torch_does(lstm):
    x = torch.zeros(4, 2, 3)
    x[2, 1, 0] = float("nan")
    strict = longshort.LSTM(3, 4, check_finite=True)
    with pytest.raises(ValueError, match=r"input contains NaN or inf, first at index \(2, 1, 0\)"):
        strict(x)
    h0 = torch.zeros(1, 2, 4)
    h0[0, 1, 3] = float("inf")
    with pytest.raises(ValueError, match=r"h_0 contains NaN or inf, first at index \(0, 1, 3\)"):
        strict(torch.zeros(4, 2, 3), (h0, torch.zeros(1, 2, 4)))
    theirs = lstm.to_torch()
    out, want = lstm(x)[0], theirs(x)[0]
    assert torch.equal(out.isnan(), want.isnan()) and out[:2].isfinite().all()


def test_state_errors(lstm):
    x = torch.zeros(5, 2, 3)
    h, c = torch.zeros(2, 2, 4), torch.zeros(2, 2, 4)
    with pytest.raises(
        ValueError,
        match=r"Expected hidden\[0\] size \(2, 2, 4\), got \[1, 2, 4\]: h_0 must have shape",
    ):
        lstm(x, (h[:1], c))
    with pytest.raises(
        ValueError,
        match=r"Expected hidden\[1\] size \(2, 2, 4\), got \[2, 3, 4\]: c_0 must have shape",
    ):
        lstm(x, (h, torch.zeros(2, 3, 4)))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\), got Tensor"):
        lstm(x, h)
    with pytest.raises(TypeError, match=r"c_0 dtype \(torch.float64\) does not match weight dtype"):
        lstm(x, (h, c.double()))
    with pytest.raises(
        ValueError,
        match=r"For unbatched 2-D input, hx and cx should also be 2-D but got \(3-D, 3-D\)",
    ):
        lstm(x[:, 0], (h, c))
    rnn = longshort.RNN(3, 4)
    with pytest.raises(
        ValueError, match=r"Expected hidden size \(1, 2, 4\), got \[1, 4, 4\]: h_0 must have shape"
    ):
        rnn(x, torch.zeros(1, 4, 4))


def test_lengths_errors(lstm):
    x = torch.zeros(5, 2, 3)
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\).* got \(3,\)"):
        lstm(x, lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\].* from 0 to 2"):
        lstm(x, lengths=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"from 2 to 6"):
        lstm(x, lengths=torch.tensor([6, 2]))
    with pytest.raises(TypeError, match=r"lengths must be an integer tensor, got dtype"):
        lstm(x, lengths=torch.tensor([1.0, 2.0]))
    packed = pack_padded_sequence(x, [5, 2])
    with pytest.raises(ValueError, match="lengths or a PackedSequence, not both"):
        lstm(packed, lengths=torch.tensor([5, 2]))


def test_unsorted_packing_with_enforce_sorted():
    x = torch.zeros(5, 3, 3)
    with pytest.raises(ValueError, match=r"decreasing order, got lengths\[1\]=2 < lengths\[2\]=4"):
        pack_padded_sequence(x, [5, 2, 4], enforce_sorted=True)
    with pytest.raises(ValueError, match=r"lengths has 2 entries, expected 3"):
        pack_padded_sequence(x, [5, 2])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(hidden_size=0), ValueError, "hidden_size must be greater than zero, got 0"),
        (dict(hidden_size=4.0), TypeError, "hidden_size should be of type int, got: float"),
        (dict(num_layers=0), ValueError, "num_layers must be greater than zero"),
        (
            dict(proj_size=4),
            ValueError,
            r"proj_size has to be smaller than hidden_size: proj_size must be 0 .* \[1, 3\], got 4",
        ),
        (
            dict(dropout=1.5),
            ValueError,
            r"dropout should be a number in range \[0, 1\] .*, got 1.5",
        ),
        (dict(bias=1), TypeError, "bias should be of type bool, got: int"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    args = dict(input_size=3, hidden_size=4) | kwargs
    with pytest.raises(error, match=match):
        longshort.LSTM(**args)


def test_rnn_and_cell_errors():
    with pytest.raises(
        ValueError, match=r"Unknown nonlinearity 'sigmoid'\. Select from 'tanh' or 'relu'\."
    ):
        longshort.RNN(3, 4, nonlinearity="sigmoid")
    cell = longshort.LSTMCell(3, 4)
    with pytest.raises(
        ValueError,
        match=r"got 5 expected 3: input must have shape \(batch, 3\) or \(3,\), got \(2, 5\)",
    ):
        cell(torch.zeros(2, 5))
    with pytest.raises(
        ValueError, match=r"doesn't match hidden0 batch size 3: h_0 must have shape \(2, 4\)"
    ):
        cell(torch.zeros(2, 3), (torch.zeros(3, 4), torch.zeros(2, 4)))
