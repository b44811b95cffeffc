"""Sequence classification as a task for the shared training loop."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longshort.data.sequences import Sequences
from longshort.tasks.base import Batch, Task

# Published accuracies on the official test split (Fawaz et al. 2019, "Deep learning for time
# series classification: a review"), for the report.
PUBLISHED = {"JapaneseVowels": {"MLP": 0.976, "FCN": 0.993}}


class Classification(Task):
    """Train on random mini-batches of `train`; the metric is accuracy on all of `test`.
    Features are standardised with the training set's mean and deviation (over real steps)."""

    name = "classify"
    readout = "last"
    metric_name = "accuracy"
    higher_is_better = True
    baseline_note = "the most frequent training class"
    solved_at = 1.01  # never stops early: train for the budget

    def __init__(self, train: Sequences, test: Sequences) -> None:
        super().__init__(int(train.x.shape[1]))
        valid = torch.arange(train.x.shape[1])[None, :] < train.lengths[:, None]
        steps = train.x[valid]
        self.mean, self.std = steps.mean(0), steps.std(0).clamp_min(1e-8)
        self.train, self.test = self._scale(train), self._scale(test)
        self.input_size = int(train.x.shape[2])
        self.output_size = len(train.classes)
        majority = int(train.y.bincount().argmax())
        self.baseline = float((test.y == majority).float().mean())

    def _scale(self, data: Sequences) -> Sequences:
        mask = torch.arange(data.x.shape[1])[None, :, None] < data.lengths[:, None, None]
        x = torch.where(mask, (data.x - self.mean) / self.std, 0.0)
        return Sequences(x, data.lengths, data.y, data.classes)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        idx = torch.randint(0, len(self.train.y), (size,), generator=generator)
        return Batch(self.train.x[idx], self.train.y[idx], self.train.lengths[idx])

    def evaluate(self, model: nn.Module, device: str = "cpu") -> float:
        was_training = model.training  # restored after, whatever it was
        model.eval()
        with torch.no_grad():
            pred: Tensor = model(self.test.x.to(device), self.test.lengths.to(device))
        model.train(was_training)
        return float((pred.argmax(-1).cpu() == self.test.y).float().mean())
