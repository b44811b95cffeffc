"""One training loop for every task: progress, evaluation, early stop when solved, budgets."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from longshort.tasks import Task
from longshort.train import distributed
from longshort.train.model import SequenceModel
from longshort.train.state import load_state, save_state


@dataclass
class History:
    """Learning curve and outcome of one run."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_metric: list[float] = field(default_factory=list)
    seconds: float = 0.0
    solved: bool = False
    final_metric: float = math.nan
    stopped: str = ""  # why training ended: "solved", "steps", "patience" or "time" (the cap)
    best_metric: float = math.nan  # the best evaluation, whose weights the model ends with
    best_step: int = 0
    lr: float = math.nan  # the learning rate at the end (the plateau rule may have cut it)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def evaluate(
    model: SequenceModel,
    task: Task,
    batches: int = 4,
    batch_size: int = 256,
    seed: int = 12345,
    device: str = "cpu",
) -> float:
    """The task metric on held-out batches (a fixed seed far from the training stream), or
    the task's own evaluation when it has one (language models: the whole validation text)."""
    if hasattr(task, "evaluate"):
        return task.evaluate(model, device=device)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training  # restored after, whatever it was
    model.eval()
    values = []
    with torch.no_grad():
        for _ in range(batches):
            b = task.batch(batch_size, gen)
            lengths = None if b.lengths is None else b.lengths.to(device)
            pred = model(b.x.to(device), lengths)
            values.append(task.metric(pred, b.y.to(device)))
    model.train(was_training)
    return sum(values) / len(values)


@dataclass
class Policy:
    """What validation decides: the model ends with the weights of its best evaluation
    (``restore_best``); training stops after ``patience`` evaluations without improvement;
    the learning rate halves after ``plateau`` evaluations without improvement;
    ``weight_decay`` > 0 trains with AdamW instead of Adam."""

    patience: int | None = None
    plateau: int | None = None
    restore_best: bool = True
    weight_decay: float = 0.0

    def check(self) -> None:
        for name in ("patience", "plateau"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name} must be a positive whole number, got {value!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")


class _Best:
    """The best evaluation so far, its weights, and evaluations since it (and since the last
    learning-rate cut)."""

    def __init__(self, higher_is_better: bool, history: History) -> None:
        self.higher = higher_is_better
        self.history = history
        self.state: dict[str, torch.Tensor] | None = None
        self.stale = self.since_cut = 0

    def update(self, step: int, metric: float, model: torch.nn.Module) -> None:
        best = self.history.best_metric
        better = math.isnan(best) or (metric > best if self.higher else metric < best)
        if better:
            self.history.best_metric, self.history.best_step = metric, step
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.stale = self.since_cut = 0
        else:
            self.stale += 1
            self.since_cut += 1

    def cut_lr(self, opt: torch.optim.Optimizer, plateau: int | None) -> None:
        if plateau is not None and self.since_cut >= plateau:
            for group in opt.param_groups:
                group["lr"] *= 0.5
            self.since_cut = 0


def _optimizer(model: torch.nn.Module, lr: float, policy: Policy) -> torch.optim.Optimizer:
    if policy.weight_decay > 0:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=policy.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr)


class _DeferredInterrupt:
    """Within the block, Ctrl-C (SIGINT) sets ``requested`` instead of interrupting, so a
    training step is never cut in half; outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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
    state_dir: Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    policy: Policy | None = None,
) -> History:
    """Train with Adam and gradient clipping; stop at `steps`, when solved, when validation
    stops improving (``policy.patience``), or at the time cap. The model ends with the
    weights of its best evaluation (``policy.restore_best``, default); the history reports the
    best and the final evaluation and their steps.

    Each evaluation appends one JSON line to `log` if given and, with `state_dir`, saves a
    resumable state (weights, optimizer, random generators, history). With `resume`, training
    continues from the latest state there and ends where an uninterrupted run would have.
    Ctrl-C saves the state of the last finished step before it stops the run. Under torchrun
    (WORLD_SIZE > 1) each process trains on its shard of the global batch through
    DistributedDataParallel; rank 0 alone logs, shows progress and saves.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"fit: lr must be a positive number, got {lr!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"fit: max_seconds must be positive, got {max_seconds!r}")
    policy = policy or Policy()
    policy.check()
    group = distributed.setup(device)
    model.to(device)
    net = DistributedDataParallel(model) if group.world > 1 else model
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(model, lr, policy)
    history = History()
    best = _Best(task.higher_is_better, history)
    stateful = getattr(task, "stateful", False)
    carry = None  # the recurrent state carried between chunks of a stream (truncated BPTT)
    first, running, elapsed_before = 1, 0.0, 0.0
    if resume:
        if state_dir is None:
            raise ValueError("fit: resume=True needs a state_dir")
        meta = load_state(state_dir, model, opt, gen)
        if meta is not None:
            if meta.get("note") and group.main:
                print(f"resume: {meta['note']}", file=sys.stderr)
            first, running = meta["step"] + 1, meta["running"]
            history = History(**meta["history"])
            best = _Best(task.higher_is_better, history)
            best.state = meta.get("best_state")
            best.stale, best.since_cut = meta.get("stale", 0), meta.get("since_cut", 0)
            elapsed_before = history.seconds
            if meta.get("stream") is not None:
                task.position = meta["stream"]["position"]
                carry = tuple(torch.tensor(c, device=device) for c in meta["stream"]["carry"])
                carry = carry or None
    start = time.perf_counter() - elapsed_before
    bar = tqdm(
        total=steps,
        initial=first - 1,
        desc=desc or f"{task.name}",
        disable=not (progress and group.main),
        leave=False,
    )

    def checkpoint(step: int) -> None:
        if state_dir is not None and group.main:
            history.seconds = time.perf_counter() - start
            stream = None
            if stateful:
                stream = {"position": task.position, "carry": [c.tolist() for c in carry or ()]}
            extra = {"running": running, "history": history.to_dict(), "stream": stream}
            extra |= {"stale": best.stale, "since_cut": best.since_cut}
            save_state(state_dir, model, opt, gen, step, extra, best=best.state)

    stop = _DeferredInterrupt()
    with stop:
        for step in range(first, steps + 1):
            b = group.shard(task.batch(batch_size, gen))
            x, y = b.x.to(device), b.y.to(device)
            lengths = None if b.lengths is None else b.lengths.to(device)
            if stateful:
                state = None if carry is None else carry if len(carry) == 2 else carry[0]
                pred, last = net(x, lengths, state=state, return_state=True)
                carry = (
                    tuple(t.detach() for t in last) if isinstance(last, tuple) else (last.detach(),)
                )
            else:
                pred = net(x, lengths)
            loss = task.loss(pred, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            running = loss.item() if step == 1 else 0.9 * running + 0.1 * loss.item()
            elapsed = time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", steps_per_s=f"{step / elapsed:.1f}")
            out_of_time, interrupted = group.any(
                max_seconds is not None and elapsed > max_seconds, stop.requested
            )
            if step % eval_every == 0 or step == steps or out_of_time:
                metric = evaluate(model, task, device=device)
                history.steps.append(step)
                history.train_loss.append(running)
                history.eval_metric.append(metric)
                best.update(step, metric, model)
                best.cut_lr(opt, policy.plateau)
                if log is not None and group.main:
                    record = {
                        "step": step,
                        "train_loss": running,
                        task.metric_name: metric,
                        "seconds": elapsed,
                        "lr": opt.param_groups[0]["lr"],
                    }
                    with log.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                checkpoint(step)
                if on_eval is not None:
                    on_eval(step, metric)
                patience_out = policy.patience is not None and best.stale >= policy.patience
                if task.solved(metric) or out_of_time or patience_out:
                    break
            if interrupted:  # Ctrl-C: finish the step, save, then stop
                checkpoint(step)
                bar.close()
                raise KeyboardInterrupt(f"training stopped at step {step}; state saved")
    bar.close()
    history.seconds = time.perf_counter() - start
    history.final_metric = history.eval_metric[-1]
    history.solved = task.solved(history.final_metric)
    history.lr = opt.param_groups[0]["lr"]
    history.stopped = _why_stopped(history, steps, best, policy)
    if policy.restore_best and best.state is not None:
        model.load_state_dict(best.state)
    return history


def _why_stopped(history: History, steps: int, best: _Best, policy: Policy) -> str:
    if history.solved:
        return "solved"
    if history.steps[-1] >= steps:
        return "steps"
    if policy.patience is not None and best.stale >= policy.patience:
        return "patience"
    return "time"
