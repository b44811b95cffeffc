"""``longshort classify train``: an LSTM classifier on UEA data or your own sequences."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from longshort.apps.runs import Budget, Session, fit_in, record, test_set_policy
from longshort.data.classification import PUBLISHED, Classification
from longshort.data.sequences import read_file, uea
from longshort.train.model import SequenceModel

BUDGET = Budget(hidden=64, steps=1500, lr=3e-3, batch_size=32)  # the CLI's defaults


def train_classifier(
    dataset: str | None,
    train_file: Path | None,
    test_file: Path | None,
    out: Path,
    budget: Budget = BUDGET,
    session: Session | None = None,
) -> dict[str, object]:
    """Train an LSTM classifier on a UEA data set or your own files (.ts, .npz, .csv) and
    evaluate it on the test split, which chooses nothing (the last weights are kept)."""
    session = session or Session()
    if dataset is not None:
        train, test = uea(dataset)
        source = dataset
    elif train_file is not None and test_file is not None:
        train = read_file(train_file)
        test = read_file(test_file, train.classes)
        source = f"{train_file} / {test_file}"
    else:
        raise ValueError("give --dataset NAME, or both --train FILE and --test FILE")
    budget = replace(budget, policy=test_set_policy(budget.policy, "the official test split"))
    task = Classification(train, test)
    torch.manual_seed(budget.seed)
    size = (task.input_size, budget.hidden, task.output_size)
    model = SequenceModel("lstm", *size, forget_bias=1.0)
    config = {"task": {"task": "classify", "seq_len": task.seq_len}, "classes": train.classes}
    history = fit_in(out, model, task, f"{source}: test accuracy", config, budget, session)
    summary = {
        "dataset": source,
        "train": len(train.y),
        "test": len(test.y),
        "classes": len(train.classes),
        "test_accuracy": history.final_metric,
        "majority_class_accuracy": task.baseline,
        "published": PUBLISHED.get(dataset or "", {}),
        "steps": history.steps[-1],
        "seconds": round(history.seconds, 1),
    }
    record(out, model, config, summary, session.device)
    return summary
