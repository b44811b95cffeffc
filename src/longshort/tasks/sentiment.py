"""Long-range sentiment: the verdict's meaning depends on a word far back (a "not" many filler
words before the adjective), the kind of dependency a vanilla RNN loses.

Sentences read "the <movie> movie was [not] <N filler words> <adjective>", for example
"the jurassic park movie was not , as my friends who saw it twice said , entertaining". The
label is positive when the adjective is positive and no "not" came after "was", or when a
negative adjective was negated. The negation sits N words before the adjective, so a model must
carry it across the gap, and N sets the gap. Without that memory, the adjective alone gives 50%
(the baseline: negation is 50/50 and independent). Adjectives are positive 80% of the time, so
remembering the negation alone already gives 80%, a signal to learn from; both give 100%.
"""

from __future__ import annotations

import torch

from longshort.tasks.base import Batch, Task

MOVIES = ["jurassic park", "titanic", "alien", "jaws", "casablanca", "vertigo"]
FILLER = [
    "as",
    "my",
    "friends",
    "who",
    "saw",
    "it",
    "twice",
    "said",
    ",",
    "honestly",
    "after",
    "a",
    "long",
    "queue",
    "and",
    "popcorn",
    "the",
    "critics",
    "wrote",
    "that",
]
POSITIVE = ["entertaining", "brilliant", "moving", "fun"]
NEGATIVE = ["boring", "dull", "awful", "tedious"]
POSITIVE_SHARE = 0.8  # of adjectives; negation is 50/50 and independent
VOCAB = [
    "<pad>",
    "the",
    "movie",
    "was",
    "not",
    *sorted({w for m in MOVIES for w in m.split()}),
    *FILLER,
    *POSITIVE,
    *NEGATIVE,
]
VOCAB = list(dict.fromkeys(VOCAB))
INDEX = {w: i for i, w in enumerate(VOCAB)}


class Sentiment(Task):
    """seq_len is N, the number of filler words between the negation slot and the verdict."""

    name = "sentiment"
    input_size = len(VOCAB)
    output_size = 2
    tokens = True
    metric_name = "accuracy"
    higher_is_better = True
    baseline = 0.5
    baseline_note = "the adjective without its negation: 50%"
    solved_at = 0.95

    def sentences(self, size: int, generator: torch.Generator) -> tuple[list[list[str]], list[int]]:
        """`size` sentences as words, and their labels (1 positive, 0 negative)."""
        n = self.seq_len
        negated = torch.randint(2, (size,), generator=generator).tolist()
        positive = (torch.rand(size, generator=generator) < POSITIVE_SHARE).tolist()
        movie = torch.randint(len(MOVIES), (size,), generator=generator).tolist()
        fill = torch.randint(len(FILLER), (size, n + 1), generator=generator).tolist()
        adjective = torch.randint(len(POSITIVE), (size,), generator=generator).tolist()
        words, labels = [], []
        for k in range(size):
            sentence = ["the", *MOVIES[movie[k]].split(), "movie", "was"]
            sentence += ["not"] if negated[k] else [FILLER[fill[k][n]]]
            sentence += [FILLER[j] for j in fill[k][:n]]
            sentence.append((POSITIVE if positive[k] else NEGATIVE)[adjective[k]])
            words.append(sentence)
            labels.append(int(positive[k] != negated[k]))
        return words, labels

    def encode(self, words: list[str], length: int) -> torch.Tensor:
        """Token ids of one sentence, padded with 0 to `length`."""
        return torch.tensor([INDEX[w] for w in words] + [0] * (length - len(words)))

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        words, labels = self.sentences(size, generator)
        longest = max(len(w) for w in words)
        x = torch.stack([self.encode(w, longest) for w in words])
        return Batch(x, torch.tensor(labels), torch.tensor([len(w) for w in words]))
