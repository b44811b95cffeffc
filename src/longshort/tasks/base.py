"""What every task provides: seeded batches, a loss, a metric and its documented baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn


@dataclass
class Batch:
    """x: (B, T, F) float features or (B, T) int64 tokens; y: targets; lengths: (B,) or None."""

    x: Tensor
    y: Tensor
    lengths: Tensor | None = None


class TrainingTask(Protocol):
    """What the training loop (:func:`longshort.train.fit`) asks of a task. :class:`Task`
    implements it for the synthetic tasks; the real-data tasks of :mod:`longshort.data`
    (character streams, labelled sequences, forecasting windows) subclass it."""

    name: str
    metric_name: str
    higher_is_better: bool
    baseline: float
    stateful: bool  # a stream: the recurrent state is carried from batch to batch
    position: int  # where a stream is, saved with the training state

    def batch(self, size: int, generator: torch.Generator) -> Batch: ...

    def loss(self, pred: Tensor, y: Tensor) -> Tensor: ...

    def metric(self, pred: Tensor, y: Tensor) -> float: ...

    def evaluate(self, model: nn.Module, device: str = "cpu") -> float | None: ...

    def solved(self, metric: float) -> bool: ...


REGISTRY: dict[str, type[Task]] = {}


class Task:
    """A seeded generator of batches with a loss, a metric and a baseline.

    Every subclass with a name joins :data:`REGISTRY` when it is defined: the synthetic tasks
    here and the real-data tasks of :mod:`longshort.data` alike (two of one name are refused).

    Subclasses set: name, input_size (features, or vocabulary size when ``tokens``), output_size,
    readout ("last": predict from the last step; "all": at every step), metric_name,
    higher_is_better, baseline (the metric of the trivial strategy named in baseline_note) and
    solved_at (the threshold that counts as solved).
    """

    name: str
    input_size: int
    output_size: int
    tokens: bool = False
    readout: str = "last"
    metric_name: str
    higher_is_better: bool
    baseline: float
    baseline_note: str
    solved_at: float
    # A stream read in order, chunk after chunk: the trainer carries the recurrent state from
    # one batch into the next (truncated BPTT) and saves `position` with the training state.
    stateful: bool = False
    position: int = 0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in REGISTRY and REGISTRY[name] is not cls:
            taken = REGISTRY[name].__qualname__
            raise TypeError(f"task name {name!r} of {cls.__qualname__} is taken by {taken}")
        REGISTRY[name] = cls

    def __init__(self, seq_len: int) -> None:
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(
                f"{type(self).__name__}: seq_len must be a positive int, got {seq_len!r}"
            )
        self.seq_len = seq_len

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.output_size == 1:
            return nn.functional.mse_loss(pred.squeeze(-1), y)
        return nn.functional.cross_entropy(pred.reshape(-1, self.output_size), y.reshape(-1))

    def metric(self, pred: Tensor, y: Tensor) -> float:
        """The task's metric (MSE, accuracy or cross-entropy) on one batch."""
        if self.metric_name == "accuracy":
            return float((pred.argmax(-1) == y).float().mean())
        return float(self.loss(pred, y))

    def evaluate(self, model: nn.Module, device: str = "cpu") -> float | None:
        """The task's own held-out evaluation, or None to let the trainer use held-out
        batches of :meth:`batch` (the synthetic tasks)."""
        return None

    def solved(self, metric: float) -> bool:
        return metric >= self.solved_at if self.higher_is_better else metric <= self.solved_at

    def describe(self) -> dict[str, object]:
        return {
            "task": self.name,
            "seq_len": self.seq_len,
            "metric": self.metric_name,
            "baseline": self.baseline,
            "baseline_note": self.baseline_note,
            "solved_at": self.solved_at,
        }
