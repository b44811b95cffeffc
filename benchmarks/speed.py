"""Speed of longshort against the peers a user would pick, in one interleaved run.

Layers, per shape: a training step (forward + backward of all gradients, training mode) and
inference (no_grad forward of an eval-mode copy: no dropout between layers, as a user serves
a model) of longshort.LSTM against torch.nn.LSTM (oneDNN), inference against ONNX
Runtime's LSTM operator (nn.LSTM exported with the same weights, as many intra-op threads as
torch), a training step of the nn.LSTMCell loop people write for custom cells, longshort in
bfloat16, and GFLOP/s against an fp32 GEMM peak measured in the same run.

Variants (--variants): each of the LSTM's variants, and all at once, against the plain
longshort.LSTM (training step and inference, same run) and against the same variant written as
a plain-torch loop with autograd (the LSTMCell-style code people write for it).

CUDA (--device cuda): per shape and dtype, longshort's plain LSTM (cuDNN through PyTorch's
fused op), its own engine (traces on: the reference engine on the device) and the LSTMCell loop,
each against nn.LSTM (cuDNN), training step and inference, synchronised timings.

Cells (--cells): one call of longshort.LSTMCell / GRUCell / RNNCell against torch.nn's, forward
and forward plus backward, float32 and float64.

    python benchmarks/speed.py [--reps 7] [--shapes 100,32,32,128 ...] [--threads N] [--load]
                               [--cells] [--gru] [--variants] [--no-layers]
                               [--device cuda]

--threads sets torch's (and so longshort's) thread count; --load runs a busy process beside
the benchmark for its whole duration. Each time is the best of 3 interleaved medians of --reps
runs after warm-up; ratios come from the same run.

An AVX2 build on an AVX-512 machine caps every library that picks its kernels from the CPU:

    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=+avx,+avx2,+fma,+sse4.2 \
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
    OPENBLAS_CORETYPE=Haswell MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/speed.py

(numba keeps the host's features when NUMBA_CPU_NAME is set alone.) ONNX Runtime has no such
setting: its column runs the CPU's own kernels. The ISA line says what each side ran.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import multiprocessing
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn

import longshort


class Shape(NamedTuple):
    steps: int
    batch: int
    inp: int
    hidden: int
    layers: int = 1
    dropout: float = 0.0
    hx: bool = False  # pass (h_0, c_0), as a language model carrying its state does

    def label(self) -> str:
        s = f"{self.steps}, {self.batch}, {self.inp}, {self.hidden}"
        return s + (f", L{self.layers} p{self.dropout} hx" if self.layers > 1 else "")


SHAPES = [
    Shape(100, 32, 32, 128),
    Shape(100, 64, 256, 256),
    Shape(500, 16, 16, 64),
    Shape(50, 128, 512, 512),
    Shape(1000, 1, 8, 32),
    Shape(35, 20, 200, 200, layers=2, dropout=0.2, hx=True),  # the word-level LM
    Shape(200, 4, 64, 256),  # small-batch inference
]
CELL_SHAPES = [(1, 32, 64), (16, 64, 128), (97, 51, 51), (64, 128, 256)]


def median_time(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], reps: int, rounds: int = 3) -> dict:
    """Best of `rounds` medians for each function, the functions taking turns."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for key, fn in fns.items():
            t = median_time(fn, reps)
            best[key] = min(best.get(key, t), t)
    return best


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


def train_step(model: nn.Module, x: torch.Tensor, hx=None) -> Callable[[], None]:
    params = list(model.parameters())
    args = (x,) if hx is None else (x, hx)

    def step():
        for p in params:
            p.grad = None
        out, _ = model(*args)
        out.sum().backward()

    return step


def evaluated(model: nn.Module) -> nn.Module:
    """A copy in eval mode, as a user runs inference (no dropout between layers); the model
    itself keeps training mode for the training columns."""
    return copy.deepcopy(model).eval()


def infer(model: nn.Module, x: torch.Tensor, hx=None, **kw) -> Callable[[], None]:
    args = (x,) if hx is None else (x, hx)

    def run():
        with torch.no_grad():
            model(*args, **kw)

    return run


def onnx_runner(model: nn.LSTM, x: torch.Tensor, hx) -> Callable[[], None] | None:
    """ONNX Runtime on nn.LSTM exported with its weights; None if onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    model = evaluated(model)
    args = (x,) if hx is None else (x, hx)
    buf = io.BytesIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(
            model,
            args,
            buf,
            dynamo=False,
            input_names=["x", "h0", "c0"][: 1 + 2 * (hx is not None)],
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy()}
    if hx is not None:
        feeds |= {"h0": hx[0].numpy(), "c0": hx[1].numpy()}
    return lambda: session.run(None, feeds)


def first_call_seconds() -> float:
    """A first training step of a small LSTM in a new process, imports excluded."""
    code = (
        "import time, torch, longshort\n"
        "t = time.perf_counter()\n"
        "m = longshort.LSTM(8, 8)\n"
        "m(torch.randn(2, 1, 8))[0].sum().backward()\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _spin(stop) -> None:  # pragma: no cover - runs in the load process
    x = 0
    while not stop.is_set():
        x += 1


@contextlib.contextmanager
def busy_process(on: bool) -> Iterator[None]:
    """A second process keeping one core busy for the duration (--load)."""
    if not on:
        yield
        return
    stop = multiprocessing.Event()
    proc = multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
    proc.start()
    try:
        yield
    finally:
        stop.set()
        proc.join()


def layer_row(shape: Shape, reps: int, peak: float) -> str:
    torch.manual_seed(0)
    steps, batch, inp, hid, layers = shape[:5]
    x = torch.randn(steps, batch, inp)
    theirs = nn.LSTM(inp, hid, layers, dropout=shape.dropout)
    ours = longshort.LSTM.from_torch(theirs)
    ours_bf16 = longshort.LSTM.from_torch(theirs).to(torch.bfloat16)
    hx = (torch.randn(layers, batch, hid), torch.randn(layers, batch, hid)) if shape.hx else None
    hx16 = None if hx is None else tuple(h.bfloat16() for h in hx)
    fns = {
        "train": train_step(ours, x, hx),
        "train_torch": train_step(theirs, x, hx),
        "train_bf16": train_step(ours_bf16, x.bfloat16(), hx16),
        "infer": infer(evaluated(ours), x, hx),
        "infer_torch": infer(evaluated(theirs), x, hx),
    }
    ort = onnx_runner(theirs, x, hx)
    if ort is not None:
        fns["infer_ort"] = ort
    t = interleaved(fns, reps)
    loop = CellLoop(inp, hid) if layers == 1 else None
    t_loop = median_time(train_step(loop, x), max(3, reps // 2), warmup=1) if loop else None
    flops = 24 * steps * batch * hid * (inp + hid) * layers
    ort_cols = (
        f"{t['infer_ort'] * 1e3:.2f} ms | {t['infer'] / t['infer_ort']:.2f}x"
        if "infer_ort" in t
        else "- | -"
    )
    loop_cols = f"{t_loop * 1e3:.1f} ms | {t_loop / t['train']:.1f}x" if t_loop else "- | -"
    return (
        f"| {shape.label()} | {t['train'] * 1e3:.1f} ms | {t['train_torch'] * 1e3:.1f} ms "
        f"| {t['train'] / t['train_torch']:.2f}x "
        f"| {t['infer'] * 1e3:.2f} ms | {t['infer_torch'] * 1e3:.2f} ms "
        f"| {t['infer'] / t['infer_torch']:.2f}x | {ort_cols} | {loop_cols} "
        f"| {flops / t['train'] / 1e9:.0f} ({flops / t['train'] / 1e9 / peak:.0%}) "
        f"| {t['train_bf16'] * 1e3:.1f} ms | {t['train'] / t['train_bf16']:.2f}x |"
    )


def gru_row(shape: Shape, reps: int) -> str:
    """longshort.GRU against torch.nn.GRU: a training step and inference."""
    torch.manual_seed(0)
    steps, batch, inp, hid, layers = shape[:5]
    x = torch.randn(steps, batch, inp)
    theirs = nn.GRU(inp, hid, layers, dropout=shape.dropout)
    ours = longshort.GRU.from_torch(theirs)
    hx = torch.randn(layers, batch, hid) if shape.hx else None
    t = interleaved(
        {
            "train": train_step(ours, x, hx),
            "train_torch": train_step(theirs, x, hx),
            "infer": infer(evaluated(ours), x, hx),
            "infer_torch": infer(evaluated(theirs), x, hx),
        },
        reps,
    )
    return (
        f"| {shape.label()} | {t['train'] * 1e3:.1f} ms | {t['train_torch'] * 1e3:.1f} ms "
        f"| {t['train'] / t['train_torch']:.2f}x | {t['infer'] * 1e3:.2f} ms "
        f"| {t['infer_torch'] * 1e3:.2f} ms | {t['infer'] / t['infer_torch']:.2f}x |"
    )


def gru_table(shapes: list[Shape], reps: int) -> None:
    print(
        "\n| T, B, I, H (GRU) | train: longshort | nn.GRU | ratio | infer: longshort "
        "| nn.GRU | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for shape in shapes:
        print(gru_row(shape, reps), flush=True)


def layer_table(shapes: list[Shape], reps: int, peak: float) -> None:
    header = (
        "| T, B, I, H | train: longshort | nn.LSTM | ratio | infer: longshort | nn.LSTM "
        "| ratio | ONNX Runtime | ratio to ORT | cell loop train | loop/longshort "
        "| train GFLOP/s (of peak) | bf16 train | fp32/bf16 |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for shape in shapes:
        print(layer_row(shape, reps, peak), flush=True)


VARIANTS = {
    "no forget gate": {"forget_gate": False},
    "peephole": {"peephole": True},
    "coupled gates": {"coupled_gates": True},
    "layer norm": {"layer_norm": True},
    "zoneout 0.1": {"zoneout": 0.1},
    "recurrent dropout 0.25": {"recurrent_dropout": 0.25},
    "all (coupled)": {
        "coupled_gates": True,
        "peephole": True,
        "layer_norm": True,
        "zoneout": 0.1,
        "recurrent_dropout": 0.25,
    },
}
VARIANT_SHAPES = [Shape(100, 32, 32, 128), Shape(100, 64, 256, 256), Shape(500, 16, 16, 64)]


class VariantLoop(nn.Module):
    """A variant LSTM as people write it without longshort: a loop of plain torch ops over the
    steps, autograd for the backward, the parameters copied from a longshort.LSTM."""

    def __init__(self, model: longshort.LSTM):
        super().__init__()
        self.p = nn.ParameterDict({k: nn.Parameter(v.detach().clone()) for k, v in
                                   model.named_parameters()})  # fmt: skip
        self.kw, self.h = model.options, model.hidden_size

    def forward(self, x):
        p, v, hid = self.p, self.kw.variant, self.h
        names = ["i", "f", "g", "o"] if v.blocks == 4 else (["f"] if v.coupled else ["i"])
        names = names if v.blocks == 4 else [*names, "g", "o"]
        peep = dict(zip([n for n in names if n != "g"], p["weight_ch_l0"].split(hid),
                        strict=True)) if v.peephole else {}  # fmt: skip
        ln = lambda a, w, b=None: nn.functional.layer_norm(a, a.shape[-1:], w, b)  # noqa: E731
        (zc, zh), rd = self.kw.zoneout, self.kw.recurrent_dropout
        batch = x.shape[1]
        h = c = x.new_zeros(batch, hid)
        keep = torch.bernoulli(x.new_full((batch, hid), 1 - rd)) / (1 - rd) if rd else None
        wx = x @ p["weight_ih_l0"].T
        if v.layer_norm:
            wx = ln(wx, p["weight_ln_ih_l0"])
        wx = wx + p["bias_ih_l0"] + p["bias_hh_l0"]
        outs = []
        for t in range(x.shape[0]):
            r = (h if keep is None else h * keep) @ p["weight_hh_l0"].T
            a = wx[t] + (ln(r, p["weight_ln_hh_l0"]) if v.layer_norm else r)
            blk = dict(zip(names, a.split(hid, dim=1), strict=True))
            f = torch.sigmoid(blk["f"] + peep.get("f", 0) * c) if "f" in blk else 1.0
            i = torch.sigmoid(blk["i"] + peep.get("i", 0) * c) if "i" in blk else 1 - f
            c_new = f * c + i * torch.tanh(blk["g"])
            o = torch.sigmoid(blk["o"] + peep.get("o", 0) * c_new)
            n = ln(c_new, p["weight_ln_c_l0"], p["bias_ln_c_l0"]) if v.layer_norm else c_new
            h_new = o * torch.tanh(n)
            if zc and self.training:
                d = torch.bernoulli(torch.full_like(c, zc))
                c_new = d * c + (1 - d) * c_new
            if zh and self.training:
                d = torch.bernoulli(torch.full_like(h, zh))
                h_new = d * h + (1 - d) * h_new
            c, h = c_new, h_new
            outs.append(h)
        return torch.stack(outs), (h, c)


def variant_table(shapes: list[Shape], reps: int) -> None:
    print(
        "\n| variant | T, B, I, H | train | vs plain | infer | vs plain | torch loop train "
        "| loop/longshort |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        torch.manual_seed(0)
        steps, batch, inp, hid = shape[:4]
        x = torch.randn(steps, batch, inp)
        plain = longshort.LSTM(inp, hid)
        for name, kw in VARIANTS.items():
            ours = longshort.LSTM(inp, hid, **kw)
            loop = VariantLoop(ours)
            fns = {"train": train_step(ours, x), "plain": train_step(plain, x)}
            if steps * batch * hid <= 500 * 16 * 64:  # the loop costs minutes at larger shapes
                fns["loop"] = train_step(loop, x)
            t = interleaved(fns, reps)
            ours.eval()
            t.update(
                interleaved({"infer": infer(ours, x), "plain_i": infer(plain.eval(), x)}, reps)
            )
            plain.train()
            loop_cols = "| - | - |"
            if "loop" in t:
                loop_cols = f"| {t['loop'] * 1e3:.1f} ms | {t['loop'] / t['train']:.1f}x |"
            print(
                f"| {name} | {shape.label()} | {t['train'] * 1e3:.1f} ms "
                f"| {t['train'] / t['plain']:.2f}x | {t['infer'] * 1e3:.2f} ms "
                f"| {t['infer'] / t['plain_i']:.2f}x {loop_cols}",
                flush=True,
            )


CUDA_SHAPES = [
    Shape(100, 64, 256, 256),
    Shape(100, 256, 512, 512),
    Shape(1000, 64, 256, 256),
    Shape(1000, 256, 1024, 1024),
]


def synced(fn: Callable[[], object]) -> Callable[[], None]:
    def run():
        fn()
        torch.cuda.synchronize()

    return run


def cuda_table(shapes: list[Shape], reps: int) -> None:
    """longshort on CUDA against cuDNN's nn.LSTM, fp32, bf16 and fp16."""
    print(
        "\n| T, B, I, H | dtype | train: plain / cuDNN | traced / cuDNN | traced / plain "
        "| cell loop / cuDNN | infer: plain / cuDNN | traced / cuDNN |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for shape in shapes:
        steps, batch, inp, hid = shape[:4]
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            torch.manual_seed(0)
            theirs = nn.LSTM(inp, hid).to("cuda", dtype)
            ours = longshort.LSTM.from_torch(theirs)
            loop = CellLoop(inp, hid).to("cuda", dtype)
            x = torch.randn(steps, batch, inp, device="cuda", dtype=dtype)
            fns = {
                "plain": train_step(ours, x),
                "torch": train_step(theirs, x),
                "traced": _traced_train(ours, x),
                "i_plain": infer(ours, x),
                "i_torch": infer(theirs, x),
                "i_traced": infer(ours, x, return_trace=True),
            }
            if steps * batch <= 100 * 256:
                fns["loop"] = train_step(loop, x)
            t = interleaved({k: synced(f) for k, f in fns.items()}, reps)
            loop_col = f"{t['loop'] / t['torch']:.2f}x" if "loop" in t else "-"
            print(
                f"| {shape.label()} | {str(dtype)[6:]} | {t['plain'] / t['torch']:.2f}x "
                f"| {t['traced'] / t['torch']:.2f}x | {t['traced'] / t['plain']:.2f}x "
                f"| {loop_col} | {t['i_plain'] / t['i_torch']:.2f}x "
                f"| {t['i_traced'] / t['i_torch']:.2f}x |",
                flush=True,
            )


def _traced_train(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """A training step that also returns the trace (longshort's own engine on the device)."""
    params = list(model.parameters())

    def step():
        for p in params:
            p.grad = None
        out, _, _ = model(x, return_trace=True)
        out.float().sum().backward()

    return step


def cell_call(m: nn.Module, x: torch.Tensor, hx, backward: bool) -> Callable[[], None]:
    """One call of cell m: forward under no_grad, or forward and backward."""

    def run():
        if not backward:
            with torch.no_grad():
                m(x, hx)
            return
        out = m(x, hx)
        (out[0] if isinstance(out, tuple) else out).sum().backward()

    return run


def cell_fns(cls, theirs_cls, batch, inp, hid, dtype) -> dict[str, Callable[[], None]]:
    theirs = theirs_cls(inp, hid, dtype=dtype)
    ours = cls(inp, hid, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(batch, inp, dtype=dtype)
    h = torch.randn(batch, hid, dtype=dtype)
    hx = (h, torch.randn(batch, hid, dtype=dtype)) if theirs_cls is nn.LSTMCell else h
    return {
        "fwd": cell_call(ours, x, hx, False),
        "fwd_torch": cell_call(theirs, x, hx, False),
        "bwd": cell_call(ours, x, hx, True),
        "bwd_torch": cell_call(theirs, x, hx, True),
    }


def cell_variant_table(reps: int) -> None:
    """One call of LSTMCell(**variant) against the plain longshort.LSTMCell, float32, training
    mode (zoneout and recurrent dropout draw their masks)."""
    print("\n| cell variant | B, I, H | forward | vs plain | fwd+bwd | vs plain |")
    print("|---|---|---|---|---|---|")
    for batch, inp, hid in CELL_SHAPES:
        torch.manual_seed(0)
        x, h, c = torch.randn(batch, inp), torch.randn(batch, hid), torch.randn(batch, hid)
        plain = longshort.LSTMCell(inp, hid)
        for name, kw in VARIANTS.items():
            ours = longshort.LSTMCell(inp, hid, **kw)
            fns = {
                "fwd": cell_call(ours, x, (h, c), False),
                "fwd_p": cell_call(plain, x, (h, c), False),
            }
            fns.update(
                bwd=cell_call(ours, x, (h, c), True), bwd_p=cell_call(plain, x, (h, c), True)
            )
            t = interleaved(fns, reps * 20)
            print(
                f"| {name} | {batch}, {inp}, {hid} | {t['fwd'] * 1e6:.0f} us "
                f"| {t['fwd'] / t['fwd_p']:.2f}x | {t['bwd'] * 1e6:.0f} us "
                f"| {t['bwd'] / t['bwd_p']:.2f}x |",
                flush=True,
            )


def cell_table(reps: int) -> None:
    print(
        "\n| cell, dtype | B, I, H | forward: longshort | torch | ratio "
        "| fwd+bwd: longshort | torch | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    pairs = (
        (longshort.LSTMCell, nn.LSTMCell),
        (longshort.GRUCell, nn.GRUCell),
        (longshort.RNNCell, nn.RNNCell),
    )
    for cls, theirs_cls in pairs:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            for batch, inp, hid in CELL_SHAPES:
                t = interleaved(cell_fns(cls, theirs_cls, batch, inp, hid, dtype), reps * 20)
                print(
                    f"| {cls.__name__}, {str(dtype)[6:]} | {batch}, {inp}, {hid} "
                    f"| {t['fwd'] * 1e6:.0f} us | {t['fwd_torch'] * 1e6:.0f} us "
                    f"| {t['fwd'] / t['fwd_torch']:.2f}x | {t['bwd'] * 1e6:.0f} us "
                    f"| {t['bwd_torch'] * 1e6:.0f} us | {t['bwd'] / t['bwd_torch']:.2f}x |",
                    flush=True,
                )


def isa_line() -> str:
    """The instruction sets each side runs: longshort's kernels (numba's target CPU: the
    micro-kernel's vector width, bf16 products), torch's ATen kernels and oneDNN's cap, ONNX
    Runtime (which picks its kernels from the CPU itself, whatever the settings)."""
    import os

    from numba.core import config

    from longshort.engine.cpu import host, packed

    target = config.CPU_NAME or "host"
    if config.CPU_NAME and config.CPU_FEATURES is None:
        target += " with the host's features (numba's rule: set NUMBA_CPU_FEATURES too)"
    ours = f"{target}, {packed.VECTOR_BYTES * 8}-bit vectors, bf16 products {host.BF16_PRODUCTS}"
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "all")
    theirs = f"ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN up to {onednn}"
    # the BLAS under both: longshort's OpenBLAS (projection, dL/dx) and torch's MKL (its
    # matmul, which runs longshort's weight gradients too) pick their kernels from the CPU
    # unless these cap them
    openblas = os.environ.get("OPENBLAS_CORETYPE", "the CPU's")
    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "all")
    blas_line = f"OpenBLAS kernels {openblas}, MKL up to {mkl}"
    return f"ISA: longshort {ours}; torch {theirs}; {blas_line}; ONNX Runtime: the CPU's own"


def parse_shape(text: str) -> Shape:
    """T,B,I,H[,layers[,dropout[,hx]]] as --shapes takes it: 35,20,200,200,2,0.2,1 is the
    word-LM row."""
    fields = text.split(",")
    kinds = (int, int, int, int, int, float, lambda v: bool(int(v)))
    return Shape(*(kind(v) for kind, v in zip(kinds, fields, strict=False)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument(
        "--shapes", nargs="*", default=None, help="T,B,I,H[,layers[,dropout[,hx]]] entries"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--load", action="store_true", help="a busy process beside the run")
    parser.add_argument("--cells", action="store_true", help="also the cells table")
    parser.add_argument("--no-layers", action="store_true", help="skip the layers table")
    parser.add_argument("--gru", action="store_true", help="also the GRU table")
    parser.add_argument("--variants", action="store_true", help="also the LSTM variants table")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = SHAPES
    if args.shapes:
        shapes = [parse_shape(s) for s in args.shapes]
    if args.device == "cuda":
        cuda_table(shapes if args.shapes else CUDA_SHAPES, args.reps)
        return
    first = first_call_seconds()
    with busy_process(args.load):
        peak = gemm_peak(args.reps)
        print(
            f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads{', a busy process beside' if args.load else ''}, "
            f"fp32 GEMM peak {peak:.0f} GFLOP/s (1024^3)"
        )
        print(f"first call in a new process (kernels cached on disk): {first:.2f} s")
        print(isa_line())
        if not args.no_layers:
            layer_table(shapes, args.reps, peak)
            print(
                "ratio = longshort time / peer time (below 1 is faster); loop/longshort = how "
                "many times faster longshort trains than the LSTMCell loop."
            )
        if args.gru:
            gru_table(shapes, args.reps)
        if args.variants:
            variant_table(shapes if args.shapes else VARIANT_SHAPES, args.reps)
            cell_variant_table(args.reps)
        if args.cells:
            cell_table(args.reps)


if __name__ == "__main__":
    main()
