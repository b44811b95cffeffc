"""Memory: a training step on a very long sequence, and resident memory under a long run.

1. Peak resident memory (VmHWM) of one training step, forward + backward, at T = 100,000,
   B = 8, I = 8, H = 128: longshort with ``recompute_segment`` (S = 316 ~ sqrt(T)), longshort
   keeping everything, and torch.nn.LSTM. Each case runs in its own process.
2. Resident memory over 2,000 training steps of a small model: growth after warm-up.

    python benchmarks/memory.py [--steps 100000] [--train-steps 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def rss_mib(key: str = "VmRSS:") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_step(case: str, steps: int) -> None:
    import torch
    from torch import nn

    import longshort

    torch.manual_seed(0)
    batch, inputs, hidden = 8, 8, 128
    if case == "nn.LSTM":
        model = nn.LSTM(inputs, hidden)
    else:
        seg = int(steps**0.5) if case == "longshort recompute" else None
        model = longshort.LSTM(inputs, hidden, recompute_segment=seg)
    x = torch.randn(steps, batch, inputs)
    base = rss_mib()
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    out, _ = model(x)
    out[-1].sum().backward()
    seconds = time.perf_counter() - start
    print(f"{rss_mib('VmHWM:') - base:.0f} {seconds:.1f}")


def long_run(train_steps: int) -> None:
    import torch

    from longshort.tasks import make_task
    from longshort.train import model_for_task

    task = make_task("adding", 50)
    model = model_for_task(task, "lstm", 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    samples = {}
    for step in range(1, train_steps + 1):
        b = task.batch(32, gen)
        loss = task.loss(model(b.x), b.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in (train_steps // 10, train_steps // 2, train_steps):
            samples[step] = rss_mib()
    first, last = samples[train_steps // 10], samples[train_steps]
    print(
        f"| resident MiB at step {train_steps // 10} / {train_steps // 2} / {train_steps} "
        f"| {' / '.join(f'{v:.0f}' for v in samples.values())} | growth after warm-up "
        f"{(last - first) / first:+.1%} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        one_step(args.case, args.steps)
        return
    print(f"| one training step, T = {args.steps}, B = 8, I = 8, H = 128 | peak MiB | seconds |")
    print("|---|---|---|")
    for case in ("longshort recompute", "longshort", "nn.LSTM"):
        out = subprocess.run(
            [sys.executable, __file__, "--case", case, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak, seconds = out.stdout.split()[-2:]
        print(f"| {case} | {peak} | {seconds} |", flush=True)
    print()
    long_run(args.train_steps)


if __name__ == "__main__":
    main()
