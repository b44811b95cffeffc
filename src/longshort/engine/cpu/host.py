"""What every cell's host code shares: tensors as arrays, kept buffers, packed weights, and the
one-off products of a call (the input projection before the loop, the input and weight
gradients after BPTT), split across torch's threads.

Each cell's host functions live beside its kernels (:mod:`.lstm`, :mod:`.gru`, :mod:`.rnn`,
:mod:`.lstm_variant`); :mod:`.compiled` gathers them into the engine.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import weakref

import numpy as np
import torch
from torch import Tensor

from longshort.engine.cpu import packed, small, threads
from longshort.engine.cpu.activations import gate_coefficients
from longshort.engine.cpu.blas import BF16, gemm_at, gemm_w, gemm_wt
from longshort.engine.types import LSTMWeights, RNNWeights

DTYPES = (torch.float32, torch.float64)
# bfloat16 products here: MKL's (blas.BF16) or the packed kernel's AVX512-BF16 ones. Without
# them bfloat16 layers keep bf16 storage and compute in float32 (:func:`widened`).
BF16_PRODUCTS = BF16 or packed.BF16
NO_BF16 = np.empty((1, 1), np.uint16)  # the bf16 scratch, unused by float32/float64 weights
# numpy's dtypes named directly: a torch tensor made at import would be a fake one when the
# first import happens inside torch.compile's tracing (FakeTensorMode), and .numpy() fails there
NO_BIAS: dict[torch.dtype, np.ndarray] = {
    torch.float32: np.empty(0, np.float32),
    torch.float64: np.empty(0, np.float64),
}


@functools.lru_cache(maxsize=64)
def coefficients(hidden: int, dtype: np.dtype, blocks: int = 4) -> np.ndarray:
    """(3, blocks * H) gate coefficients, made once per size and dtype (read-only)."""
    coef = np.stack(gate_coefficients(hidden, dtype, blocks))
    coef.flags.writeable = False
    return coef


@functools.lru_cache(maxsize=64)
def sigmoid_coefficients(hidden: int, dtype: np.dtype) -> np.ndarray:
    """(3, 2H): σ's coefficients for the GRU's r and z blocks (read-only)."""
    coef = np.ascontiguousarray(coefficients(hidden, dtype)[:, : 2 * hidden])
    coef.flags.writeable = False
    return coef


def array(t: Tensor) -> np.ndarray:
    """A C-contiguous NumPy view (or copy, when t is strided) of a CPU tensor; bfloat16 as the
    uint16 bits the bf16 products take."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def optional(t: Tensor | None, dims: int, dtype: np.dtype) -> np.ndarray:
    """An optional operand of a kernel: its array, or an empty one of `dims` dimensions."""
    return np.empty((0,) * dims, dtype) if t is None else array(t)


def acc(t: Tensor) -> torch.dtype:
    """The dtype the engine computes and keeps state in: float32 for bfloat16 tensors."""
    return torch.float32 if t.dtype == torch.bfloat16 else t.dtype


def bf16_scratch(t: Tensor, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) uint16 scratch for values rounded to bfloat16 when t is bf16; else unused."""
    return np.empty((rows, cols), np.uint16) if t.dtype == torch.bfloat16 else NO_BF16


def widened(w: LSTMWeights) -> LSTMWeights:
    """bfloat16 weights as float32 copies, for a CPU without bf16 products: the call runs
    the float32 loops and rounds its results back to bf16 (bf16 storage, float32 products)."""
    return LSTMWeights._make(None if t is None else t.detach().float() for t in w)


def lengths_array(lengths: Tensor | None) -> np.ndarray:
    """(B,) int64, or empty when every sequence runs all T steps."""
    return np.empty(0, np.int64) if lengths is None else array(lengths)


def as_matrix(a: np.ndarray) -> np.ndarray:
    """All leading dimensions as rows (also when an array holds no element). math.prod, not
    np.prod: 0.1 us against 2 us, twice or more in every call."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


# buffers kept across calls -------------------------------------------------------------------

_BUFFERS = threading.local()
MAX_BUFFER_BYTES = 16 << 20  # larger buffers are allocated anew at each call
KEPT_SHAPES = 4  # shapes kept per role and thread


def kept(role: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A buffer of this thread's for the role, kept across calls when at most MAX_BUFFER_BYTES
    (new arrays' pages fault in at first write: a training step at (100, 32, 32, 128) took
    1,600 faults). A role keeps its KEPT_SHAPES most recent shapes (the layers of a model, a
    few sequence lengths), so memory stays bounded when every batch has a new length. Its
    content is whatever the last call left: the caller writes all of it before reading it.
    A view of it may leave the engine call only to a caller that consumes it before this
    thread's next call for the role (the variants' BPTT hands da and dr to
    :func:`longshort.engine.variant.backward`, which turns them into gradients at once); no
    tensor a user receives is one."""
    cache = getattr(_BUFFERS, "cache", None)
    if cache is None:
        cache = _BUFFERS.cache = {}
    shapes = cache.setdefault(role, collections.OrderedDict())
    key = (shape, np.dtype(dtype))
    out = shapes.pop(key, None)
    if out is None:
        out = packed.aligned_empty(shape, dtype)  # vector loads and stores on whole lines
        if out.nbytes > MAX_BUFFER_BYTES:
            return out
    shapes[key] = out  # the most recent last
    while len(shapes) > KEPT_SHAPES:
        shapes.popitem(last=False)
    return out


# buffers saved for BPTT, recycled -------------------------------------------------------------

_FREE: dict[tuple, list[np.ndarray]] = {}
_FREE_LOCK = threading.RLock()  # reentrant: a collection inside it may run a give-back
FREE_PER_SHAPE = 4  # free buffers held per shape and dtype
FREE_BYTES = 256 << 20  # and in all
_free_bytes = [0]


def recycled(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised tensor for a buffer a call saves for BPTT (the gates, C_t, U h_{t-1}),
    whose memory comes back here when its last tensor or view is gone, for the next call of
    the shape. New (T, B, G) buffers page-faulted at every call whenever the allocator had
    handed their memory back to the system: 2,100 faults, 1.8 ms of a 6.6 ms layer-norm
    forward at (500, 16, 16, 64) when another model ran between its calls. A buffer still
    referenced anywhere (a graph not yet run backward, a trace a user keeps) is never handed
    out; at most FREE_PER_SHAPE free buffers a shape and FREE_BYTES in all are held."""
    key = (tuple(shape), dtype)
    with _FREE_LOCK:
        free = _FREE.get(key)
        base = free.pop() if free else None
        if base is not None:
            _free_bytes[0] -= base.nbytes
    if base is None:
        base = packed.aligned_empty(shape, NO_BIAS[dtype].dtype)
    view = base.view()  # the object every tensor of this call keeps alive
    weakref.finalize(view, _give_back, key, base).atexit = False
    return torch.from_numpy(view)


def _give_back(key: tuple, base: np.ndarray) -> None:
    with _FREE_LOCK:
        free = _FREE.setdefault(key, [])
        if len(free) < FREE_PER_SHAPE and _free_bytes[0] + base.nbytes <= FREE_BYTES:
            free.append(base)
            _free_bytes[0] += base.nbytes


def packed_kept(a: np.ndarray, role: str, rows_of_t: bool = False) -> np.ndarray:
    """packed.pack(a), or packed.pack_t(a) with rows_of_t, into a :func:`kept` buffer of the
    role: new arrays' page faults cost 1 ms of a 3.6 ms two-layer call at (35, 20, 200, 200).
    Every element is written at each call, and the packing lives only inside the call."""
    n, k = (a.shape[1], a.shape[0]) if rows_of_t else a.shape
    dtype = np.dtype(np.uint32) if a.dtype == np.uint16 else a.dtype
    out = kept(role, packed.packed_shape(n, k, a.dtype), dtype)
    return packed.pack_t(a, out) if rows_of_t else packed.pack(a, out)


def packed_pair(a: Tensor, b: Tensor, role: str) -> np.ndarray:
    """packed.pack_pair of a (N, Ka) and b (N, Kb), float32/float64, into a :func:`kept`
    buffer of the role (as :func:`packed_kept`)."""
    a_rows, b_rows = array(a), array(b)
    shape = packed.packed_shape(a_rows.shape[0], a_rows.shape[1] + b_rows.shape[1], a_rows.dtype)
    return packed.pack_pair(a_rows, b_rows, kept(role, shape, a_rows.dtype))


def recurrent(w: Tensor, steps: int, role: str = "recurrent") -> np.ndarray:
    """A loop's recurrent weight (N, K), for products x @ w.T: packed once for the per-step
    kernel of :mod:`.packed` when the loop runs more than one step; as it is for one step (a
    cell's call, where packing would cost as much as the product) and for bfloat16 bits
    with MKL, whose products take them as they are."""
    bf16 = w.dtype == torch.bfloat16
    if (steps > 1 and not bf16) or (bf16 and packed.BF16 and (steps > 1 or not BF16)):
        # BPTT's w = Uᵀ is a view: packed from U's rows (pack_t), not from a transposed copy
        rows_of_u = not w.is_contiguous() and w.t().is_contiguous()
        return packed_kept(array(w.t() if rows_of_u else w), role, rows_of_u)
    return array(w)


def bias_sum(w: LSTMWeights | RNNWeights, dtype: torch.dtype) -> np.ndarray:
    """b_ih + b_hh (zeros without bias) in the engine's dtype, (G,)."""
    if w.b_ih is None or w.b_hh is None:
        return np.zeros(w.w_ih.shape[0], NO_BIAS[dtype].dtype)
    return (w.b_ih.detach().to(dtype) + w.b_hh.detach().to(dtype)).numpy()


def torch_products(batch: int) -> bool:
    """Whether a cell's step over `batch` rows runs its products on torch's GEMM (then its
    gates in one compiled call) rather than inside that call on :mod:`.small`'s loops. Over
    a few rows torch's (MKL or oneDNN, on torch's threads) wins: on a Zen 3, 2 threads, the
    two products of an LSTMCell step took 58 us in torch against 91 in single-threaded
    OpenBLAS at (B, I, H) = (16, 64, 128), and 445 against 760 at (64, 128, 256)."""
    return batch > small.FEW_ROWS


def torch_step_grads(
    d_in: Tensor,
    d_rec: Tensor,
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    dh0: Tensor | None = None,
    need_dx: bool = True,
    need_dh0: bool = True,
) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """A cell step's four BPTT products on torch's GEMM (:func:`torch_products`), from the
    gradients at its input-side and recurrent pre-activations d_in, d_rec (B, G): dx = d_in
    W_ih (None unless need_dx: a loop's input seldom needs one), dh0 = d_rec W_hh (added into
    dh0 where given; None unless need_dh0: a loop's first state), dW_ih = d_inᵀ x,
    dW_hh = d_recᵀ h0."""
    if need_dh0:
        dh0 = d_rec.mm(w_hh) if dh0 is None else dh0.addmm_(d_rec, w_hh)
    dx = d_in.mm(w_ih) if need_dx else None
    return dx, dh0 if need_dh0 else None, d_in.t().mm(x), d_rec.t().mm(h0)


# the one-off products ------------------------------------------------------------------------


def by_rows(kernel, x: np.ndarray, w: np.ndarray, y: np.ndarray, beta: float) -> None:
    """kernel(x, w, y, beta), a product y = x op w (+ beta y) of one row of y per row of x
    (gemm_wt, gemm_w, packed_wt), with the rows split across torch's threads, each on
    single-threaded BLAS. Not BLAS's own threads: after any parallel region torch's OpenMP
    threads spin for a while, and a BLAS thread sharing their core ran a (6400 x 256) @
    (256 x 1024) product in 15.6 ms against 9.0 ms with them asleep (2 cores)."""
    flops = 2 * x.shape[0] * x.shape[1] * y.shape[1]
    threads.run_jobs(kernel, [(x[a:b], w, y[a:b], beta) for a, b in threads.split(len(x), flops)])


def summed(a: np.ndarray, b: np.ndarray, y: np.ndarray, beta: float) -> None:
    """y (N, K) = a.T @ b + beta * y, a sum over the M rows of a (M, N) and b (M, K), with
    the N rows of y split across torch's threads (see :func:`by_rows`)."""
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    parts = threads.split(a.shape[1], flops)
    threads.run_jobs(gemm_at, [(a[:, n0:n1], b, y[n0:n1], beta) for n0, n1 in parts])


def project_all(
    x: Tensor, w_ih: Tensor, b_ih: Tensor | None, b_hh: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """z = W·x_t + b for all T steps as one (T*B, I) @ (I, G) product: (T, B, G), into out
    (C-contiguous, of the engine's dtype) where given."""
    steps, batch, _ = x.shape
    z = recycled((steps, batch, w_ih.shape[0]), acc(x)) if out is None else out
    zn, beta = z.numpy(), 0.0  # without a bias, z is not read: no pass to fill it
    if b_ih is not None:
        b = b_ih.detach().to(z.dtype)
        zn[:] = (b if b_hh is None else b + b_hh.detach().to(z.dtype)).numpy()
        beta = 1.0
    xn, wn = as_matrix(array(x)), array(w_ih)
    if wn.dtype == np.uint16 and not BF16:  # bf16 without MKL: the packed kernel's products
        by_rows(packed.packed_wt, xn, packed_kept(wn, "input"), as_matrix(zn), beta)
    else:
        by_rows(gemm_wt, xn, wn, as_matrix(zn), beta)
    return z


def project(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """W x_t + bias for all T steps as one product: (T, B, G)."""
    return project_all(x, w_ih, bias, None)


def weight_products(d_in, d_rec, x, h_first, h_rest, w_ih, dx, dw_ih, dw_hh) -> None:
    """dx = d_in W_ih, dW_ih = d_inᵀ x, dW_hh = d_recᵀ [h_first; h_rest] over all T*B rows, in
    one parallel region (each costs 30-70 us of waking and joining torch's threads): each
    thread makes its rows of dx and its rows of dW_ih and dW_hh. That split is kept for
    MKL's bfloat16 bits; float32 and float64 go to :func:`_torch_weight_products`. Arrays:
    d_in (M, G), d_rec (M, G'), x (M, I), h_first (B, P) the states before the first B
    rows, h_rest (M - B, P) those before the others, w_ih (G, I); out dx (M, I) (None: not
    wanted), dw_ih (G, I), dw_hh (G', P)."""
    if d_in.dtype in (np.float32, np.float64):  # not MKL's bf16 bits (uint16)
        _torch_weight_products(d_in, d_rec, x, h_first, h_rest, w_ih, dx, dw_ih, dw_hh)
        return
    m, batch = d_in.shape[0], h_first.shape[0]
    products = 1 if dx is None else 2  # dW_ih, and dx unless not wanted
    flops = 2 * m * (d_in.shape[1] * products * x.shape[1] + d_rec.shape[1] * h_first.shape[1])
    count = min(len(threads.split(d_in.shape[1], flops)), max(1, m))  # (an empty batch: one)
    parts = zip(
        threads.split(m, flops, count),
        threads.split(d_in.shape[1], flops, count),
        threads.split(d_rec.shape[1], flops, count),
        strict=True,
    )
    work = []
    for (r0, r1), (i0, i1), (j0, j1) in parts:
        calls = [] if dx is None else [(gemm_w, (d_in[r0:r1], w_ih, dx[r0:r1], 0.0))]  # dz W
        calls.append((gemm_at, (d_in[:, i0:i1], x, dw_ih[i0:i1], 0.0)))  # dW = Σ dz_tᵀ x_t
        calls.append((gemm_at, (d_rec[:batch, j0:j1], h_first, dw_hh[j0:j1], 0.0)))  # h_0 ..
        if m > batch:  # ... then h_1 .. h_{T-1}
            calls.append((gemm_at, (d_rec[batch:, j0:j1], h_rest, dw_hh[j0:j1], 1.0)))
        work.append(calls)
    threads.run_work(work)


def _torch_weight_products(d_in, d_rec, x, h_first, h_rest, w_ih, dx, dw_ih, dw_hh) -> None:
    """:func:`weight_products` with the weight gradients on torch's matmul (MKL, its own
    threads), written into the given arrays; dx by rows on ours, as there the two were even.

    Each weight gradient is a sum over all T*B rows into a small (G, I) or (G, P) matrix.
    Split by its G rows, each thread's part is a thin product with a long sum, where
    OpenBLAS's transposed-A kernel ran under peak. Measured on 2 threads of an AMD EPYC with
    AVX-512 (Zen 4), dz_tᵀ x_t over K rows, GFLOP/s ours / torch: K 8000, G 256: 62 / 109
    at N = 16, 95 / 157 at N = 64; K 3200, G 512, N 128: 85 / 127; K 800, G 1024, N 256:
    141 / 165. A training step, torch's against ours, interleaved: 0.79x at (500, 16, 16, 64),
    0.92x at (100, 32, 32, 128), 0.98x at (100, 64, 256, 256), (200, 4, 64, 256),
    (50, 128, 512, 512) and the two-layer (35, 20, 200, 200); dx on torch too: 1.00-1.03x."""
    t = torch.from_numpy
    if dx is not None:
        by_rows(gemm_w, d_in, w_ih, dx, 0.0)  # dz W
    batch = h_first.shape[0]
    torch.mm(t(d_in).t(), t(x), out=t(dw_ih))  # dW = Σ dz_tᵀ x_t
    torch.mm(t(d_rec[:batch]).t(), t(h_first), out=t(dw_hh))  # h_0 ..
    if d_rec.shape[0] > batch:  # ... then h_1 .. h_{T-1}
        t(dw_hh).addmm_(t(d_rec[batch:]).t(), t(h_rest))


def product_grads(
    d_in: Tensor, d_rec: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor, need_dx: bool = True
) -> tuple[Tensor | None, Tensor, Tensor]:
    """See :func:`longshort.engine.reference.product_grads` (float32 and float64); dx None
    unless need_dx."""
    dx = x.new_empty(x.shape) if need_dx else None
    dw_ih, dw_hh = torch.empty_like(w_ih), w_ih.new_empty(d_rec.shape[2], h_prev.shape[2])
    hp = array(h_prev)
    weight_products(
        as_matrix(array(d_in)), as_matrix(array(d_rec)), as_matrix(array(x)), hp[0],
        as_matrix(hp[1:]), array(w_ih), None if dx is None else as_matrix(dx.numpy()),
        dw_ih.numpy(), dw_hh.numpy(),
    )  # fmt: skip
    return dx, dw_ih, dw_hh


def input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor, need_dx: bool = True
) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
    """dx = dz W (None unless need_dx), dW_ih = Σ_t dz_tᵀ x_t, dW_hh = Σ_t dz_tᵀ h_{t-1},
    db = Σ_t dz_t: one product each over all T*B rows, in x's dtype. hs (T, B, P) holds
    h_1 .. h_T."""
    acc_dtype, dtype = dz.dtype, x.dtype
    if dtype == torch.bfloat16 and not BF16:  # bf16 without MKL
        if packed.BF16:
            return _bf16_input_and_weight_grads(dz, x, h0, hs, w_ih)
        dz, x, h0, hs, w_ih = dz.to(dtype).float(), x.float(), h0.float(), hs.float(), w_ih.float()
    dz2 = as_matrix(array(dz.to(x.dtype)))
    dx = x.new_empty(x.shape, dtype=acc_dtype) if need_dx else None
    dw_ih = w_ih.new_empty(w_ih.shape, dtype=acc_dtype)
    dw_hh = w_ih.new_empty(dz.shape[2], h0.shape[1], dtype=acc_dtype)
    ins = (dz2, dz2, as_matrix(array(x)), array(h0), as_matrix(array(hs)[:-1]), array(w_ih))
    dx_rows = None if dx is None else as_matrix(dx.numpy())
    weight_products(*ins, dx_rows, dw_ih.numpy(), dw_hh.numpy())
    db = dz.sum(dim=(0, 1))
    return None if dx is None else dx.to(dtype), dw_ih.to(dtype), dw_hh.to(dtype), db.to(dtype)


def _bf16_input_and_weight_grads(
    dz: Tensor, x: Tensor, h0: Tensor, hs: Tensor, w_ih: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`input_and_weight_grads` for bfloat16 on the packed kernel's bf16 products.
    The weight gradients as one product, [x_t | h_{t-1}]ᵀ over all T*B rows times dz packed
    row by row (pack_t): the small operand is transposed, not dz."""
    dtype, n_in = x.dtype, x.shape[2]
    dzb = dz.to(dtype)
    dzn = as_matrix(array(dzb))
    dx = x.new_empty(x.shape, dtype=dz.dtype)
    w_t = packed_kept(array(w_ih.t()), "input")
    by_rows(packed.packed_wt, dzn, w_t, as_matrix(dx.numpy()), 0.0)
    inputs = torch.cat([x, torch.cat([h0[None].to(dtype), hs[:-1]])], dim=2)  # (T, B, I + P)
    dw_t = dz.new_empty(inputs.shape[2], dz.shape[2])  # [dW_ih | dW_hh]ᵀ
    xt = array(inputs.reshape(-1, inputs.shape[2]).t())
    by_rows(packed.packed_wt, xt, packed_kept(dzn, "gradients", rows_of_t=True), dw_t.numpy(), 0.0)
    dw = dw_t.t().to(dtype)
    db = dz.sum(dim=(0, 1))
    return dx.to(dtype), dw[:, :n_in].contiguous(), dw[:, n_in:].contiguous(), db.to(dtype)
