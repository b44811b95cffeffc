"""Where a training step of the compiled engine spends its time, phase by phase, against the
roofline: each phase's GFLOP/s beside the machine's single-thread and all-thread GEMM peaks.

Phases of one layer's training step: input projection (one (T*B, I) @ (I, 4H) product), forward
loop (per step: the recurrent product, the gate math and the cell update), backward loop (per
step: the gate derivatives and dL/dh_{t-1} = dz_t U), and the input and weight gradients (three
products over all T*B rows). The loops run the batch rows split across the threads. Last, the
inference call (no graph): where it takes the per-step input product, one loop whose product
runs on [x_t | h_{t-1}], counted as 2 T B 4H (I + H) flops.

    python benchmarks/phases.py [--reps 10] [--shapes 100,32,32,128 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import longshort
from longshort.engine.cpu import blas, compiled, host
from longshort.engine.types import LSTMWeights

SHAPES = [
    (100, 32, 32, 128),
    (100, 64, 256, 256),
    (500, 16, 16, 64),
    (50, 128, 512, 512),
    (35, 20, 200, 200),
    (200, 4, 64, 256),
]


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def gemm_peaks(reps: int) -> tuple[float, float]:
    """GFLOP/s of a 1024^3 product through the engine's BLAS on one thread and on all."""
    a, b, c = (np.random.rand(1024, 1024).astype(np.float32) for _ in range(3))
    flops = 2 * 1024**3 / 1e9
    with blas.threads(1):
        one = flops / median_ms(lambda: blas.gemm_wt(a, b, c, 0.0), reps) * 1e3
    return one, flops / median_ms(lambda: blas.gemm_wt(a, b, c, 0.0), reps) * 1e3


def phases(shape: tuple[int, int, int, int], reps: int) -> dict[str, tuple[float, float]]:
    """{phase: (ms, GFLOP)}."""
    steps, batch, inp, hid = shape
    m = longshort.LSTM(inp, hid)
    w = LSTMWeights(*(p.detach() for p in m.layer_weights(0, 0)[:4]))
    x = torch.randn(steps, batch, inp)
    h0 = c0 = torch.zeros(batch, hid)
    saved = compiled.lstm_forward(x, h0, c0, w, None)
    d_out = torch.ones(steps, batch, hid)
    g = 4 * hid
    rows_flops = 2 * steps * batch * g
    # the product alone, into a buffer of its own: a standalone project_all's fresh 4H x T x B
    # output page-faulted at every call (1,100 faults, 6 ms at (100, 32, 32, 128) on a Zen 3),
    # which the forward's own allocation, reused call after call, does not (2 faults a call)
    zn, xn = np.empty((steps * batch, g), np.float32), host.as_matrix(x.numpy())
    t_proj = median_ms(lambda: host.by_rows(blas.gemm_wt, xn, w.w_ih.numpy(), zn, 0.0), reps)
    t_fwd = median_ms(lambda: compiled.lstm_forward(x, h0, c0, w, None), reps)
    t_bwd = median_ms(lambda: compiled.lstm_backward(d_out, h0, c0, x, h0, w, None, saved), reps)
    dz = torch.randn_like(saved.gates)
    t_grads = median_ms(lambda: host.input_and_weight_grads(dz, x, h0, saved.out, w.w_ih), reps)
    t_infer = median_ms(lambda: compiled.lstm_infer(x, h0, c0, w, None), reps)
    return {
        "input projection": (t_proj, rows_flops * inp / 1e9),
        "forward loop": (t_fwd - t_proj, rows_flops * hid / 1e9),
        "backward loop": (t_bwd - t_grads, rows_flops * hid / 1e9),
        "input and weight gradients": (t_grads, rows_flops * (2 * inp + hid) / 1e9),
        "inference (no graph), whole call": (t_infer, rows_flops * (inp + hid) / 1e9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--shapes", nargs="*", default=None, help="T,B,I,H entries")
    args = parser.parse_args()
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    one, full = gemm_peaks(args.reps)
    print(
        f"BLAS {blas.PROVIDER}, {torch.get_num_threads()} threads; GEMM 1024^3: {one:.0f} "
        f"GFLOP/s on one thread, {full:.0f} on all"
    )
    print("| T, B, I, H | phase | ms | GFLOP/s | of the all-thread peak |")
    print("|---|---|---|---|---|")
    for shape in shapes:
        for name, (ms, gflop) in phases(shape, args.reps).items():
            rate = gflop / ms * 1e3
            label = ", ".join(map(str, shape))
            print(f"| {label} | {name} | {ms:.2f} | {rate:.0f} | {rate / full:.0%} |", flush=True)


if __name__ == "__main__":
    main()
