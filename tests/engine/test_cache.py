"""The first compile says so on screen, once, and nothing else; a warm cache says nothing."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import torch, longshort
longshort.RNN(2, 3)(torch.randn(4, 1, 2))
longshort.LSTMCell(2, 3, layer_norm=True)(torch.randn(1, 2))  # inlines activations' loops
print("done")
"""


def _run(cache_dir) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "done"
    return result.stderr


def test_a_cold_cache_announces_the_compile_once_and_a_warm_one_is_silent(tmp_path):
    cold = _run(tmp_path)
    assert cold.count("longshort: compiling the CPU kernels for this CPU, once") == 1, cold
    assert str(tmp_path) in cold
    assert "Warning" not in cold, cold  # numba's NumbaIRAssumptionWarning, a page of it
    assert "compiling" not in _run(tmp_path)
