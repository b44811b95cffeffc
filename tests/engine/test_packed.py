"""The packed per-step product (engine/cpu/packed.py) against NumPy's matmul."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longshort.engine.cpu import packed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 9, 16])
@pytest.mark.parametrize(
    ("k", "n"),
    [(1, 1), (7, 13), (32, 128), (51, 204), (64, 260), (300, 70), (33, 84), (17, 104), (9, 50)],
)  # k = 300: blocks of KC = 128 panel rows; n: last panels of 1 to 4 vectors, whole or not
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_product_matches_numpy(dtype, rows, k, n, beta):
    rng = np.random.default_rng(rows * 1000 + k + n)
    x = rng.standard_normal((rows, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    y = rng.standard_normal((rows, n)).astype(dtype)
    expected = x.astype(np.float64) @ w.T.astype(np.float64) + beta * y
    packed.packed_wt(x, packed.pack(w), y, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol * k)


def test_strided_rows_and_columns_past_n_untouched():
    """x and y as row slices of wider arrays (the loops pass z[t, b0:b1] and h[b0:b1]): the
    product reads and writes only their columns."""
    rng = np.random.default_rng(0)
    x_wide = rng.standard_normal((6, 40)).astype(np.float32)
    y_wide = rng.standard_normal((6, 90)).astype(np.float32)
    w = rng.standard_normal((70, 24)).astype(np.float32)
    x, y = x_wide[:, 3:27], y_wide[:, 10:80]
    before = y_wide.copy()
    expected = x @ w.T + y
    packed.packed_wt(x, packed.pack(w), y, 1.0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y_wide[:, :10], before[:, :10])
    np.testing.assert_array_equal(y_wide[:, 80:], before[:, 80:])


def test_pack_layout():
    w = np.arange(3 * 5, dtype=np.float32).reshape(3, 5) + 1
    p = packed.pack(w)
    width = packed.panel_width(np.float32)
    assert p.shape == (1, 5, width)
    np.testing.assert_array_equal(p[0, :, :3], w.T)
    assert not p[0, :, 3:].any()


def test_nan_propagates():
    x = np.ones((2, 4), np.float32)
    w = np.ones((3, 4), np.float32)
    w[1, 2] = np.nan
    y = np.zeros((2, 3), np.float32)
    packed.packed_wt(x, packed.pack(w), y, 0.0)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()


def _bf16_bits(t):
    return t.view(torch.int16).numpy().view(np.uint16)


@pytest.mark.skipif(not packed.BF16, reason="needs a CPU with AVX512-BF16")
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 6, 9])
@pytest.mark.parametrize(
    ("k", "n"), [(1, 1), (7, 13), (32, 128), (51, 204), (64, 260), (601, 70)]
)  # k = 601: blocks of 2 KC k's, the last odd
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_bf16_product_matches_float_products_of_bf16_values(rows, k, n, beta):
    """bf16 operands, float32 products and sums: against float64 products of the same
    bf16-rounded values (odd k pads the last pair with 0)."""
    gen = torch.Generator().manual_seed(rows * 1000 + k + n)
    x = torch.randn(rows, k, generator=gen).bfloat16()
    w = torch.randn(n, k, generator=gen).bfloat16()
    y = torch.randn(rows, n, generator=gen).numpy()
    expected = x.double().numpy() @ w.double().numpy().T + beta * y
    packed.packed_wt(_bf16_bits(x), packed.pack(_bf16_bits(w)), y, beta)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * k)


def test_pack_t_of_bf16_is_pack_of_the_transpose():
    a = np.arange(7 * 70, dtype=np.uint16).reshape(7, 70)
    np.testing.assert_array_equal(packed.pack_t(a), packed.pack(np.ascontiguousarray(a.T)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_t_is_pack_of_the_transpose(dtype):
    a = np.arange(7 * 70, dtype=dtype).reshape(7, 70)
    np.testing.assert_array_equal(packed.pack_t(a), packed.pack(np.ascontiguousarray(a.T)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_pair_is_pack_of_the_joined_matrix_into_a_used_buffer(dtype):
    a = np.arange(70 * 5, dtype=dtype).reshape(70, 5)
    b = -np.arange(70 * 9, dtype=dtype).reshape(70, 9)
    want = packed.pack(np.hstack([a, b]))
    used = np.full_like(want, np.nan)  # a kept buffer's old content must not remain
    np.testing.assert_array_equal(packed.pack_pair(a, b, used), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("b_cols", [0, 5])
def test_pack_rows_is_pack_of_the_chosen_rows_into_a_used_buffer(dtype, b_cols):
    """The unit split's threads pack their rows of U (training) or of [W_ih | U] (inference),
    one slice of each gate's block."""
    a = np.arange(160 * 7, dtype=dtype).reshape(160, 7)
    b = -np.arange(160 * b_cols, dtype=dtype).reshape(160, b_cols)
    rows = np.concatenate([np.arange(g * 40 + 5, g * 40 + 23) for g in range(4)])
    want = packed.pack(np.ascontiguousarray(np.hstack([a, b])[rows]))
    used = np.full_like(want, np.nan)
    packed.pack_rows(a, b, rows, used)
    np.testing.assert_array_equal(used, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("transposed", [False, True])
def test_packing_into_a_used_buffer_writes_every_element(dtype, transposed):
    """The compiled engine packs into buffers kept across calls: padding included, nothing of
    the buffer's old content may remain."""
    a = (np.arange(13 * 71) % 251).astype(dtype).reshape(13, 71)
    fn = packed.pack_t if transposed else packed.pack
    fresh = fn(a)
    used = np.full_like(fresh, 7)
    np.testing.assert_array_equal(fn(a, used), fresh)
    assert not fresh[-1, :, (71 if transposed else 13) % fresh.shape[2] :].any()


_OTHER_CPU = """
import numpy as np
from longshort.engine.cpu import packed
assert (packed.VECTOR_BYTES, packed.NV) == ({shape}), (packed.VECTOR_BYTES, packed.NV)
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    for m, k, n in ((1, 1, 1), (5, 7, 13), (9, 300, 70), (16, 128, 512)):
        x, w = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((n, k)).astype(dtype)
        y = rng.standard_normal((m, n)).astype(dtype)
        want = x @ w.T + y
        packed.packed_wt(x, packed.pack(w), y, 1.0)
        assert np.allclose(y, want, rtol=1e-4, atol=1e-4), (dtype, m, k, n)
print("ok")
"""


@pytest.mark.parametrize(
    ("env", "shape"),
    [
        ({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+sse4.2"}, "32, 3"),
        ({"NUMBA_CPU_NAME": "generic"}, "16, 4"),
        ({"NUMBA_CPU_NAME": "haswell"}, "host"),
    ],
)
def test_kernel_for_cpus_without_avx512(env, shape):
    """The vector shapes for AVX2 machines and for a generic build, compiled in a fresh
    process (numba caches per CPU, so these never mix with the host's kernels). A CPU name
    alone keeps the host's features in numba, and so the host's kernel here: a 16-byte kernel
    beside numba's AVX-512 loops was what NUMBA_CPU_NAME=haswell gave on a Zen 4."""
    import os
    import subprocess
    import sys

    if shape == "host":
        if os.environ.get("NUMBA_CPU_FEATURES") is not None:
            pytest.skip("this process's features are not the host's")
        shape = f"{packed.VECTOR_BYTES}, {packed.NV}"
    code = _OTHER_CPU.replace("{shape}", shape)
    run = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint32])
def test_aligned_empty_puts_every_buffer_on_a_cache_line(dtype):
    """Packed weights, kept buffers and loop scratch start at a multiple of 64 bytes (NumPy's
    own arrays at 16 make a vector load span two lines). Many sizes: NumPy's placement would
    pass for some by chance, not for all."""
    from longshort.engine.cpu import host

    arrays = [packed.aligned_empty((rows, 7), dtype) for rows in range(1, 40)]
    arrays += [packed.pack(np.ones((n, 5), np.float32)) for n in range(1, 20)]
    arrays += [host.kept(f"test-{n}", (n, 3), dtype) for n in range(1, 20)]
    assert all(a.ctypes.data % packed.ALIGN == 0 for a in arrays)
    a = packed.aligned_empty((3, 5, 2), dtype)
    assert a.shape == (3, 5, 2) and a.dtype == dtype and a.flags.c_contiguous
    a[...] = 1
    assert a.sum() == 30
