"""Speed and memory of longshort against torch.nn.LSTM (oneDNN) and an nn.LSTMCell loop.

Prints, per shape (T, B, I, H), medians of --reps timed runs after warm-up, all in the same run:
training step (forward + backward of all gradients) and inference (no_grad forward), the ratios
longshort / nn.LSTM and LSTMCell loop / longshort, GFLOP/s with the fraction of an fp32 GEMM
peak measured in this run, peak memory of a training step, the trace overhead
(return_trace=True against a plain forward), and longshort in bfloat16: its training step, the
speed-up over longshort fp32, and its output's error relative to fp32 nn.LSTM.

    python benchmarks/speed.py [--reps 7] [--shapes 100,32,32,128 ...]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import longshort

SHAPES = [
    (100, 32, 32, 128),
    (100, 64, 256, 256),
    (500, 16, 16, 64),
    (50, 128, 512, 512),
    (1000, 1, 8, 32),
]


def median_time(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_peak(reps: int) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return 2 * 1024**3 / median_time(lambda: a @ b, reps) / 1e9


class CellLoop(nn.Module):
    """The hand-written loop people use for custom LSTMs."""

    def __init__(self, i: int, h: int):
        super().__init__()
        self.cell = nn.LSTMCell(i, h)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], self.cell.hidden_size)
        outs = []
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            outs.append(h)
        return torch.stack(outs), (h, c)


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    params = list(model.parameters())

    def step():
        for p in params:
            p.grad = None
        out, _ = model(x)
        out.sum().backward()

    return step


def infer(model: nn.Module, x: torch.Tensor, **kw) -> Callable[[], None]:
    def run():
        with torch.no_grad():
            model(x, **kw)

    return run


def peak_memory_mib(fn: Callable[[], None]) -> float:
    """Peak resident memory during fn, above the resident memory before it (Linux)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return float("nan")

    def read(key: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
        return 0

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
    before = read("VmRSS:")
    fn()
    return (read("VmHWM:") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--shapes", nargs="*", default=None, help="T,B,I,H entries")
    args = parser.parse_args()
    shapes = [tuple(map(int, s.split(","))) for s in args.shapes] if args.shapes else SHAPES
    torch.manual_seed(0)
    peak = gemm_peak(args.reps)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, fp32 GEMM peak {peak:.0f} GFLOP/s (1024^3)"
    )
    start = time.perf_counter()
    ours = longshort.LSTM(8, 8)
    ours(torch.randn(2, 1, 8))[0].sum().backward()
    print(
        f"first call of longshort (compile or load cached kernels): "
        f"{time.perf_counter() - start:.2f} s"
    )
    header = (
        "| T, B, I, H | train: longshort | nn.LSTM | ratio | cell loop | loop/longshort "
        "| infer: longshort | nn.LSTM | ratio | train GFLOP/s (of peak) | trace overhead "
        "| peak MiB longshort / nn.LSTM | bf16 train | fp32/bf16 | bf16 rel. error |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for steps, batch, inp, hid in shapes:
        x = torch.randn(steps, batch, inp)
        theirs = nn.LSTM(inp, hid)
        ours = longshort.LSTM.from_torch(theirs)
        ours_bf16 = longshort.LSTM.from_torch(theirs).to(torch.bfloat16)
        x_bf16 = x.bfloat16()
        loop = CellLoop(inp, hid)
        t_ours, t_theirs, t_bf16 = [], [], []
        i_ours, i_theirs, i_trace = [], [], []
        for _ in range(3):  # interleave to share the machine's drift
            t_ours.append(median_time(train_step(ours, x), args.reps))
            t_theirs.append(median_time(train_step(theirs, x), args.reps))
            t_bf16.append(median_time(train_step(ours_bf16, x_bf16), args.reps))
            i_ours.append(median_time(infer(ours, x), args.reps))
            i_theirs.append(median_time(infer(theirs, x), args.reps))
            i_trace.append(median_time(infer(ours, x, return_trace=True), args.reps))
        tr_o, tr_t, tr_b = min(t_ours), min(t_theirs), min(t_bf16)
        with torch.no_grad():
            exact = theirs(x)[0]
            bf16_err = float((ours_bf16(x_bf16)[0].float() - exact).abs().max() / exact.abs().max())
        in_o, in_t, in_tr = min(i_ours), min(i_theirs), min(i_trace)
        t_loop = median_time(train_step(loop, x), max(3, args.reps // 2), warmup=1)
        flops = 24 * steps * batch * hid * (inp + hid)
        mem_o = peak_memory_mib(train_step(ours, x))
        mem_t = peak_memory_mib(train_step(theirs, x))
        print(
            f"| {steps}, {batch}, {inp}, {hid} | {tr_o * 1e3:.1f} ms | {tr_t * 1e3:.1f} ms "
            f"| {tr_o / tr_t:.2f}x | {t_loop * 1e3:.1f} ms | {t_loop / tr_o:.1f}x "
            f"| {in_o * 1e3:.2f} ms | {in_t * 1e3:.2f} ms | {in_o / in_t:.2f}x "
            f"| {flops / tr_o / 1e9:.0f} ({flops / tr_o / 1e9 / peak:.0%}) "
            f"| {in_tr / in_o:.2f}x | {mem_o:.0f} / {mem_t:.0f} | {tr_b * 1e3:.1f} ms "
            f"| {tr_o / tr_b:.2f}x | {bf16_err:.1e} |",
            flush=True,
        )
    print(
        "ratio = longshort time / nn.LSTM time (below 1 is faster); loop/longshort = how many "
        "times faster longshort is than the LSTMCell loop; each time is the best of 3 "
        f"interleaved medians of {args.reps} runs."
    )


if __name__ == "__main__":
    main()
