"""A real program, as a user writes it: one training step of a word-level language model.

Embedding (33,278 words, the WikiText-2 vocabulary size) -> 2-layer LSTM of 200 units with
dropout 0.2 -> linear softmax over the vocabulary, T = 35, B = 20, SGD, the hidden state carried
across batches (detached). The same model with torch.nn.LSTM and with longshort.LSTM, the same
weights and data, steps interleaved; prints the median step time of each and the ratio.

    python benchmarks/client.py [--steps 40] [--rounds 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = torch.randint(0, VOCAB, (STEPS * 200, BATCH))
    theirs = WordLM(nn.LSTM(EMBED, HIDDEN, LAYERS, dropout=0.2))
    ours = WordLM(longshort.LSTM(EMBED, HIDDEN, LAYERS, dropout=0.2))
    ours.load_state_dict(theirs.state_dict())
    runs = {"nn.LSTM": trainer(theirs, data), "longshort.LSTM": trainer(ours, data)}
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
    print(f"word-LM training step (T {STEPS}, B {BATCH}, 2x{HIDDEN}, vocab {VOCAB}), median")
    print(
        f"of {args.rounds} interleaved rounds of {args.steps} steps, "
        f"{torch.get_num_threads()} threads:"
    )
    for name, t in med.items():
        print(f"  {name:15s} {t * 1e3:7.1f} ms")
    print(f"  ratio longshort / nn.LSTM: {med['longshort.LSTM'] / med['nn.LSTM']:.2f}x")


if __name__ == "__main__":
    main()
