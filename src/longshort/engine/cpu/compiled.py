"""The compiled CPU engine: the :class:`longshort.engine.types.Engine` functions of
:mod:`longshort.engine.reference`, gathered from the cells' modules (:mod:`.lstm`, :mod:`.gru`,
:mod:`.rnn`, :mod:`.lstm_variant`), each of which holds a cell's kernels and their host code.

The loops split the batch rows across threads once per call (:mod:`.threads`), or, for an
LSTM with at most two rows a thread and weights that fill a core's L2, the hidden units
(:func:`.lstm.lstm_forward_units`, :func:`.lstm.lstm_infer_units`, and BPTT's where the rows
would leave a thread idle; one barrier a step: :mod:`.sync`, chosen by
:func:`.threads.split_units`); each thread's
per-step recurrent product runs on :mod:`.packed`'s micro-kernel, on weights packed once per
call. The large products (input projections of all steps, weight and input gradients over all
T*B rows) go to one BLAS (:mod:`.blas`), split across the same threads (:mod:`.host`). Compiled
code is cached on disk by numba: only a first process compiles (:mod:`.cache`).

bfloat16: the products take bf16 operands and accumulate in float32. The loops' and the input
projection's run on :mod:`.packed`'s AVX512-BF16 kernel where the CPU has it, the gradients
as float32 products of the bf16 values; with ``longshort[mkl]`` installed, MKL's bf16 GEMM
(AMX where the CPU has it) runs those. The gates, the cell state and the recurrent state stay
float32; only the layer's outputs and gradients are rounded back to bf16.
:mod:`longshort.engine.dispatch` sends what this engine does not run (bf16 with projection,
bf16 variants and the RNN in bf16) to the reference engine.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longshort.engine.cpu import cache

cache.refresh()  # before any kernel module is imported: numba reads its cache at import
cache.announce_compiles()

from longshort.engine.cpu.blas import BF16  # noqa: E402
from longshort.engine.cpu.gru import (  # noqa: E402
    gru_backward,
    gru_forward,
    gru_step,
    gru_step_backward,
)
from longshort.engine.cpu.host import BF16_PRODUCTS, DTYPES, product_grads, project  # noqa: E402
from longshort.engine.cpu.lstm import (  # noqa: E402
    lstm_backward,
    lstm_forward,
    lstm_infer,
    lstm_stack_infer,
    lstm_step,
    lstm_step_backward,
)
from longshort.engine.cpu.lstm_variant import (  # noqa: E402
    variant_backward,
    variant_forward,
    variant_infer,
)
from longshort.engine.cpu.rnn import (  # noqa: E402
    rnn_backward,
    rnn_forward,
    rnn_step,
    rnn_step_backward,
)
from longshort.engine.cpu.variant_step import variant_step, variant_step_backward  # noqa: E402
from longshort.engine.types import LSTMWeights, VariantWeights  # noqa: E402

__all__ = [  # the Engine, StepEngine and CompiledEngine protocols' members (engine/types.py)
    "BF16",
    "BF16_PRODUCTS",
    "gru_backward",
    "gru_forward",
    "gru_step",
    "gru_step_backward",
    "lstm_backward",
    "lstm_forward",
    "lstm_infer",
    "lstm_stack_infer",
    "lstm_step",
    "lstm_step_backward",
    "name",
    "normalises_input",
    "product_grads",
    "project",
    "rnn_backward",
    "rnn_forward",
    "rnn_step",
    "rnn_step_backward",
    "saved_dtype",
    "supports_gru",
    "supports_lstm",
    "supports_rnn",
    "supports_stack",
    "supports_step",
    "supports_variant",
    "variant_backward",
    "variant_forward",
    "variant_infer",
    "variant_step",
    "variant_step_backward",
]

name = "compiled"
normalises_input = True  # layer norm's W x_t normalised in the variant loops, both ways


def supports_lstm(x: Tensor, w: LSTMWeights) -> bool:
    """float32 and float64; bfloat16 without projection: on bf16 products where the CPU has
    them (the packed kernel's AVX512-BF16 or MKL's), else in float32 (bf16 storage)."""
    if x.dtype == torch.bfloat16:
        return w.w_hr is None
    return x.dtype in DTYPES


def supports_variant(x: Tensor, w: VariantWeights) -> bool:
    """float32 and float64, with or without projection."""
    return x.dtype in DTYPES


def supports_rnn(x: Tensor) -> bool:
    return x.dtype in DTYPES


def supports_gru(x: Tensor) -> bool:
    return x.dtype in DTYPES


def supports_stack(x: Tensor) -> bool:
    """Whether a unidirectional LSTM stack without projection runs its no-graph forward as
    :func:`.lstm.lstm_stack_infer`: float32/float64 (bf16 goes layer by layer)."""
    return x.dtype in DTYPES


def supports_step(x: Tensor, w: LSTMWeights | VariantWeights | None = None) -> bool:
    """Whether one LSTMCell step (w given, its variants' too), GRUCell or RNNCell step (w None)
    runs as one compiled call: float32/float64 without projection."""
    return x.dtype in DTYPES and (w is None or w.w_hr is None)


def saved_dtype(x: Tensor) -> torch.dtype:
    """float32 for bfloat16 input (the state is kept in float32), else x's dtype."""
    return torch.float32 if x.dtype == torch.bfloat16 else x.dtype
