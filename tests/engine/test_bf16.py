"""bfloat16 on CPU: within 2e-2 of float32 torch.nn on whichever engine runs it (the compiled
one's bf16 products with float32 state need AVX512-BF16 or MKL; elsewhere the reference engine
runs bf16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import longshort
from longshort.engine import dispatch
from longshort.engine.cpu import packed
from longshort.engine.cpu.blas import BF16
from longshort.engine.types import LSTMWeights


def _rel(a, b):
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_bf16_where_floats_would_split_the_units(batch, monkeypatch):
    """At most 2 rows a thread with U filling L2 (made small here) sends float layers to the
    unit split, whose kernel takes float32 and float64 only: bf16 (with bf16 products, on
    AVX512-BF16) failed there with "unsupported ScalarType BFloat16". It runs the rows."""
    from longshort.engine.cpu import threads

    monkeypatch.delenv("LONGSHORT_LAYOUT", raising=False)
    monkeypatch.setattr(threads, "L2_BYTES", 1)
    torch.manual_seed(batch)
    theirs = nn.LSTM(8, 64)
    ours = longshort.LSTM.from_torch(theirs).to(torch.bfloat16)
    x = torch.randn(128, batch, 8)  # enough flops for a split at B = 1
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = ours(x.bfloat16())[0]
        got.float().sum().backward()
        with torch.no_grad():
            served = ours(x.bfloat16())[0]
    finally:
        torch.set_num_threads(old)
    want = theirs(x)[0]
    want.sum().backward()
    assert _rel(got, want) < 2e-2 and _rel(served, want) < 2e-2
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert _rel(p.grad, q.grad) < 2e-2


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


def _rounded_reference(m: longshort.LSTM) -> nn.LSTM:
    """torch.nn's float32 LSTM with m's bf16 weights (exactly representable in float32)."""
    ref = m.float().to_torch()
    m.to(torch.bfloat16)
    return ref


def test_bf16_without_bf16_products_runs_compiled_in_float32(monkeypatch):
    """On CPUs without AVX512-BF16 (and without MKL) bfloat16 layers keep bf16 storage and
    compute in float32 on the compiled engine: the outputs and gradients are torch.nn's
    float32 ones on the same bf16 values, rounded once to bf16."""
    from longshort.engine import dispatch
    from longshort.engine.cpu import compiled, host

    monkeypatch.setattr(host, "BF16_PRODUCTS", False)
    torch.manual_seed(3)
    m = longshort.LSTM(7, 24, num_layers=2).to(torch.bfloat16)
    ref = _rounded_reference(m)
    x = torch.randn(15, 5, 7).bfloat16()
    assert dispatch.lstm_engine(x, LSTMWeights(*m.layer_weights(0, 0))) is compiled
    out, (h, c) = m(x)
    want, (hw, cw) = ref(x.float())
    assert out.dtype == h.dtype == c.dtype == torch.bfloat16
    for got, exp in ((out, want), (h, hw), (c, cw)):
        assert _rel(got, exp) < 1e-2  # one rounding to bf16 between the layers and at the end
    (out.float() * want.detach()).sum().backward()
    (want * want.detach()).sum().backward()
    for p, q in zip(m.parameters(), ref.parameters(), strict=True):
        assert p.grad.dtype == torch.bfloat16
        assert _rel(p.grad, q.grad) < 2e-2


_NO_BF16_CPU = """
import torch, longshort
from longshort.engine import dispatch
from longshort.engine.cpu import compiled, host
from longshort.engine.types import LSTMWeights
assert not host.BF16_PRODUCTS
torch.manual_seed(0)
m = longshort.LSTM(8, 32).to(torch.bfloat16)
x = torch.randn(20, 4, 8).bfloat16()
assert dispatch.lstm_engine(x, LSTMWeights(*m.layer_weights(0, 0))) is compiled
out, _ = m(x)
out.float().sum().backward()
ref = m.float().to_torch()
want = ref(x.float())[0]
print(float((out.float() - want).abs().max() / want.abs().max()))
"""


def test_an_avx2_build_runs_bf16_on_the_compiled_engine():
    """An AVX2 build (numba compiled for Haswell: no AVX512-BF16) in a fresh process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell"}
    env["NUMBA_CPU_FEATURES"] = "+avx,+avx2,+fma,+sse4.2"
    run = subprocess.run(
        [sys.executable, "-c", _NO_BF16_CPU], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-2


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls"),
    [
        (longshort.LSTMCell, nn.LSTMCell),
        (longshort.GRUCell, nn.GRUCell),
        (longshort.RNNCell, nn.RNNCell),
    ],
)
@pytest.mark.parametrize("batch", [1, 7])  # the products inside the call, or torch's GEMM
def test_bf16_cells_close_to_float32_torch(ours_cls, theirs_cls, batch):
    """A bf16 cell's step (the float32 one-call step on float32 copies, rounded back) keeps
    bf16 outputs and gradients within bf16's reach of torch.nn's float32 cell."""
    torch.manual_seed(1)
    theirs = theirs_cls(8, 16)
    ours = ours_cls(8, 16).to(torch.bfloat16)
    ours.load_state_dict({k: v.bfloat16() for k, v in theirs.state_dict().items()})
    x, h = torch.randn(batch, 8), torch.randn(batch, 16)
    assert dispatch.widened_step(x.bfloat16())
    hx = (h, torch.randn(batch, 16)) if theirs_cls is nn.LSTMCell else h
    hx_bf16 = tuple(s.bfloat16() for s in hx) if isinstance(hx, tuple) else hx.bfloat16()
    got, want = ours(x.bfloat16(), hx_bf16), theirs(x, hx)
    got, want = (got[0], want[0]) if isinstance(got, tuple) else (got, want)
    assert got.dtype == torch.bfloat16
    assert _rel(got, want) < 2e-2
    got.float().sum().backward()
    want.sum().backward()
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert p.grad.dtype == torch.bfloat16
        assert _rel(p.grad, q.grad) < 3e-2
