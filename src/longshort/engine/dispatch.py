"""The one place that decides which engine runs a call.

CPU tensors run on the compiled engine (:mod:`longshort.engine.cpu.compiled`) where it supports
the dtype and options, everything else on the reference engine (:mod:`longshort.engine.reference`,
any device). The custom ops' real and fake kernels both ask here, so they agree on what is saved.

Plain runs on CUDA (the modules decide what is plain: no trace, no gradient norms, no variant,
no ``lengths=``) go to PyTorch's own fused recurrent op, cuDNN, which computes exactly these
equations with these weights; :func:`native_layers` says where, :func:`use_native` changes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from longshort.engine import reference
from longshort.engine.types import Engine, LSTMWeights, VariantWeights

_state: dict = {"cpu": "compiled", "native": ("cuda",)}


def _compiled() -> Engine:
    from longshort.engine.cpu import compiled

    return compiled


def lstm_engine(x: torch.Tensor, w: LSTMWeights) -> Engine:
    """The engine that computes an LSTM layer on x with weights w."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    compiled = _compiled()
    return compiled if compiled.supports_lstm(x, w) else reference


def compiled_step():
    """The compiled engine, for :func:`step_on_compiled`'s calls."""
    return _compiled()


def step_on_compiled(x: torch.Tensor, w: LSTMWeights | None = None) -> bool:
    """Whether one LSTMCell step (w given) or RNNCell step (w None) runs the compiled engine's
    one-call step: the compiled engine chosen for x, float32/float64 without projection, not
    autocast, not being compiled."""
    chosen = rnn_engine(x) if w is None else lstm_engine(x, w)
    return (
        x.dtype in (torch.float32, torch.float64)
        and (w is None or w.w_hr is None)
        and chosen is not reference
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def variant_engine(x: torch.Tensor, w: VariantWeights) -> Engine:
    """The engine that runs the loop of a variant LSTM layer on x with weights w."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    compiled = _compiled()
    return compiled if compiled.supports_variant(x, w) else reference


def rnn_engine(x: torch.Tensor) -> Engine:
    """The engine that computes a vanilla RNN layer on x."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    compiled = _compiled()
    return compiled if compiled.supports_rnn(x) else reference


def gru_engine(x: torch.Tensor) -> Engine:
    """The engine that computes a GRU layer on x."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    compiled = _compiled()
    return compiled if compiled.supports_gru(x) else reference


def cpu_engine() -> str:
    """The engine CPU tensors use now: ``"compiled"`` (default) or ``"reference"``."""
    return _state["cpu"]


@contextlib.contextmanager
def use_cpu_engine(name: str) -> Iterator[None]:
    """Run CPU calls in the block on ``"compiled"`` or ``"reference"`` kernels."""
    if name not in ("compiled", "reference"):
        raise ValueError(f"use_cpu_engine: name must be 'compiled' or 'reference', got {name!r}")
    old, _state["cpu"] = _state["cpu"], name
    try:
        yield
    finally:
        _state["cpu"] = old


def native_layers(device: torch.device) -> bool:
    """Whether plain runs on this device go to PyTorch's fused recurrent op (cuDNN on CUDA)."""
    return device.type in _state["native"]


@contextlib.contextmanager
def use_native(device_types: tuple[str, ...]) -> Iterator[None]:
    """Send plain runs on these device types to PyTorch's fused op in the block; () for none.
    ("cpu",) lets the CPU tests check the CUDA path's dispatch against oneDNN's op."""
    if not isinstance(device_types, tuple) or not all(isinstance(d, str) for d in device_types):
        raise TypeError(
            f"use_native: device_types must be a tuple of device type names such as ('cuda',), "
            f"got {device_types!r}"
        )
    old, _state["native"] = _state["native"], tuple(device_types)
    try:
        yield
    finally:
        _state["native"] = old
