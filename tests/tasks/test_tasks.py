"""Generators' statistics: the documented baselines are what the data gives."""

from __future__ import annotations

import math

import pytest
import torch

from longshort.tasks import Adding, CopyMemory, Sentiment, TemporalOrder, make_task
from longshort.tasks.sentiment import INDEX


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_adding_baseline_and_markers():
    task = Adding(50)
    b = task.batch(20000, gen())
    assert b.x.shape == (20000, 50, 2)
    assert torch.all(b.x[..., 1].sum(1) == 2)
    assert torch.all(b.x[:, :25, 1].sum(1) == 1)  # one marker in each half
    mse_of_one = float(((b.y - 1) ** 2).mean())
    assert abs(mse_of_one - task.baseline) < 0.01
    marked = (b.x[..., 0] * b.x[..., 1]).sum(1)
    torch.testing.assert_close(marked, b.y)


def test_copy_memory_layout_and_baseline():
    task = CopyMemory(30)
    b = task.batch(4000, gen())
    assert b.x.shape == (4000, 50)
    assert torch.equal(b.y[:, -10:], b.x[:, :10])
    assert torch.all(b.x[:, 39] == 9) and torch.all(b.y[:, :-10] == 0)
    # the documented strategy: blanks for sure, then uniform over the 8 symbols
    probs = torch.zeros(50, 10)
    probs[:-10, 0] = 1.0
    probs[-10:, 1:9] = 1 / 8
    ce = -torch.log(probs.clamp_min(1e-12)).gather(1, b.y.T).T.mean()
    assert abs(float(ce) - 10 * math.log(8) / 50) < 1e-4
    assert abs(task.baseline - 10 * math.log(8) / 50) < 1e-12


def test_temporal_order_classes_balanced_and_recoverable():
    task = TemporalOrder(100)
    b = task.batch(8000, gen())
    counts = torch.bincount(b.y, minlength=4).float() / 8000
    assert torch.all((counts - 0.25).abs() < 0.02)
    relevant = b.x >= 6
    assert torch.all(relevant.sum(1) == 2)
    symbols = b.x[relevant].view(-1, 2) - 6
    assert torch.equal(symbols[:, 0] * 2 + symbols[:, 1], b.y)


def test_sentiment_labels_gap_and_baseline():
    task = Sentiment(20)
    words, labels = task.sentences(4000, gen())
    labels = torch.tensor(labels)
    assert abs(float(labels.float().mean()) - 0.5) < 0.03
    negated = torch.tensor(["not" in w for w in words])
    for w in words[:50]:
        k = w.index("was")
        assert len(w) - (k + 2) - 1 == 20  # N fillers between negation slot and verdict
    # the adjective alone (no memory of the negation) predicts at chance
    from longshort.tasks.sentiment import POSITIVE

    adjective_positive = torch.tensor([w[-1] in POSITIVE for w in words])
    assert abs(float((adjective_positive == labels.bool()).float().mean()) - 0.5) < 0.03
    assert torch.equal(adjective_positive != negated, labels.bool())
    b = task.batch(8, gen())
    assert torch.all(b.lengths == torch.tensor([len(w) for w in task.sentences(8, gen())[0]]))
    assert all(
        int(b.x[i, n - 1]) == INDEX[w[-1]]
        for i, (n, w) in enumerate(
            zip(b.lengths.tolist(), task.sentences(8, gen())[0], strict=True)
        )
    )


def test_bad_task_arguments():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        make_task("nope", 10)
    with pytest.raises(ValueError, match="seq_len must be a positive int, got 0"):
        CopyMemory(0)
    with pytest.raises(ValueError, match="at least 20"):
        TemporalOrder(5)


def test_every_task_joins_the_one_registry():
    import longshort.data  # noqa: F401 - defines the real-data tasks
    from longshort.tasks import REGISTRY, TASKS, Task

    assert set(TASKS) < set(REGISTRY)
    assert {"forecast", "classify", "charlm"} < set(REGISTRY)
    assert all(issubclass(cls, Task) for cls in REGISTRY.values())
    with pytest.raises(ValueError, match="made from its data"):
        make_task("forecast", 10)
    with pytest.raises(TypeError, match="taken"):

        class Impostor(Task):
            name = "adding"
