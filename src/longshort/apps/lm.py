"""``longshort lm``: train a character language model on text, and sample from it."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from longshort.apps.runs import Budget, Session, fit_in, kind_of, read_config, record
from longshort.data import CharStream, CharVocab, read_texts, shakespeare_corpus, stdlib_corpus
from longshort.train.checkpoint import load
from longshort.train.model import SequenceModel

# the Python API's defaults (the CLI adds patience 5, plateau 2)
BUDGET = Budget(hidden=256, steps=2000, lr=2e-3, batch_size=32, eval_every=200)


def train_lm(
    files: list[Path],
    out: Path,
    corpus_name: str = "stdlib",
    layers: int = 1,
    seq_len: int = 100,
    dropout: float | None = None,
    budget: Budget = BUDGET,
    session: Session | None = None,
) -> dict[str, object]:
    """Train on `files` (UTF-8) or, with none, the Python standard library's own sources.
    dropout None picks one for the corpus size (:func:`default_dropout`)."""
    if dropout is not None and not 0 <= dropout < 1:
        raise ValueError(f"--dropout must be a number in [0, 1), got {dropout}")
    if files:
        text, corpus = read_texts(files)
    elif corpus_name == "shakespeare":
        text, corpus = shakespeare_corpus()
    elif corpus_name == "stdlib":
        text, corpus = stdlib_corpus()
    else:
        raise ValueError(f"unknown corpus {corpus_name!r}; choose stdlib or shakespeare")
    session = session or Session()
    task = CharStream(text, seq_len)
    torch.manual_seed(budget.seed)
    model = SequenceModel(
        "lstm",
        len(task.vocab),
        budget.hidden,
        len(task.vocab),
        tokens=True,
        readout="all",
        num_layers=layers,
        forget_bias=1.0,
        embedding_size=64,
        dropout=default_dropout(len(text)) if dropout is None else dropout,
    )
    config = {"task": {"task": "charlm", "seq_len": seq_len}, "vocab": task.vocab.chars}
    title = "Character LM: validation bits per character"
    history = fit_in(out, model, task, title, config, budget, session)
    summary = {
        "corpus": corpus,
        "vocab_size": len(task.vocab),
        "test_bits_per_char": task.evaluate(model, session.device, split="test"),
        "best_valid_bits_per_char": history.best_metric,
        "best_step": history.best_step,
        "final_valid_bits_per_char": history.final_metric,
        "final_step": history.steps[-1],
        "stopped": history.stopped,
        "uniform_bits_per_char": task.baseline,
        "steps": history.steps[-1],
        "seconds": round(history.seconds, 1),
    }
    record(out, model, config, summary, session.device)
    return summary


def default_dropout(chars: int) -> float:
    """Dropout for a corpus of `chars` characters: a small text is memorised quickly (a 35k
    character licence overfit after 300 steps), a multi-megabyte one is not within the usual
    budgets."""
    if chars < 200_000:
        return 0.3
    return 0.1 if chars < 2_000_000 else 0.0


def sample(
    checkpoint: Path, prime: str, length: int = 300, temperature: float = 0.8, seed: int = 0
) -> str:
    """Continue `prime` by `length` characters drawn at `temperature` (> 0)."""
    if not temperature > 0 or math.isinf(temperature):
        raise ValueError(f"--temperature must be a positive number, got {temperature}")
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"--length must be a whole number of characters >= 0, got {length}")
    if not checkpoint.is_dir():
        raise ValueError(f"{checkpoint}: no such run folder")
    kind = kind_of(read_config(checkpoint))
    if kind != "charlm":
        raise ValueError(
            f"{checkpoint} is not a language model run ("
            + (f"it was trained on the {kind} task" if kind else "its config names no task")
            + "); lm sample needs a folder written by `longshort lm train`"
        )
    model, config = load(checkpoint)
    chars = config.get("vocab")
    if not isinstance(chars, str) or len(chars) != model.config["input_size"]:
        raise ValueError(f"{checkpoint}/config.json: 'vocab' does not match the model")
    vocab = CharVocab("")
    vocab.chars, vocab.index = chars, {c: i for i, c in enumerate(chars)}
    unknown = sorted({c for c in prime if c not in vocab.index or c == "\0"})
    if unknown:
        raise ValueError(
            f"--prime: characters the model never saw in training: "
            f"{', '.join(map(repr, unknown))}; it knows {len(chars) - 1} characters "
            f"({chars[1:81]!r}{'...' if len(chars) > 81 else ''}); leave those out of the prime"
        )
    gen = torch.Generator().manual_seed(seed)
    ids = vocab.encode(prime or "\n")[None]
    out: list[int] = []
    model.eval()
    with torch.no_grad():
        logits, state = model(ids, state=None, return_state=True)
        for _ in range(length):
            probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]]), state=state, return_state=True)
    return prime + vocab.decode(out)
