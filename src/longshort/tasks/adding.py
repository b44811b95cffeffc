"""The adding problem (Hochreiter & Schmidhuber 1997, in the form of Le, Jaitly & Hinton 2015).

Each step has two channels: a value uniform in [0, 1) and a marker. Exactly two markers are 1,
one in the first half of the sequence and one in the second; the target is the sum of the two
marked values. Predicting 1 always gives MSE = Var(u1 + u2) = 2/12 ≈ 0.167.
"""

from __future__ import annotations

import torch

from longshort.tasks.base import Batch, Task


class Adding(Task):
    name = "adding"
    input_size = 2
    output_size = 1
    metric_name = "mse"
    higher_is_better = False
    baseline = 1 / 6
    baseline_note = "always predict 1: MSE = 2/12"
    solved_at = 0.01

    def __init__(self, seq_len: int) -> None:
        if seq_len < 2:
            raise ValueError(f"Adding: seq_len must be at least 2, got {seq_len}")
        super().__init__(seq_len)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        steps, half = self.seq_len, self.seq_len // 2
        values = torch.rand(size, steps, generator=generator)
        first = torch.randint(0, half, (size,), generator=generator)
        second = torch.randint(half, steps, (size,), generator=generator)
        marks = torch.zeros(size, steps)
        rows = torch.arange(size)
        marks[rows, first] = 1.0
        marks[rows, second] = 1.0
        y = values[rows, first] + values[rows, second]
        return Batch(torch.stack((values, marks), dim=2), y)
