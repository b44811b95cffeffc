"""Real programs, as users write them: one training step of each, longshort against torch.nn.

- A word-level language model: embedding (33,278 words, the WikiText-2 vocabulary size) ->
  2-layer LSTM of 200 units with dropout 0.2 -> linear softmax over the vocabulary, T = 35,
  B = 20, SGD, the hidden state carried across batches (detached); torch.nn.LSTM against
  longshort.LSTM.
- A hand-written loop over cells (``--cells``), shaped like pytorch/examples'
  time_sequence_prediction: two stacked LSTMCells of 51 units and a linear output, float64,
  97 sine waves of 1,000 points, a 999-step loop, the loss over every step and backward
  through the whole loop; torch.nn.LSTMCell against longshort.LSTMCell.

The same weights and data on both sides, steps interleaved; prints the median step time of each
and the ratio.

    python benchmarks/client.py [--steps 40] [--rounds 3] [--cells]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import longshort

VOCAB, EMBED, HIDDEN, LAYERS, STEPS, BATCH = 33278, 200, 200, 2, 35, 20


class WordLM(nn.Module):
    def __init__(self, lstm: nn.Module):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.drop = nn.Dropout(0.2)
        self.lstm = lstm
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, tokens, state):
        h, state = self.lstm(self.drop(self.embed(tokens)), state)
        return self.out(self.drop(h)), state


def trainer(model: WordLM, data: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = nn.CrossEntropyLoss()
    state = tuple(torch.zeros(LAYERS, BATCH, HIDDEN) for _ in range(2))
    position = 0

    def step() -> None:
        nonlocal state, position
        x = data[position : position + STEPS]
        y = data[position + 1 : position + 1 + STEPS]
        position = (position + STEPS) % (data.shape[0] - STEPS - 1)
        state = tuple(s.detach() for s in state)
        opt.zero_grad()
        logits, state = model(x, state)
        loss = loss_fn(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()

    return step


class SineModel(nn.Module):
    """time_sequence_prediction's Sequence: LSTMCell(1, 51) -> LSTMCell(51, 51) -> Linear."""

    def __init__(self, cell: type[nn.Module]):
        super().__init__()
        self.lstm1, self.lstm2 = cell(1, 51), cell(51, 51)
        self.linear = nn.Linear(51, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = c1 = h2 = c2 = x.new_zeros(x.shape[0], 51)
        outputs = []
        for x_t in x.split(1, dim=1):
            h1, c1 = self.lstm1(x_t, (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))
            outputs.append(self.linear(h2))
        return torch.cat(outputs, dim=1)


def sine_trainer(model: SineModel, data: torch.Tensor):
    def step() -> None:
        model.zero_grad()
        loss = nn.functional.mse_loss(model(data[:, :-1]), data[:, 1:])
        loss.backward()

    return step


def sine_runs() -> tuple[str, dict]:
    steps = torch.arange(1000, dtype=torch.float64)
    shifts = torch.randint(-80, 80, (97, 1), dtype=torch.float64)
    data = torch.sin((steps + shifts) / 20)  # time_sequence_prediction's waves
    theirs = SineModel(nn.LSTMCell).double()
    ours = SineModel(longshort.LSTMCell).double()
    ours.load_state_dict(theirs.state_dict())
    runs = {"nn.LSTMCell": sine_trainer(theirs, data)}
    runs["longshort.LSTMCell"] = sine_trainer(ours, data)
    return "cell loop training step (2 LSTMCells of 51, float64, B 97, 999 steps)", runs


def word_lm_runs() -> tuple[str, dict]:
    data = torch.randint(0, VOCAB, (STEPS * 200, BATCH))
    theirs = WordLM(nn.LSTM(EMBED, HIDDEN, LAYERS, dropout=0.2))
    ours = WordLM(longshort.LSTM(EMBED, HIDDEN, LAYERS, dropout=0.2))
    ours.load_state_dict(theirs.state_dict())
    runs = {"nn.LSTM": trainer(theirs, data), "longshort.LSTM": trainer(ours, data)}
    return f"word-LM training step (T {STEPS}, B {BATCH}, 2x{HIDDEN}, vocab {VOCAB})", runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", action="store_true", help="the cell loop, not the word LM")
    args = parser.parse_args()
    torch.manual_seed(0)
    title, runs = sine_runs() if args.cells else word_lm_runs()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in runs.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{title}, median")
    print(
        f"of {args.rounds} interleaved rounds of {args.steps} steps, "
        f"{torch.get_num_threads()} threads:"
    )
    for name, t in med.items():
        print(f"  {name:20s} {t * 1e3:7.1f} ms")
    (theirs, ours) = med
    print(f"  ratio {ours} / {theirs}: {med[ours] / med[theirs]:.2f}x")


if __name__ == "__main__":
    main()
