"""Which kernels run a call: the compiled CPU engine where it applies, else the reference."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

import torch

from longshort.engine import reference

_CPU_DTYPES = (torch.float32, torch.float64)
_state = {"cpu": "compiled"}


def kernels(x: torch.Tensor) -> ModuleType:
    """The module whose functions compute this call: ``cpu`` or ``reference``."""
    if x.device.type != "cpu" or _state["cpu"] != "compiled":
        return reference
    if x.dtype in _CPU_DTYPES:
        from longshort.engine import cpu

        return cpu
    if x.dtype == torch.bfloat16:
        from longshort.engine import cpu

        return cpu if cpu.BF16 else reference
    return reference


def saved_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the gates and cell states an engine saves for x: float32 when the compiled
    engine runs bfloat16 (it keeps its state in float32), else x's."""
    if x.dtype == torch.bfloat16 and kernels(x) is not reference:
        return torch.float32
    return x.dtype


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
