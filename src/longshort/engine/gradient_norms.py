"""Per-step gradient norms, as the handwritten BPTT computes them, for whoever listens.

Inside ``with recording() as records:``, every backward pass of an engine layer appends
``(cell, norms)`` with norms (T, B, 2) for the LSTM (||dL/dh_t||, ||dL/dC_t||) or (T, B, 1)
for the RNN (||dL/dh_t||), in the order autograd runs them: the last layer first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import Tensor

_listeners: list[list[tuple[str, Tensor]]] = []


def record(cell: str, norms: Tensor) -> None:
    for records in _listeners:
        records.append((cell, norms.detach()))


def listening() -> bool:
    """Whether a ``recording()`` block is open (layers then run an engine that records)."""
    return bool(_listeners)


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[str, Tensor]]]:
    records: list[tuple[str, Tensor]] = []
    _listeners.append(records)
    try:
        yield records
    finally:
        _listeners.remove(records)
