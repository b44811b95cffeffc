"""The compiled engine's σ and tanh (engine/cpu/activations.py) against NumPy's exact ones:
the float32 exp within 3 float32 ulps of 1, the float64 one within a few float64 ulps where
σ and tanh are not saturated, NaN kept, infinities and huge inputs saturated."""

from __future__ import annotations

import re

import numpy as np
import pytest
from numba import njit

from longshort.engine.cpu import gru, lstm, lstm_variant
from longshort.engine.cpu.activations import (
    JIT,
    affine_logistic,
    gate_coefficients,
    gates_inplace,
    sigmoid_into,
    tanh_into,
)

FRESH = {**JIT, "cache": False}  # compiled here, never a cached build of an older source


@njit(**FRESH)
def _gates(z, out, scale, shift, gain):
    affine_logistic(z, out, scale, shift, gain)


@njit(**FRESH)
def _tanh(z, out):
    tanh_into(z, out)


@njit(**FRESH)
def _sigmoid(z, out):
    sigmoid_into(z, out)


def _exact(z: np.ndarray, hidden: int) -> np.ndarray:
    """σ on the i, f, o blocks and tanh on g, in float64 with NumPy."""
    want = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    want[2 * hidden : 3 * hidden] = np.tanh(z[2 * hidden : 3 * hidden].astype(np.float64))
    return want


@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 2.5e-7), (np.float64, 2e-15)])
def test_gates_and_tanh_match_numpy(dtype, tol):
    rng = np.random.default_rng(0)
    hidden = 4096
    z = (rng.standard_normal(4 * hidden) * 12).astype(dtype)  # |z| up to about 50
    out = np.empty_like(z)
    _gates(z, out, *gate_coefficients(hidden, dtype))
    assert np.max(np.abs(out - _exact(z, hidden))) < tol
    _tanh(z, out)
    assert np.max(np.abs(out - np.tanh(z.astype(np.float64)))) < tol
    _sigmoid(z, out)
    assert np.max(np.abs(out - 1.0 / (1.0 + np.exp(-z.astype(np.float64))))) < tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_is_kept_and_huge_inputs_saturate(dtype):
    z = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 800.0, -800.0, 0.0], dtype)
    hidden = z.shape[0]
    zz = np.concatenate([z] * 4)
    out = np.empty_like(zz)
    _gates(zz, out, *gate_coefficients(hidden, dtype))
    sig, tanh = out[:hidden], out[2 * hidden : 3 * hidden]
    assert np.isnan(sig[0]) and np.isnan(tanh[0])
    atol = 1e-37 if dtype == np.float32 else 1e-300  # e^z at the clamp, not 0
    want = np.array([1, 0, 1, 0, 1, 0, 0.5], dtype)
    np.testing.assert_allclose(sig[1:], want, rtol=0, atol=atol)
    np.testing.assert_array_equal(tanh[1:], np.array([1, -1, 1, -1, 1, -1, 0], dtype))


@njit(**FRESH)
def _lstm_row_both_ways(z, bias, c_prev, c, m, scale, shift, gain, tc, dm, dc, dz):
    lstm._cell(z, bias, c_prev, c, m, scale, shift, gain)
    tanh_into(c, tc)
    dm[0] = lstm._cell_grads(z, c_prev, tc, dm, dc, dz)  # stored: a float returned is boxed


@njit(**FRESH)
def _gru_row_both_ways(xb, hwb, gb, h_prev, h, scale, shift, gain, d, dgi, dgh):
    gru._row(xb, hwb, gb, h_prev, h, scale, shift, gain)
    d[0] = gru._row_grads(gb, h_prev, d, dgi, dgh)


@njit(**FRESH)
def _gates_and_stats(z, bias, scale, shift, gain):
    gates_inplace(z, bias, scale, shift, gain)
    bias[0], bias[1] = lstm_variant.row_stats(z)


def test_float32_row_steps_compute_in_float32():
    """numba computes 1 - x or 2 * x in float64 for a float32 x (NumPy's rules): the row
    steps take constants of their dtype, so their compiled code converts nothing to float64
    (layer norm's row statistics only their one scalar 1 / sqrt)."""
    h, f32 = 16, np.float32
    v = lambda n: np.linspace(-1, 1, n).astype(f32)  # noqa: E731
    coef = gate_coefficients(h, f32)
    lstm_args = (v(4 * h), v(4 * h), v(h), v(h), v(h), *coef, v(h), v(h), v(h), v(4 * h))
    _lstm_row_both_ways(*lstm_args)
    gru_coef = tuple(c[: 2 * h] for c in coef)
    gru_rows = (v(h), v(3 * h), v(3 * h))
    _gru_row_both_ways(v(3 * h), v(3 * h), v(4 * h), v(h), v(h), *gru_coef, *gru_rows)
    _gates_and_stats(v(4 * h), v(4 * h), *coef)
    for fn, pattern in (
        (_lstm_row_both_ways, r"fpext"),
        (_gru_row_both_ways, r"fpext"),
        (_gates_and_stats, r"fpext <\d+ x float>"),  # vectors: the loops
    ):
        (ir,) = fn.inspect_llvm().values()
        assert not re.search(pattern + r".* to .*double", ir), fn.__name__
