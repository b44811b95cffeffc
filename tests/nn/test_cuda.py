"""CUDA checks, skipped without a GPU: run by ``benchmarks/gpu.sh`` on a machine that has one.

Plain runs on CUDA go to cuDNN (PyTorch's fused op) and must match torch.nn; everything cuDNN
cannot do (traces, ``lengths=``, variants, gradient norms) runs longshort's reference engine on
the device and must match the same computation on the CPU and torch.nn.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

import longshort
from longshort import engine
from longshort.engine import dispatch
from longshort.inspect import trace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

T, B, I, H = 9, 4, 5, 6
CUDA = torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(longshort.LSTM, torch.nn.LSTM), (longshort.GRU, torch.nn.GRU), (longshort.RNN, torch.nn.RNN)],
)
def test_parity_with_torch_on_the_device(ours, theirs, native):
    torch.manual_seed(0)
    ref = theirs(I, H, num_layers=2, bidirectional=True).to(CUDA)
    model = ours.from_torch(ref)
    x = torch.randn(T, B, I, device=CUDA, requires_grad=True)
    with dispatch.use_native(("cuda",) if native else ()):
        out, _ = model(x)
    want, _ = ref(x)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    g = torch.autograd.grad(out.sum(), [x, model.weight_hh_l0])
    g_want = torch.autograd.grad(want.sum(), [x, ref.weight_hh_l0])
    for a, b in zip(g, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradcheck_float64_on_the_device():
    g = torch.Generator(device=CUDA).manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, device=CUDA, dtype=torch.float64) * 0.7

    args = [rnd(5, 3, 2), rnd(3, 4), rnd(3, 4), rnd(16, 2), rnd(16, 4), rnd(16), rnd(16)]
    args = tuple(a.requires_grad_() for a in args)
    lengths = torch.tensor([5, 2, 4], device=CUDA)

    def f(*a):
        res = engine.lstm_layer(*a, lengths=lengths)
        return res.out, res.h_n, res.c_n

    assert gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_lengths_packed_traces_and_variants_match_the_cpu():
    torch.manual_seed(0)
    for kw in ({}, {"peephole": True, "layer_norm": True, "coupled_gates": True}):
        cpu = longshort.LSTM(I, H, **kw).eval()
        gpu = longshort.LSTM(I, H, **kw).to(CUDA).eval()
        gpu.load_state_dict(cpu.state_dict())
        x = torch.randn(T, B, I)
        lengths = torch.tensor([9, 3, 7, 1])
        want, _ = cpu(x, lengths=lengths)
        got, _ = gpu(x.to(CUDA), lengths=lengths.to(CUDA))
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = gpu(packed.to(CUDA))
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
        torch.testing.assert_close(padded.cpu(), want, rtol=1e-4, atol=1e-5)
        tr_cpu, tr_gpu = trace(cpu, x)[0], trace(gpu, x.to(CUDA))[0]
        torch.testing.assert_close(tr_gpu.f.cpu(), tr_cpu.f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_on_the_device(dtype):
    torch.manual_seed(0)
    model = longshort.LSTM(I, H).to(CUDA)
    x = torch.randn(T, B, I, device=CUDA)
    want, _ = model(x)
    with torch.autocast("cuda", dtype=dtype):
        got, _ = model(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=5e-2, atol=5e-2)
