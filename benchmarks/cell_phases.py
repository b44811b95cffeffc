"""Where one call of longshort.LSTMCell spends its time, phase by phase, beside torch's.

Each row times one layer of the call on its own (the minimum over repetitions of many calls,
microseconds): the module under no_grad, nn.Module.__call__ itself (an empty module), the
cell's argument checks, the choice of engine, the engine function (host code and kernel), the
host code's compiled step alone, autograd.Function.apply's own cost (an empty Function of the
step's 8 inputs), and the module with a graph recorded, then forward and backward.

    python benchmarks/cell_phases.py [--shapes 1,32,64 16,64,128] [--dtype float32]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import torch
from torch import nn

import longshort
from longshort.engine import dispatch
from longshort.engine.cpu import address, host
from longshort.engine.cpu import lstm as cpu_lstm
from longshort.engine.types import LSTMWeights


def best_us(fn: Callable[[], object], number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


class _Empty(torch.autograd.Function):
    """autograd.Function.apply's own cost for the step's inputs and outputs."""

    @staticmethod
    def forward(ctx, step, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return x.new_empty(h0.shape), x.new_empty(h0.shape)

    @staticmethod
    def backward(ctx, dh, dc):
        return (None,) * 8


def phases(batch: int, inp: int, hid: int, dtype: torch.dtype) -> dict[str, float]:
    torch.manual_seed(0)
    theirs, ours = nn.LSTMCell(inp, hid, dtype=dtype), longshort.LSTMCell(inp, hid, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(batch, inp, dtype=dtype)
    hx = (torch.randn(batch, hid, dtype=dtype), torch.randn(batch, hid, dtype=dtype))
    w = LSTMWeights(ours.weight_ih, ours.weight_hh, ours.bias_ih, ours.bias_hh)
    n = max(200, 20000 // max(1, batch * hid // 64))
    empty = nn.Identity()
    res = {}
    with torch.no_grad():
        res["torch.nn.LSTMCell, no_grad"] = best_us(lambda: theirs(x, hx), n)
        res["longshort.LSTMCell, no_grad"] = best_us(lambda: ours(x, hx), n)
        res["  nn.Module.__call__ (an empty module)"] = best_us(lambda: empty(x), n)
        res["  checks (_check)"] = best_us(lambda: ours._check(x, hx, 2), n)
        res["  engine choice (dispatch.step_engine)"] = best_us(
            lambda: dispatch.step_engine(x, w), n
        )
        res["  engine.lstm_cell"] = best_us(lambda: longshort.engine.lstm_cell(x, *hx, *w[:4]), n)
        res["    host code and kernel (lstm_step)"] = best_us(
            lambda: cpu_lstm.lstm_step(x, *hx, w), n
        )
        res["    the compiled step alone"] = _kernel_alone(x, hx, w, n)
    res["autograd.Function.apply, empty"] = best_us(
        lambda: _Empty.apply(None, x, *hx, *ours.parameters()), n
    )
    res["torch.nn.LSTMCell, graph"] = best_us(lambda: theirs(x, hx), n)
    res["longshort.LSTMCell, graph"] = best_us(lambda: ours(x, hx), n)
    res["torch.nn.LSTMCell, forward+backward"] = best_us(
        lambda: theirs(x, hx)[0].sum().backward(), n // 4
    )
    res["longshort.LSTMCell, forward+backward"] = best_us(
        lambda: ours(x, hx)[0].sum().backward(), n // 4
    )
    return res


def _kernel_alone(x, hx, w: LSTMWeights, n: int) -> float:
    """step_forward_at on prepared addresses (the products in it up to 4 rows; above, the
    gates only, as after torch's GEMM)."""
    (batch, hidden), n_in = hx[0].shape, x.shape[1]
    z, h, c = x.new_empty(batch, 4 * hidden), x.new_empty(batch, hidden), x.new_empty(batch, hidden)
    like = address.LIKE[x.dtype]
    weights = (w.w_ih.data_ptr(), w.w_hh.data_ptr())
    if host.torch_products(batch):
        weights = (address.NONE, address.NONE)
    args = (
        x.data_ptr(), hx[0].data_ptr(), hx[1].data_ptr(), *weights, w.b_ih.data_ptr(),
        w.b_hh.data_ptr(), h.data_ptr(), c.data_ptr(), z.data_ptr(), like,
        (batch, n_in, hidden), host.coefficients(hidden, like.dtype),
    )  # fmt: skip
    return best_us(lambda: cpu_lstm.step_forward_at(*args), n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["1,32,64", "16,64,128"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}")
    print("| phase | " + " | ".join(f"B, I, H = {', '.join(map(str, s))}" for s in shapes) + " |")
    print("|---|" + "---|" * len(shapes))
    results = [phases(*s, dtype) for s in shapes]
    for name in results[0]:
        cells = " | ".join(f"{r[name]:.1f} us" for r in results)
        print(f"| {name} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
