"""The compiled CPU engine: chosen automatically, equal to torch.nn on long sequences too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import longshort
from longshort.engine import dispatch, reference
from longshort.engine.cpu import blas, compiled, host, lstm, rnn
from longshort.engine.cpu import threads as cpu_threads
from longshort.engine.types import LSTMWeights
from tests.helpers import abs_err, record, rel_err


def _w(dtype, proj=False):
    w = torch.zeros(8, 2, dtype=dtype)
    return LSTMWeights(w, w, None, None, torch.zeros(1, 2, dtype=dtype) if proj else None)


def test_chosen_for_cpu_float32_float64_and_bf16():
    assert dispatch.lstm_engine(torch.zeros(1), _w(torch.float32)) is compiled
    assert dispatch.lstm_engine(torch.zeros(1, dtype=torch.float64), _w(torch.float64)) is compiled
    bf16 = dispatch.lstm_engine(torch.zeros(1, dtype=torch.bfloat16), _w(torch.bfloat16))
    assert bf16 is compiled  # on bf16 products, or in float32 where the CPU has none
    x16 = torch.zeros(1, dtype=torch.bfloat16)
    assert dispatch.lstm_engine(x16, _w(torch.bfloat16, proj=True)) is reference
    assert dispatch.rnn_engine(x16) is reference
    assert dispatch.rnn_engine(torch.zeros(1, dtype=torch.float16)) is reference
    with longshort.engine.use_cpu_engine("reference"):
        assert dispatch.lstm_engine(torch.zeros(1), _w(torch.float32)) is reference
        assert dispatch.rnn_engine(torch.zeros(1)) is reference
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


def test_loops_release_the_gil():
    """Row ranges run on threads at once only if the loops are compiled nogil."""
    for kernel in (lstm.forward, lstm.backward, rnn.forward, rnn.backward):
        assert kernel.targetoptions.get("nogil") is True


@pytest.mark.parametrize(("batch", "threads"), [(1, 2), (3, 2), (4, 2), (97, 2), (97, 3), (8, 1)])
def test_row_ranges_cover_the_batch_once(batch, threads):
    parts = cpu_threads.ranges(batch, threads)
    assert parts[0][0] == 0 and parts[-1][1] == batch
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    least = min(batch, cpu_threads.MIN_ROWS)
    assert len(parts) <= threads and all(b1 - b0 >= least for b0, b1 in parts)


@pytest.mark.parametrize("team", ["torch-openmp", "own-pool"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_split_rows_match_torch(threads, team, monkeypatch):
    """The batch split across threads gives torch.nn's results, with lengths and projection, on
    torch's OpenMP threads and on the fallback pool."""
    if team == "own-pool":
        monkeypatch.setattr(cpu_threads, "_gomp", None)
    elif cpu_threads._gomp is None:
        pytest.skip("torch does not run on GNU OpenMP here")
    torch.manual_seed(3)
    theirs = nn.LSTM(5, 12, proj_size=4, bidirectional=True)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(15, 7, 5)
    lengths = torch.tensor([15, 1, 9, 15, 4, 2, 11])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, (h, c) = ours(x, lengths=lengths)
        grads = torch.autograd.grad(out.sum() + h.sum() + c.sum(), [*ours.parameters()])
    finally:
        torch.set_num_threads(old)
    want, (hw, cw) = theirs(packed)
    want = nn.utils.rnn.pad_packed_sequence(want, total_length=15)[0]
    gw = torch.autograd.grad(want.sum() + hw.sum() + cw.sum(), [*theirs.parameters()])
    for a, b in ((out, want), (h, hw), (c, cw)):
        assert abs_err(a, b) < 1e-5
    for a, b in zip(grads, gw, strict=True):
        assert rel_err(a, b) < 1e-4


@pytest.mark.parametrize("threads", [2, 3])
def test_split_rows_sum_the_variant_parameter_gradients(threads, monkeypatch):
    """Each thread sums its rows' share of the peepholes' and layer norms' gradients; over 2
    and 3 threads they equal the reference engine's (float64, lengths)."""
    monkeypatch.setattr(cpu_threads, "MIN_SPLIT_FLOPS", 0)
    torch.manual_seed(4)
    ours = longshort.LSTM(5, 12, layer_norm=True, peephole=True).double()
    x = torch.randn(9, 7, 5, dtype=torch.float64)
    lengths = torch.tensor([9, 1, 6, 9, 4, 2, 8])

    def grads():
        out, (h, c) = ours(x, lengths=lengths)
        return torch.autograd.grad((out * out).sum() + h.sum() + c.sum(), [*ours.parameters()])

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = grads()
    finally:
        torch.set_num_threads(old)
    with longshort.engine.use_cpu_engine("reference"):
        want = grads()
    for a, b in zip(got, want, strict=True):
        assert abs_err(a, b) < 1e-12


@pytest.mark.parametrize("team", ["torch-openmp", "own-pool"])
@pytest.mark.parametrize("threads", [2, 3])
def test_split_rows_inference_matches_torch(threads, team, monkeypatch):
    """No-grad calls on the row split (threads packing [W_ih | U] together, then each its
    rows, lengths and given states), as small shapes split them when MIN_SPLIT_FLOPS is
    lowered; without GNU OpenMP one thread runs all rows and packs alone."""
    if team == "own-pool":
        monkeypatch.setattr(cpu_threads, "_gomp", None)
    elif cpu_threads._gomp is None:
        pytest.skip("torch does not run on GNU OpenMP here")
    monkeypatch.delenv("LONGSHORT_LAYOUT", raising=False)
    monkeypatch.setattr(cpu_threads, "MIN_SPLIT_FLOPS", 0)
    torch.manual_seed(threads)
    theirs = nn.LSTM(5, 40, num_layers=2)  # [W_ih | U] of 160 rows: panels for every thread
    ours = longshort.LSTM.from_torch(theirs)
    x, hx = torch.randn(15, 12, 5), (torch.randn(2, 12, 40), torch.randn(2, 12, 40))
    lengths = torch.tensor([15, 1, 9, 15, 4, 2, 11, 15, 3, 8, 15, 6])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert len(cpu_threads.ranges(12, threads, flops=1)) == threads  # 4 rows or more each
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            out, (h, c) = ours(x, hx, lengths=lengths)
            plain, (hp, cp) = ours(x, hx)
    finally:
        torch.set_num_threads(old)
    with torch.no_grad():
        want, (hw, cw) = theirs(packed, hx)
        plain_want, (hpw, cpw) = theirs(x, hx)
    want = nn.utils.rnn.pad_packed_sequence(want, total_length=15)[0]
    for a, b in ((out, want), (h, hw), (c, cw), (plain, plain_want), (hp, hpw), (cp, cpw)):
        assert abs_err(a, b) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 3, 5), (2, 64, 256), (4, 9, 17), (5, 9, 17), (12, 7, 13), (13, 40, 50)]
)
def test_small_row_products_equal_numpy(dtype, m, k, n):
    """The numba loops for few rows (and BLAS past them) against NumPy, beta 0 and 1."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((m, n)).astype(dtype)
    w_t, w = rng.standard_normal((n, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for beta in (0.0, 1.0):
        got = np.full_like(y, np.nan) if beta == 0 else y.copy()  # beta 0 must not read y
        blas.gemm_wt(x, w_t, got, beta)
        np.testing.assert_allclose(got, x @ w_t.T + beta * y, rtol=tol, atol=tol)
        got = np.full_like(y, np.nan) if beta == 0 else y.copy()
        blas.gemm_w(x, w, got, beta)
        np.testing.assert_allclose(got, x @ w + beta * y, rtol=tol, atol=tol)
        # a sum over the m rows, a a column slice of a wider array as BPTT passes it
        wide = rng.standard_normal((m, n + 3)).astype(dtype)
        a, acc = wide[:, 1 : n + 1], rng.standard_normal((n, k)).astype(dtype)
        got = np.full_like(acc, np.nan) if beta == 0 else acc.copy()
        blas.gemm_at(a, x, got, beta)
        np.testing.assert_allclose(got, a.T @ x + beta * acc, rtol=tol, atol=tol)


def test_errors_in_a_row_range_reach_the_caller():
    def kernel(b0, b1):
        if b0 > 0:
            raise RuntimeError(f"rows {b0}-{b1} failed")

    with pytest.raises(RuntimeError, match="rows 2-4 failed"):
        cpu_threads.run(kernel, [(0, 2), (2, 4)], lambda b0, b1: (b0, b1), 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("steps", "batch", "inp", "hidden"),
    [(2, 4, 3, 8), (9, 17, 13, 33), (7, 1, 3, 8), (5, 3, 2, 9), (20, 32, 8, 64)],
)
@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_infer_matches_the_reference_forward(dtype, steps, batch, inp, hidden, ragged, bias):
    """The forward that keeps nothing per step (no BPTT, no trace) against the reference
    (these shapes take the in-loop input product: I <= H / 2, down to one row). The last
    shape splits its rows across threads; the others run on the caller's thread, in one
    call by address (infer_at), which must leave h_0 and C_0 as they were."""
    torch.manual_seed(steps + batch)
    m = longshort.LSTM(inp, hidden, bias=bias).to(dtype)
    w = LSTMWeights(*(None if p is None else p.detach() for p in m.layer_weights(0, 0)[:4]))
    x = torch.randn(steps, batch, inp, dtype=dtype)
    h0 = torch.randn(hidden, batch, dtype=dtype).T  # not contiguous: copied for the kernel
    c0 = torch.randn(batch, hidden, dtype=dtype)
    lengths = torch.randint(0, steps + 1, (batch,)) if ragged else None
    h0_in, c0_in = h0.clone(), c0.clone()
    got = compiled.lstm_infer(x, h0, c0, w, lengths)
    assert torch.equal(h0, h0_in) and torch.equal(c0, c0_in)
    want = reference.lstm_forward(x, h0, c0, w, lengths)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(got[:3], want[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    assert got.gates.numel() == got.cs.numel() == 0


@pytest.mark.parametrize(
    "kw", [{}, {"num_layers": 2, "bidirectional": True}, {"proj_size": 3}, {"batch_first": True}]
)
def test_no_grad_forward_matches_torch_and_keeps_traces(kw):
    """Under no_grad the layers run lstm_infer; the outputs are torch.nn's, and a trace still
    gets its gates."""
    torch.manual_seed(3)
    theirs = nn.LSTM(6, 10, **kw)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(5, 8, 6)
    with torch.no_grad():
        want, (wh, wc) = theirs(x)
        got, (h, c) = ours(x)
        traced = ours(x, return_trace=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, wh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, wc, rtol=1e-5, atol=1e-6)
    assert traced[2][0].gates.shape[-1] == 40


@pytest.mark.parametrize(
    ("layers", "steps", "batch", "dtype", "layout"),
    [
        (1, 30, 1, torch.float32, "time-major"),  # the one-row stream
        (3, 6, 2, torch.float64, "batch_first"),
        (2, 5, 40, torch.float32, "time-major"),  # both layers by address, at offsets
        (2, 50, 40, torch.float32, "time-major"),  # rows split across threads
        (2, 4, 1, torch.float32, "unbatched"),
    ],
)
@pytest.mark.parametrize("given_state", [False, True])
def test_stack_inference_matches_torch_in_one_call(
    monkeypatch, layers, steps, batch, dtype, layout, given_state
):
    """A plain one-direction stack without a graph runs as one lstm_stack_infer call, which
    writes h_n and c_n in place: torch.nn's outputs, for given states (a non-contiguous view
    here, left unchanged) or zeros."""
    calls = []
    original = compiled.lstm_stack_infer
    monkeypatch.setattr(compiled, "lstm_stack_infer", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(layers + batch)
    theirs = nn.LSTM(7, 16, num_layers=layers, batch_first=layout == "batch_first").to(dtype)
    ours = longshort.LSTM.from_torch(theirs).eval()
    x = torch.randn(*((steps, 7) if layout == "unbatched" else (steps, batch, 7)), dtype=dtype)
    if layout == "batch_first":
        x = x.transpose(0, 1).contiguous()
    args = (x,)
    if given_state:
        shape = (layers, 16) if layout == "unbatched" else (layers, batch, 16)
        h0 = torch.randn(*shape[::-1], dtype=dtype).transpose(0, -1)  # not contiguous
        c0 = torch.randn(*shape, dtype=dtype)
        args = (x, (h0, c0))
        h0_in, c0_in = h0.clone(), c0.clone()
    with torch.no_grad():
        want, (wh, wc) = theirs(*args)
        got, (h, c) = ours(*args)
    assert calls == [1]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in ((got, want), (h, wh), (c, wc)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if given_state:
        assert torch.equal(h0, h0_in) and torch.equal(c0, c0_in)


def test_stack_with_a_graph_runs_layer_by_layer():
    """An evaluation-mode call whose weights need a gradient records the graph (layer by
    layer), and its gradients are torch.nn's."""
    torch.manual_seed(5)
    theirs = nn.LSTM(4, 8, num_layers=2)
    ours = longshort.LSTM.from_torch(theirs).eval()
    x = torch.randn(6, 3, 4)
    theirs(x)[0].square().sum().backward()
    ours(x)[0].square().sum().backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


def _assert_step_records_norms(step, args: tuple, cell: str, width: int) -> None:
    """A backward through one cell step records its norms: (1, B, width), ||dL/dh|| first."""
    from longshort.engine import gradient_norms

    with gradient_norms.recording() as records:
        out = step(*args)
        h = out[0] if isinstance(out, tuple) else out
        dh = torch.randn_like(h)
        (h * dh).sum().backward()
    ((name, norms),) = records
    assert name == cell and norms.shape == (1, h.shape[0], width)
    torch.testing.assert_close(norms[0, :, 0], dh.norm(dim=1))


def test_cell_step_runs_compiled_passes_gradcheck_and_records_norms():
    """LSTMCell's one-call step (engine.lstm_cell on the compiled engine): float64 gradcheck
    of every input, and the per-step norms the inspect tools read."""
    torch.manual_seed(5)
    f64 = torch.float64
    x = torch.randn(3, 4, dtype=f64, requires_grad=True)
    h0, c0 = (torch.randn(3, 5, dtype=f64, requires_grad=True) for _ in range(2))
    w = [torch.randn(20, k, dtype=f64, requires_grad=True) for k in (4, 5)]
    b = [torch.randn(20, dtype=f64, requires_grad=True) for _ in range(2)]
    assert dispatch.step_engine(x, LSTMWeights(*w, *b)) is compiled
    assert torch.autograd.gradcheck(
        lambda *a: longshort.engine.lstm_cell(*a), (x, h0, c0, *w, *b), eps=1e-6, atol=1e-6
    )
    _assert_step_records_norms(longshort.engine.lstm_cell, (x, h0, c0, *w, *b), "lstm", 2)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_step_runs_compiled_passes_gradcheck_and_records_norms(nonlinearity):
    torch.manual_seed(6)
    f64 = torch.float64
    x = torch.randn(3, 4, dtype=f64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=f64, requires_grad=True)
    w = [torch.randn(5, k, dtype=f64, requires_grad=True) for k in (4, 5)]
    b = [torch.randn(5, dtype=f64, requires_grad=True) for _ in range(2)]
    assert dispatch.step_engine(x) is compiled

    def step(*a):
        return longshort.engine.rnn_cell(*a, nonlinearity=nonlinearity)

    assert torch.autograd.gradcheck(step, (x, h0, *w, *b), eps=1e-6, atol=1e-6)
    _assert_step_records_norms(step, (x, h0, *w, *b), "rnn", 1)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_step_runs_compiled_passes_gradcheck_and_records_norms(bias):
    torch.manual_seed(7)
    f64 = torch.float64
    x = torch.randn(3, 4, dtype=f64, requires_grad=True)
    h0 = torch.randn(3, 5, dtype=f64, requires_grad=True)
    w = [torch.randn(15, k, dtype=f64, requires_grad=True) for k in (4, 5)]
    b = [torch.randn(15, dtype=f64, requires_grad=True) for _ in range(2)] if bias else []
    assert dispatch.step_engine(x) is compiled
    step = longshort.engine.gru_cell
    assert torch.autograd.gradcheck(step, (x, h0, *w, *b), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradgradcheck(step, (x, h0, *w, *b), eps=1e-6, atol=1e-6)
    _assert_step_records_norms(step, (x, h0, *w, *b), "gru", 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_cell_step_matches_torch(dtype, bias):
    """The one-call GRUCell step against nn.GRUCell with the same weights: batched and
    unbatched, with and without a graph, outputs and every gradient."""
    torch.manual_seed(8)
    theirs = nn.GRUCell(6, 9, bias=bias).to(dtype)
    ours = longshort.GRUCell(6, 9, bias=bias).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for shape in ((4, 6), (6,)):
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        h0 = torch.randn((*shape[:-1], 9), dtype=dtype, requires_grad=True)
        got, want = ours(x, h0), theirs(x, h0)
        assert abs_err(got, want) < tol
        with torch.no_grad():
            assert abs_err(ours(x, h0), want) < tol
        dh = torch.randn_like(want)
        ga = torch.autograd.grad(got, [x, h0, *ours.parameters()], dh)
        gb = torch.autograd.grad(want, [x, h0, *theirs.parameters()], dh)
        for a, b in zip(ga, gb, strict=True):
            assert abs_err(a, b) < tol * 10


def test_kept_buffers_stay_bounded_over_many_sequence_lengths():
    """Training over batches of ever new lengths keeps at most KEPT_SHAPES buffers a role."""
    m = longshort.LSTM(3, 8)
    for steps in range(2, 12):
        m(torch.randn(steps, 4, 3))[0].sum().backward()
    kept = host._BUFFERS.cache
    assert all(len(shapes) <= host.KEPT_SHAPES for shapes in kept.values())
    assert any(shape[0][0] == 11 for shape in kept["dz"])  # the last length is kept


def test_recycled_buffers_come_back_only_when_no_tensor_holds_them():
    """A saved buffer's memory serves the next call only once its last view is gone."""
    shape = (3, 5, 7)
    a = host.recycled(shape, torch.float32)
    view = a[1:]  # a view alone keeps the memory in use
    del a
    b = host.recycled(shape, torch.float32)
    assert b.data_ptr() != view.data_ptr() - 5 * 7 * 4
    first = view.data_ptr() - 5 * 7 * 4
    del view
    c = host.recycled(shape, torch.float32)
    assert c.data_ptr() == first  # the released buffer, not a new one
    assert host.recycled(shape, torch.float64).dtype == torch.float64


def test_recycled_buffers_stay_bounded():
    shape = (2, 3)
    many = [host.recycled(shape, torch.float32) for _ in range(3 * host.FREE_PER_SHAPE)]
    del many
    assert len(host._FREE[(shape, torch.float32)]) == host.FREE_PER_SHAPE


@pytest.mark.parametrize("kw", [{}, {"layer_norm": True}])
def test_graphs_alive_together_keep_their_saved_buffers(kw):
    """Two forwards before either backward (their saved gates and C_t both in use), then the
    backwards in reverse order: each gradient equals torch's for its own input."""
    torch.manual_seed(0)
    ours = longshort.LSTM(3, 8, **kw).double()
    xs = [torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    outs = [ours(x)[0] for x in xs]
    for x, out in zip(xs[::-1], outs[::-1], strict=True):
        (dx,) = torch.autograd.grad(out.square().sum(), x)
        x_ref = x.detach().requires_grad_()
        with longshort.engine.use_cpu_engine("reference"):
            (expected,) = torch.autograd.grad(ours(x_ref)[0].square().sum(), x_ref)
        assert abs_err(dx, expected) < 1e-12


@pytest.mark.parametrize("bias", [True, False])
def test_cells_without_a_graph_match_torch(bias):
    """Under no_grad the cells call the compiled step directly (no autograd.Function)."""
    torch.manual_seed(7)
    for ours_cls, theirs_cls in (
        (longshort.LSTMCell, nn.LSTMCell),
        (longshort.RNNCell, nn.RNNCell),
    ):
        theirs = theirs_cls(5, 9, bias=bias)
        ours = ours_cls(5, 9, bias=bias)
        ours.load_state_dict(theirs.state_dict())
        x, h = torch.randn(3, 5), torch.randn(3, 9)
        hx = (h, torch.randn(3, 9)) if ours_cls is longshort.LSTMCell else h
        with torch.no_grad():
            got, want = ours(x, hx), theirs(x, hx)
        for a, b in zip(
            got if isinstance(got, tuple) else (got,),
            want if isinstance(want, tuple) else (want,),
            strict=True,
        ):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            assert not a.requires_grad


@pytest.mark.parametrize(("hidden", "threads"), [(1, 2), (12, 2), (37, 3), (256, 2), (40, 5)])
def test_unit_ranges_cover_the_hidden_units_once(hidden, threads):
    parts = cpu_threads.unit_ranges(hidden, threads)
    assert len(parts) == min(threads, hidden) and parts[0][0] == 0 and parts[-1][1] == hidden
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert all(b1 > b0 for b0, b1 in parts)
    if hidden >= 8 * threads:
        assert all(b0 % 8 == 0 for b0, _ in parts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("threads", "hidden"), [(2, 12), (2, 40), (3, 37), (3, 2)])
def test_unit_split_matches_torch(dtype, threads, hidden, monkeypatch):
    """Hidden units across the threads (one barrier a step), with lengths, both directions
    and two layers: torch.nn's outputs and gradients, forward and no-grad (inference's own
    unit loop, also from given states)."""
    monkeypatch.setenv("LONGSHORT_LAYOUT", "units")
    torch.manual_seed(hidden)
    theirs = nn.LSTM(5, hidden, num_layers=2, bidirectional=True).to(dtype)
    ours = longshort.LSTM.from_torch(theirs)
    x = torch.randn(15, 3, 5, dtype=dtype)
    hx = tuple(torch.randn(4, 3, hidden, dtype=dtype) for _ in range(2))
    lengths = torch.tensor([15, 1, 9])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, (h, c) = ours(x, lengths=lengths)
        grads = torch.autograd.grad(out.sum() + h.sum() + c.sum(), [*ours.parameters()])
        with torch.no_grad():
            plain, _ = ours(x)
            served, (hs, cs) = ours(x, hx, lengths=lengths)
    finally:
        torch.set_num_threads(old)
    want, (hw, cw) = theirs(packed)
    want = nn.utils.rnn.pad_packed_sequence(want, total_length=15)[0]
    gw = torch.autograd.grad(want.sum() + hw.sum() + cw.sum(), [*theirs.parameters()])
    with torch.no_grad():
        from_hx, (hwx, cwx) = theirs(packed, hx)
    from_hx = nn.utils.rnn.pad_packed_sequence(from_hx, total_length=15)[0]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    pairs = ((out, want), (h, hw), (c, cw), (plain, theirs(x)[0]))
    for a, b in (*pairs, (served, from_hx), (hs, hwx), (cs, cwx)):
        assert abs_err(a, b) < tol
    for a, b in zip(grads, gw, strict=True):
        assert rel_err(a, b) < tol * 10


@pytest.mark.parametrize("threads", [2, 3])
def test_unit_split_bptt_records_torchs_gradient_norms(threads, monkeypatch):
    """BPTT with the hidden units across the threads sums each step's norms from the
    threads' shares: ||dL/dh_t|| and ||dL/dC_t||, as a loop over torch.nn.LSTMCell gives
    them (the gradients reaching h_t and C_t from the output and from step t + 1)."""
    from longshort.engine import gradient_norms

    monkeypatch.setenv("LONGSHORT_LAYOUT", "units")
    torch.manual_seed(threads)
    theirs = nn.LSTMCell(5, 24)
    ours = longshort.LSTM(5, 24)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name + "_l0").copy_(getattr(theirs, name))
    x, d_out = torch.randn(7, 3, 5), torch.randn(7, 3, 24)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with gradient_norms.recording() as records:
            (ours(x)[0] * d_out).sum().backward()
    finally:
        torch.set_num_threads(old)
    h, c, states = torch.zeros(3, 24), torch.zeros(3, 24), []
    for t in range(7):
        h, c = theirs(x[t], (h, c))
        h.retain_grad(), c.retain_grad()
        states.append((h, c))
    sum((s[0] * d_out[t]).sum() for t, s in enumerate(states)).backward()
    norm = [torch.stack([h.grad.norm(dim=1), c.grad.norm(dim=1)], 1) for h, c in states]
    want = torch.stack(norm)
    ((name, norms),) = records
    assert name == "lstm"
    torch.testing.assert_close(norms, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("batch", "weight_bytes", "units"),
    [(1, 1 << 20, True), (4, 1 << 20, True), (4, 4 << 20, True), (5, 1 << 20, False),
     (4, (1 << 20) - 4, False), (2, 1 << 18, False)],
)  # fmt: skip
def test_units_when_two_threads_get_at_most_two_rows_and_u_fills_l2(
    batch, weight_bytes, units, monkeypatch
):
    """Training's rule (U at least L2); inference's asks a quarter of L2 of [W_ih | U];
    BPTT's only where the row split leaves a thread idle (under 4 rows: one range)."""
    from longshort.engine.cpu import threads as cpu_threads

    if cpu_threads._gomp is None:
        pytest.skip("the unit split runs on torch's GNU OpenMP threads")
    monkeypatch.delenv("LONGSHORT_LAYOUT", raising=False)
    monkeypatch.setattr(cpu_threads, "L2_BYTES", 1 << 20)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert cpu_threads.split_units(batch, weight_bytes, 1 << 30) is units
        quarter = cpu_threads.split_units(batch, weight_bytes // 4, 1 << 30, 1 << 18)
        assert quarter is units
        idle = cpu_threads.split_units(batch, weight_bytes, 1 << 30, idle_only=True)
        assert idle is (units and batch < 4)
    finally:
        torch.set_num_threads(old)


def test_training_splits_the_units_of_a_lone_row_from_a_quarter_of_l2(monkeypatch):
    from longshort.engine.cpu import threads as cpu_threads

    monkeypatch.setattr(cpu_threads, "L2_BYTES", 1 << 20)
    assert cpu_threads.training_unit_bytes(1) == 1 << 18
    assert cpu_threads.training_unit_bytes(2) == cpu_threads.training_unit_bytes(4) == 1 << 20


def test_a_layout_that_does_not_exist_is_refused(monkeypatch):
    monkeypatch.setenv("LONGSHORT_LAYOUT", "columns")
    with pytest.raises(ValueError, match="LONGSHORT_LAYOUT='columns': expected 'rows' or 'units'"):
        longshort.LSTM(3, 4)(torch.randn(2, 1, 3))


def test_unit_split_passes_gradcheck(monkeypatch):
    monkeypatch.setenv("LONGSHORT_LAYOUT", "units")
    torch.manual_seed(0)
    m = longshort.LSTM(3, 10).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.autograd.gradcheck(lambda x: m(x)[0], (x,))
    finally:
        torch.set_num_threads(old)


def test_a_team_smaller_than_its_jobs_runs_the_work_alone():
    """Nested in another parallel region, OpenMP gives a team of one thread: a job waiting at
    the barrier for a second thread would wait forever, so the work runs alone instead."""
    if cpu_threads._gomp is None:
        pytest.skip("torch does not run on GNU OpenMP here")
    from longshort.engine.cpu import sync

    ran = []

    def kernel(count, team, who):
        sync.wait(count, team, 1)
        ran.append(who)

    def outer(_):
        c = sync.counter()
        cpu_threads.run_team(
            kernel, [(c, 2, "a"), (c, 2, "b")], lambda: (sync.counter(), 1, "alone")
        )

    cpu_threads.run_jobs(outer, [(0,), (1,)])
    assert sorted(ran) == ["alone", "alone"]


@pytest.mark.parametrize("batch", [3, 9])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cell_steps_by_address_match_torch_on_strided_inputs(name, bias, batch):
    """The cells' one-call steps hand their tensors to the kernels by address: a strided
    input (a time slice of a (B, T, I) tensor) and a stride-0 gradient (from .sum()), with
    the products inside the compiled call (3 rows) and on torch's GEMM (9 rows), against
    torch.nn's cell in float64: outputs and every gradient."""
    assert host.torch_products(batch) == (batch > 4)
    torch.manual_seed(9)
    f64 = torch.float64
    ours_cls, theirs_cls = getattr(longshort, name), getattr(nn, name)
    theirs = theirs_cls(7, 10, bias=bias, dtype=f64)
    ours = ours_cls(7, 10, bias=bias, dtype=f64)
    ours.load_state_dict(theirs.state_dict())
    seq = torch.randn(batch, 3, 7, dtype=f64, requires_grad=True)
    x = seq[:, 1]  # strided
    h0 = torch.randn(batch, 10, dtype=f64, requires_grad=True)
    hx = (h0, torch.randn(batch, 10, dtype=f64, requires_grad=True)) if name == "LSTMCell" else h0
    got, want = ours(x, hx), theirs(x, hx)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for a, b in zip(got, want, strict=True):
        assert abs_err(a, b) < 1e-12
    inputs = [seq, h0, *([hx[1]] if name == "LSTMCell" else [])]
    ga = torch.autograd.grad(sum(t.sum() for t in got), [*inputs, *ours.parameters()])
    gb = torch.autograd.grad(sum(t.sum() for t in want), [*inputs, *theirs.parameters()])
    for a, b in zip(ga, gb, strict=True):
        assert abs_err(a, b) < 1e-11


@pytest.mark.parametrize("variant", [False, True])
def test_a_first_layer_skips_dx_and_keeps_the_weight_gradients(variant):
    """need_dx=False (the input needs no gradient): the compiled engine returns dx None and
    the same weight gradients as torch.nn (plain) or as the call that computes dx."""
    torch.manual_seed(0)
    kw = {"layer_norm": True} if variant else {}
    theirs = nn.LSTM(5, 12)
    ours = longshort.LSTM(5, 12, **kw)
    if not variant:
        ours.load_state_dict(theirs.state_dict())
    x = torch.randn(7, 3, 5)
    grads = []
    for m, inp in ((ours, x), (ours, x.clone().requires_grad_()), (theirs, x)):
        m.zero_grad()
        m(inp)[0].pow(2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # dx or not, the same weight grads
    if not variant:
        for a, b in zip(grads[0], grads[2], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_input_and_weight_grads_skip_dx_when_told():
    from longshort.engine.cpu import host

    dz, x = torch.randn(4, 3, 8), torch.randn(4, 3, 5)
    h0, hs, w_ih = torch.randn(3, 2), torch.randn(4, 3, 2), torch.randn(8, 5)
    dx, dw_ih, dw_hh, db = host.input_and_weight_grads(dz, x, h0, hs, w_ih, need_dx=False)
    torch.testing.assert_close(db, dz.sum((0, 1)))
    assert dx is None
    torch.testing.assert_close(dw_ih, dz.flatten(0, 1).T @ x.flatten(0, 1))
    h_prev = torch.cat((h0[None], hs[:-1]))
    torch.testing.assert_close(dw_hh, dz.flatten(0, 1).T @ h_prev.flatten(0, 1))


@pytest.mark.parametrize("gates", [8, 264])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_input_and_weight_grads_against_the_sums(gates, steps, dtype):
    """dx, the weight gradients (on torch's matmul, into the engine's arrays) and db against
    the sums written out here (one step: no h_1 .. h_{T-1} part)."""
    from longshort.engine.cpu import host

    g = torch.Generator().manual_seed(gates + steps)
    dz, x = torch.randn(steps, 3, gates, generator=g), torch.randn(steps, 3, 5, generator=g)
    h0, hs = torch.randn(3, 7, generator=g), torch.randn(steps, 3, 7, generator=g)
    w_ih = torch.randn(gates, 5, generator=g)
    dz, x, h0, hs, w_ih = (t.to(dtype) for t in (dz, x, h0, hs, w_ih))
    dx, dw_ih, dw_hh, db = host.input_and_weight_grads(dz, x, h0, hs, w_ih)
    h_prev = torch.cat((h0[None], hs[:-1]))
    want_ih = sum(dz[t].T @ x[t] for t in range(steps))
    want_hh = sum(dz[t].T @ h_prev[t] for t in range(steps))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(dx, torch.einsum("tbg,gi->tbi", dz, w_ih), **tol)
    torch.testing.assert_close(dw_ih, want_ih, **tol)
    torch.testing.assert_close(dw_hh, want_hh, **tol)
    torch.testing.assert_close(db, dz.sum((0, 1)), **tol)


@pytest.mark.parametrize(
    ("ours_cls", "theirs_cls", "states"),
    [
        (longshort.LSTMCell, nn.LSTMCell, 2),
        (longshort.GRUCell, nn.GRUCell, 1),
        (longshort.RNNCell, nn.RNNCell, 1),
    ],
)
@pytest.mark.parametrize("h_grad", [True, False])
def test_a_cell_step_without_dx_keeps_the_other_gradients(ours_cls, theirs_cls, states, h_grad):
    """Above 4 rows a cell's BPTT products run on torch's GEMM, which skips dx when the input
    needs no gradient, and dh0 when h_0 needs none: the gradients wanted still match
    torch.nn's cell."""
    torch.manual_seed(0)
    theirs = theirs_cls(5, 6)
    ours = ours_cls(5, 6)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(7, 5)  # no gradient wanted
    hs = [torch.randn(7, 6, requires_grad=h_grad) for _ in range(states)]
    hx = tuple(hs) if states == 2 else hs[0]
    got = [ours(x, hx), theirs(x, hx)]
    grads = []
    wanted = lambda m: [*(hs if h_grad else []), *m.parameters()]  # noqa: E731
    for m, out in zip((ours, theirs), got, strict=True):
        out = out[0] if isinstance(out, tuple) else out
        grads.append(torch.autograd.grad(out.pow(2).sum(), wanted(m)))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kw", [{"layer_norm": True, "peephole": True}, {"zoneout": 0.3}])
def test_a_variant_cell_step_without_dx_or_dh0_keeps_the_other_gradients(kw):
    torch.manual_seed(0)
    cell = longshort.LSTMCell(5, 6, recurrent_dropout=0.2, **kw)
    x, h, c = torch.randn(7, 5), torch.randn(7, 6), torch.randn(7, 6)
    grads = []
    for wanted in (False, True):  # the inputs' gradients not wanted, then wanted
        inp, hx = x.clone().requires_grad_(wanted), (h.clone().requires_grad_(wanted), c)
        torch.manual_seed(1)  # the same masks
        h1, c1 = cell(inp, hx)
        grads.append(torch.autograd.grad((h1.pow(2) + c1).sum(), list(cell.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unmanaged_views_alias_their_array_and_refuse_strided_ones():
    """address.unmanaged: the same memory as the array (a write through a row of it lands in
    the array), no copy; a strided array is refused rather than read at the wrong places."""
    from numba import njit

    from longshort.engine.cpu.address import unmanaged

    @njit(cache=False)
    def bump_row(a, r):
        v = unmanaged(a)
        row = v[r]
        for j in range(row.shape[0]):
            row[j] += 1.0
        return v.sum()

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    total = bump_row(a, 1)
    assert total == pytest.approx(66.0 + 4.0)
    assert a[1].tolist() == [5.0, 6.0, 7.0, 8.0]
    assert a[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="C-contiguous"):
        bump_row(np.ones((4, 6), np.float32)[:, ::2], 0)


def test_prefetch_hints_become_prefetch_instructions_and_change_nothing():
    """address.prefetch / prefetch_write: one hint per cache line of the row, compiled to the
    CPU's prefetch instructions, the array untouched."""
    from numba import njit

    from longshort.engine.cpu.address import prefetch, prefetch_write

    @njit(cache=False)
    def hinted(a):
        prefetch(a[1])
        prefetch_write(a[2])
        return a.sum()

    a = np.arange(3 * 64, dtype=np.float32).reshape(3, 64)
    assert hinted(a) == a.sum()
    assert a.ravel().tolist() == list(range(3 * 64))
    asm = hinted.inspect_asm(hinted.signatures[0])
    assert "prefetcht0" in asm  # reads; writes are prefetchw where the CPU has it
