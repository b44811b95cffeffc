"""``longshort classify train``: an LSTM classifier on UEA data or your own sequences."""

from __future__ import annotations

from pathlib import Path

import torch

from longshort.apps.runs import fit_in, record, test_set_policy
from longshort.data.classification import PUBLISHED, Classification
from longshort.data.sequences import read_file, uea
from longshort.train import Policy
from longshort.train.model import SequenceModel


def train_classifier(
    dataset: str | None,
    train_file: Path | None,
    test_file: Path | None,
    out: Path,
    hidden: int = 64,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    eval_every: int = 100,
    max_seconds: float | None = None,
    progress: bool = True,
    resume: bool = False,
    device: str = "cpu",
    force: bool = False,
    policy: Policy | None = None,
) -> dict[str, object]:
    if dataset is not None:
        train, test = uea(dataset)
        source = dataset
    elif train_file is not None and test_file is not None:
        train = read_file(train_file)
        test = read_file(test_file, train.classes)
        source = f"{train_file} / {test_file}"
    else:
        raise ValueError("give --dataset NAME, or both --train FILE and --test FILE")
    policy = test_set_policy(policy, "the official test split")
    task = Classification(train, test)
    torch.manual_seed(seed)
    model = SequenceModel("lstm", task.input_size, hidden, task.output_size, forget_bias=1.0)
    config = {"task": {"task": "classify", "seq_len": task.seq_len}, "classes": train.classes}
    history = fit_in(
        out,
        model,
        task,
        f"{source}: test accuracy",
        config,
        resume,
        force,
        device,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        eval_every=eval_every,
        max_seconds=max_seconds,
        progress=progress,
        policy=policy,
    )
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
    record(out, model, config, summary, device)
    return summary
