"""One training loop for every task: progress, evaluation, early stop when solved, budgets."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from longshort.tasks import Task
from longshort.train.model import SequenceModel


@dataclass
class History:
    """Learning curve and outcome of one run."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_metric: list[float] = field(default_factory=list)
    seconds: float = 0.0
    solved: bool = False
    final_metric: float = math.nan

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate(
    model: SequenceModel, task: Task, batches: int = 4, batch_size: int = 256, seed: int = 12345
) -> float:
    """The task metric on held-out batches (a fixed seed far from the training stream)."""
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    values = []
    with torch.no_grad():
        for _ in range(batches):
            b = task.batch(batch_size, gen)
            values.append(task.metric(model(b.x, b.lengths), b.y))
    model.train()
    return sum(values) / len(values)


def fit(
    model: SequenceModel,
    task: Task,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 3e-3,
    clip: float = 1.0,
    eval_every: int = 100,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
    desc: str | None = None,
    log: Path | None = None,
    on_eval: Callable[[int, float], None] | None = None,
) -> History:
    """Train with Adam and gradient clipping; stop at `steps`, when solved, or at the budget.

    Each evaluation appends one JSON line to `log` if given.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = History()
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc or f"{task.name}", disable=not progress, leave=False)
    running = 0.0
    for step in range(1, steps + 1):
        b = task.batch(batch_size, gen)
        loss = task.loss(model(b.x, b.lengths), b.y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        running = loss.item() if step == 1 else 0.9 * running + 0.1 * loss.item()
        elapsed = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}", steps_per_s=f"{step / elapsed:.1f}")
        out_of_time = max_seconds is not None and elapsed > max_seconds
        if step % eval_every == 0 or step == steps or out_of_time:
            metric = evaluate(model, task)
            history.steps.append(step)
            history.train_loss.append(running)
            history.eval_metric.append(metric)
            if log is not None:
                with log.open("a") as f:
                    f.write(
                        json.dumps(
                            {
                                "step": step,
                                "train_loss": running,
                                task.metric_name: metric,
                                "seconds": elapsed,
                            }
                        )
                        + "\n"
                    )
            if on_eval is not None:
                on_eval(step, metric)
            if task.solved(metric) or out_of_time:
                break
    bar.close()
    history.seconds = time.perf_counter() - start
    history.final_metric = history.eval_metric[-1]
    history.solved = task.solved(history.final_metric)
    return history
