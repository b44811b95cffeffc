"""The compiled CPU engine: chosen automatically, equal to torch.nn on long sequences too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import longshort
from longshort.engine import cpu, dispatch, reference
from tests.helpers import abs_err, record, rel_err


def test_chosen_for_cpu_float32_float64_and_bf16_with_mkl():
    assert dispatch.kernels(torch.zeros(1)) is cpu
    assert dispatch.kernels(torch.zeros(1, dtype=torch.float64)) is cpu
    bf16 = dispatch.kernels(torch.zeros(1, dtype=torch.bfloat16))
    assert bf16 is (cpu if cpu.BF16 else reference)
    assert dispatch.kernels(torch.zeros(1, dtype=torch.float16)) is reference
    with longshort.engine.use_cpu_engine("reference"):
        assert dispatch.kernels(torch.zeros(1)) is reference
    with pytest.raises(ValueError, match="name must be 'compiled' or 'reference', got 'gpu'"):
        longshort.engine.use_cpu_engine("gpu").__enter__()


@pytest.mark.parametrize(
    ("cls", "torch_cls", "kw"),
    [
        (longshort.LSTM, nn.LSTM, {}),
        (longshort.LSTM, nn.LSTM, {"proj_size": 16}),
        (longshort.RNN, nn.RNN, {}),
    ],
)
def test_long_sequence_matches_torch(cls, torch_cls, kw):
    """T = 1000: approximation error of the fast sigmoid/tanh must not accumulate."""
    torch.manual_seed(0)
    theirs = torch_cls(8, 32, **kw)
    ours = cls(8, 32, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1000, 4, 8)
    a, b = ours(x), theirs(x)
    assert record("forward abs T=1000 (float32)", abs_err(a[0], b[0])) <= 1e-5
    ga = torch.autograd.grad(a[0].sum(), [*ours.parameters()])
    gb = torch.autograd.grad(b[0].sum(), [*theirs.parameters()])
    for p, q in zip(ga, gb, strict=True):
        assert record("gradient rel T=1000 (float32)", rel_err(p, q)) <= 1e-4


def test_compiled_equals_reference_with_lengths():
    torch.manual_seed(1)
    m = longshort.LSTM(5, 12, num_layers=2, bidirectional=True, proj_size=4)
    x = torch.randn(30, 6, 5)
    lengths = torch.tensor([30, 1, 17, 9, 30, 2])
    outs = []
    for engine in ("compiled", "reference"):
        with longshort.engine.use_cpu_engine(engine):
            out, (h, c) = m(x, lengths=lengths)
            grads = torch.autograd.grad((out.sum() + h.sum() + c.sum()), [*m.parameters()])
            outs.append((out, h, c, grads))
    (o1, h1, c1, g1), (o2, h2, c2, g2) = outs
    for a, b in ((o1, o2), (h1, h2), (c1, c2)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(g1, g2, strict=True):
        assert rel_err(a, b) < 1e-5
