"""Temporal order (Hochreiter & Schmidhuber 1997, experiment 6a).

Tokens: E (start), B (end), distractors a, b, c, d and the relevant symbols X, Y. Two relevant
symbols appear at random positions in [0.1 T, 0.2 T) and [0.5 T, 0.6 T); every other position
holds a distractor. The class is their order: XX, XY, YX or YY. Chance accuracy: 25%.
"""

from __future__ import annotations

import torch

from longshort.tasks.base import Batch, Task

START, END, X, Y = 0, 1, 6, 7  # 2..5 are the distractors a, b, c, d


class TemporalOrder(Task):
    name = "temporal-order"
    input_size = 8
    output_size = 4
    tokens = True
    metric_name = "accuracy"
    higher_is_better = True
    baseline = 0.25
    baseline_note = "chance among the 4 orders"
    solved_at = 0.95

    def __init__(self, seq_len: int) -> None:
        if seq_len < 20:
            raise ValueError(f"TemporalOrder: seq_len must be at least 20, got {seq_len}")
        super().__init__(seq_len)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        steps = self.seq_len
        x = torch.randint(2, 6, (size, steps), generator=generator)
        x[:, 0], x[:, -1] = START, END
        rows = torch.arange(size)
        p1 = torch.randint(
            steps // 10, max(steps // 5, steps // 10 + 1), (size,), generator=generator
        )
        p2 = torch.randint(
            steps // 2, max(6 * steps // 10, steps // 2 + 1), (size,), generator=generator
        )
        y = torch.randint(0, 4, (size,), generator=generator)
        x[rows, p1] = X + y // 2
        x[rows, p2] = X + y % 2
        return Batch(x, y)
