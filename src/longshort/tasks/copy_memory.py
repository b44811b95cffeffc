"""Copy memory (Hochreiter & Schmidhuber 1997; the form of Arjovsky, Shah & Bengio 2016).

Tokens 0 is blank, 1..8 are symbols, 9 is the delimiter. Input: 10 random symbols, T blanks,
the delimiter, 9 more blanks (length T + 20). Target: blanks, then the 10 symbols in the last
10 steps. Predicting blanks and then uniformly among the 8 symbols gives a mean cross-entropy of
10 ln 8 / (T + 20).
"""

from __future__ import annotations

import math

import torch

from longshort.tasks.base import Batch, Task

SYMBOLS, RECALL, BLANK, DELIMITER = 8, 10, 0, 9


class CopyMemory(Task):
    name = "copy"
    input_size = 10
    output_size = 10
    tokens = True
    readout = "all"
    metric_name = "cross-entropy"
    higher_is_better = False
    baseline_note = "blanks, then a uniform guess among 8 symbols: 10 ln 8 / (T + 20)"

    def __init__(self, seq_len: int) -> None:
        super().__init__(seq_len)
        self.baseline = RECALL * math.log(SYMBOLS) / (seq_len + 2 * RECALL)
        self.solved_at = 0.1 * self.baseline

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        total = self.seq_len + 2 * RECALL
        symbols = torch.randint(1, SYMBOLS + 1, (size, RECALL), generator=generator)
        x = torch.full((size, total), BLANK, dtype=torch.int64)
        x[:, :RECALL] = symbols
        x[:, self.seq_len + RECALL - 1] = DELIMITER
        y = torch.full((size, total), BLANK, dtype=torch.int64)
        y[:, -RECALL:] = symbols
        return Batch(x, y)
