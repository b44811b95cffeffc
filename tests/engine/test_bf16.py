"""bfloat16 on CPU: within 2e-2 of float32 torch.nn on whichever engine runs it (the compiled
one's bf16 products with float32 state need AVX512-BF16 or MKL; elsewhere the reference engine
runs bf16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import longshort
from longshort.engine.cpu import packed
from longshort.engine.cpu.blas import BF16


def _rel(a, b):
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True}])
def test_bf16_module_close_to_float32_torch(kw):
    torch.manual_seed(0)
    theirs = nn.LSTM(8, 32, batch_first=True, **kw)
    ours = longshort.LSTM.from_torch(theirs).to(torch.bfloat16)
    x = torch.randn(6, 40, 8)
    lengths = torch.tensor([40, 3, 17, 40, 1, 25])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want = nn.utils.rnn.pad_packed_sequence(theirs(packed)[0], batch_first=True)[0]
    got, (h, c) = ours(x.bfloat16(), lengths=lengths)
    assert got.dtype == h.dtype == c.dtype == torch.bfloat16
    assert _rel(got, want) < 2e-2
    (want.sum()).backward()
    (got.float().sum()).backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert p.grad.dtype == torch.bfloat16
        assert _rel(p.grad, q.grad) < 2e-2


def test_autocast_runs_bf16_and_gives_float32_grads():
    torch.manual_seed(1)
    theirs = nn.LSTM(8, 32)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(30, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = ours(x)
    assert out.dtype == torch.bfloat16
    assert _rel(out, theirs(x)[0]) < 2e-2
    out.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in ours.parameters())


@pytest.mark.skipif(not (BF16 or packed.BF16), reason="needs bf16 products: AVX512-BF16 or MKL")
@pytest.mark.parametrize(("inp", "hidden", "batch"), [(8, 32, 3), (7, 13, 5), (33, 70, 9)])
def test_compiled_bf16_close_to_reference_bf16(inp, hidden, batch):
    """Outputs and every gradient, odd sizes included (the bf16 pairs' padding)."""
    torch.manual_seed(2)
    m = longshort.LSTM(inp, hidden).to(torch.bfloat16)
    x = torch.randn(20, batch, inp).bfloat16().requires_grad_()
    runs = []
    for engine in ("compiled", "reference"):
        with longshort.engine.use_cpu_engine(engine):
            out, (h, c) = m(x)
            loss = out.float().sum() + c.float().sum()
            runs.append((out, h, c, *torch.autograd.grad(loss, [x, *m.parameters()])))
    for fast, slow in zip(*runs, strict=True):
        assert _rel(fast, slow) < 2e-2
