"""The compiled engine's σ and tanh (engine/cpu/activations.py) against NumPy's exact ones:
the float32 exp within 3 float32 ulps of 1, the float64 one within a few float64 ulps where
σ and tanh are not saturated, NaN kept, infinities and huge inputs saturated."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from longshort.engine.cpu.activations import (
    JIT,
    affine_logistic,
    gate_coefficients,
    sigmoid_into,
    tanh_into,
)


@njit(**JIT)
def _gates(z, out, scale, shift, gain, bits):
    affine_logistic(z, out, scale, shift, gain, bits, bits.view(np.float32))


@njit(**JIT)
def _tanh(z, out, bits):
    tanh_into(z, out, bits, bits.view(np.float32))


@njit(**JIT)
def _sigmoid(z, out, bits):
    sigmoid_into(z, out, bits, bits.view(np.float32))


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
    out, bits = np.empty_like(z), np.empty(4 * hidden, np.int32)
    _gates(z, out, *gate_coefficients(hidden, dtype), bits)
    assert np.max(np.abs(out - _exact(z, hidden))) < tol
    _tanh(z, out, bits)
    assert np.max(np.abs(out - np.tanh(z.astype(np.float64)))) < tol
    _sigmoid(z, out, bits)
    assert np.max(np.abs(out - 1.0 / (1.0 + np.exp(-z.astype(np.float64))))) < tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_is_kept_and_huge_inputs_saturate(dtype):
    z = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 800.0, -800.0, 0.0], dtype)
    hidden = z.shape[0]
    zz = np.concatenate([z] * 4)
    out, bits = np.empty_like(zz), np.empty(4 * hidden, np.int32)
    _gates(zz, out, *gate_coefficients(hidden, dtype), bits)
    sig, tanh = out[:hidden], out[2 * hidden : 3 * hidden]
    assert np.isnan(sig[0]) and np.isnan(tanh[0])
    atol = 1e-37 if dtype == np.float32 else 1e-300  # e^z at the clamp, not 0
    want = np.array([1, 0, 1, 0, 1, 0, 0.5], dtype)
    np.testing.assert_allclose(sig[1:], want, rtol=0, atol=atol)
    np.testing.assert_array_equal(tanh[1:], np.array([1, -1, 1, -1, 1, -1, 0], dtype))
