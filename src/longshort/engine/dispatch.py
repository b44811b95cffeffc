"""The one place that decides which engine runs a call.

CPU tensors run on the compiled engine (:mod:`longshort.engine.cpu.compiled`) where it supports
the dtype and options, everything else on the reference engine (:mod:`longshort.engine.reference`,
any device). The custom ops' real and fake kernels both ask here, so they agree on what is saved.

Plain calls on CUDA (no trace, no gradient norms, no variant, no ``lengths=``: a module
describes its call as a :class:`LayerCall`) go to PyTorch's own fused recurrent op, cuDNN,
which computes exactly these equations with these weights: :func:`layers_on_native` decides,
:func:`use_native` changes where. One cell step runs as one compiled call where
:func:`step_engine` says so.

Under a ``torch.func`` transform (vmap, grad, jacrev, jvp, functional models in an ensemble)
every call runs the reference engine's stacked steps, plain torch ops that each transform
composes with: :func:`transformed` tells.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch._C._functorch import peek_interpreter_stack

from longshort.engine import gradient_norms, reference
from longshort.engine.types import (
    CompiledEngine,
    Engine,
    LSTMWeights,
    StepEngine,
    VariantWeights,
)

_state: dict = {"cpu": "compiled", "native": ("cuda",)}


class LayerCall(NamedTuple):
    """What a module's call asks of its layers, for :func:`layers_on_native`."""

    lengths: bool  # lengths= or a PackedSequence
    variant: bool  # one of the LSTM's variants
    segment: bool  # recomputation in segments
    check_finite: bool  # a NaN scan after each layer
    trace: bool  # the gates and states returned

    def plain(self) -> bool:
        """Whether PyTorch's fused op computes this call alike: none of the above, and no
        gradient norms being recorded."""
        return not any(self) and not gradient_norms.listening()


def transformed() -> bool:
    """Whether a ``torch.func`` transform is active. Its tensors are wrappers without storage
    that the compiled engine cannot read, and a plain autograd.Function cannot run under it;
    the reference engine's ops can (:func:`longshort.engine.reference.lstm_outputs`)."""
    return peek_interpreter_stack() is not None


def _compiled() -> CompiledEngine:
    """The compiled engine, imported at its first use (it compiles or loads kernels)."""
    if "compiled_module" not in _state:
        from longshort.engine.cpu import compiled

        _state["compiled_module"] = compiled
    return _state["compiled_module"]


def lstm_engine(x: torch.Tensor, w: LSTMWeights) -> Engine:
    """The engine that computes an LSTM layer on x with weights w."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    compiled = _compiled()
    return compiled if compiled.supports_lstm(x, w) else reference


def stack_engine(x: torch.Tensor) -> CompiledEngine | None:
    """The engine that runs a whole unidirectional LSTM stack's forward without a graph
    (inference: no gradient, no trace, the plain LSTM) in one host call, its kernels writing
    the final states in place, or None for the layers one by one: where a cell's step would
    be one call (:func:`_step_call`) and the compiled engine takes the dtype. A one-row
    stream's call spent more on the per-layer host work than ONNX Runtime's whole call."""
    if not _step_call(x):
        return None
    compiled = _compiled()
    return compiled if compiled.supports_stack(x) else None


def step_engine(
    x: torch.Tensor, w: LSTMWeights | VariantWeights | None = None
) -> StepEngine | None:
    """The engine that runs one step of a cell (an LSTMCell's with its weights w, a GRUCell's
    or an RNNCell's with w None) as one compiled call each way, or None for a one-step layer
    instead: on CPU with the compiled engine chosen, float32/float64 without projection
    (``supports_step``, within what the layers' engines take), not under autocast, not being
    compiled, not under a torch.func transform. Asked at every call of a cell: cheap tests
    first."""
    if not _step_call(x):
        return None
    compiled = _compiled()
    return compiled if compiled.supports_step(x, w) else None


def _step_call(x: torch.Tensor) -> bool:
    """Whether a cell's call on x may take a compiled one-call step at all: on CPU with the
    compiled engine chosen, not under a torch.func transform, autocast or torch.compile."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled" or transformed():
        return False
    return not (torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling())


def widened_step(x: torch.Tensor) -> bool:
    """Whether a bfloat16 cell's step runs as the float32 one-call step on float32 copies of
    its tensors, rounded back to bf16 (bf16 storage, float32 arithmetic, as the layers'
    without bf16 products): where :func:`step_engine` would take the float32 call."""
    return x.dtype == torch.bfloat16 and _step_call(x)


def compiled_masks(like: torch.Tensor) -> bool:
    """Whether zoneout's and recurrent dropout's masks for like's dtype and device come from
    the compiled engine's counter-based generator (:mod:`longshort.engine.cpu.random`): on
    CPU in float32/float64, whichever engine runs the loop (both engines then see the same
    masks), except under a torch.func transform (torch.rand there)."""
    return (
        like.device.type == "cpu"
        and like.dtype in (torch.float32, torch.float64)
        and not (transformed())
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


def layers_on_native(device: torch.device, call: LayerCall) -> bool:
    """Whether a layer stack's call runs on PyTorch's fused recurrent op (cuDNN on CUDA)
    instead of an engine: a plain call (:meth:`LayerCall.plain`) on a device that
    :func:`use_native` lists (CUDA unless changed)."""
    return native_device(device) and call.plain() and not torch.compiler.is_compiling()


def native_device(device: torch.device) -> bool:
    """Whether plain calls on this device go to PyTorch's fused op (:func:`use_native`): the
    cheap half of :func:`layers_on_native`, asked first."""
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
