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
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from longshort.tasks.base import TrainingTask
from longshort.train import distributed
from longshort.train.model import SequenceModel
from longshort.train.progress import progress as show_progress
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
    task: TrainingTask,
    batches: int = 4,
    batch_size: int = 256,
    seed: int = 12345,
    device: str = "cpu",
) -> float:
    """The task metric on held-out batches (a fixed seed far from the training stream), or
    the task's own evaluation when it has one (language models: the whole validation text)."""
    own = task.evaluate(model, device=device)
    if own is not None:
        return own
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
    task: TrainingTask,
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
    if resume and state_dir is None:
        raise ValueError("fit: resume=True needs a state_dir")
    run = _Run(model, task, lr, seed, policy, device)
    first = run.restore(state_dir) if resume else 1
    if first > 1 and run.ended():  # solved or out of patience before: nothing left to train
        if run.group.main:
            print(
                f"resume: the run already ended at step {first - 1} "
                f"({'solved' if run.solved() else 'no improvement for --patience evaluations'})"
                "; nothing to train",
                file=sys.stderr,
            )
        first = steps + 1
    start = time.perf_counter() - run.history.seconds
    resumed_at = run.history.seconds
    bar = show_progress(steps, first - 1, desc or task.name, progress and run.group.main)
    stop = _DeferredInterrupt()
    with stop:
        for step in range(first, steps + 1):
            run.train_step(step, batch_size, clip)
            elapsed = time.perf_counter() - start
            bar.update(step, run.running, (step - first + 1) / max(elapsed - resumed_at, 1e-9))
            out_of_time, interrupted = run.group.any(
                max_seconds is not None and elapsed > max_seconds, stop.requested
            )
            if step % eval_every == 0 or step == steps or out_of_time:
                metric = run.evaluate(step, elapsed, log)
                run.history.seconds = elapsed
                run.save(state_dir, step)
                if on_eval is not None:
                    on_eval(step, metric)
                if task.solved(metric) or out_of_time or run.patience_out():
                    break
            if interrupted:  # Ctrl-C: finish the step, save, then stop
                run.history.seconds = time.perf_counter() - start
                run.save(state_dir, step)
                bar.close()
                raise KeyboardInterrupt(f"training stopped at step {step}; state saved")
    bar.close()
    return run.finish(time.perf_counter() - start, steps)


class _Run:
    """One training run's moving parts: the model (DDP-wrapped under torchrun), optimizer,
    data generator, history, best evaluation and, for streams, the carried recurrent state."""

    def __init__(
        self,
        model: SequenceModel,
        task: TrainingTask,
        lr: float,
        seed: int,
        policy: Policy,
        device: str,
    ) -> None:
        self.group = distributed.setup(device)
        self.model, self.task, self.policy, self.device = model.to(device), task, policy, device
        self.net = DistributedDataParallel(model) if self.group.world > 1 else model
        self.gen = torch.Generator().manual_seed(seed)
        self.opt = _optimizer(model, lr, policy)
        self.history = History()
        self.best = _Best(task.higher_is_better, self.history)
        self.carry: Any = None  # the state carried between chunks of a stream (truncated BPTT)
        self.running = 0.0

    def restore(self, state_dir: Path | None) -> int:
        """Load the saved state, if any; returns the first step to run."""
        meta = None if state_dir is None else load_state(state_dir, self.model, self.opt, self.gen)
        if meta is None:
            return 1
        if meta.get("note") and self.group.main:
            print(f"resume: {meta['note']}", file=sys.stderr)
        self.running = meta["running"]
        self.history = History(**meta["history"])
        self.best = _Best(self.task.higher_is_better, self.history)
        self.best.state = meta.get("best_state")
        self.best.stale, self.best.since_cut = meta.get("stale", 0), meta.get("since_cut", 0)
        if meta.get("stream") is not None:
            self.task.position = meta["stream"]["position"]
            carry = [c.to(self.device) for c in meta.get("carry") or ()]
            self.carry = tuple(carry) if meta["stream"].get("tuple") else (carry or [None])[0]
        return meta["step"] + 1

    def train_step(self, step: int, batch_size: int, clip: float) -> None:
        b = self.group.shard(self.task.batch(batch_size, self.gen))
        x, y = b.x.to(self.device), b.y.to(self.device)
        lengths = None if b.lengths is None else b.lengths.to(self.device)
        if self.task.stateful:
            pred, last = self.net(x, lengths, state=self.carry, return_state=True)
            self.carry = _detach(last)
        else:
            pred = self.net(x, lengths)
        loss = self.task.loss(pred, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.running = loss.item() if step == 1 else 0.9 * self.running + 0.1 * loss.item()

    def evaluate(self, step: int, elapsed: float, log: Path | None) -> float:
        """Evaluate, update the best and the learning rate, append to the log."""
        metric = evaluate(self.model, self.task, device=self.device)
        h = self.history
        h.steps.append(step)
        h.train_loss.append(self.running)
        h.eval_metric.append(metric)
        self.best.update(step, metric, self.model)
        self.best.cut_lr(self.opt, self.policy.plateau)
        if log is not None and self.group.main:
            record = {
                "step": step,
                "train_loss": self.running,
                self.task.metric_name: metric,
                "seconds": elapsed,
                "lr": self.opt.param_groups[0]["lr"],
            }
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
        return metric

    def solved(self) -> bool:
        return bool(self.history.eval_metric) and self.task.solved(self.history.eval_metric[-1])

    def ended(self) -> bool:
        """The restored run stopped by itself at its last evaluation (solved or out of
        patience): resuming it trains no further."""
        return self.solved() or self.patience_out()

    def patience_out(self) -> bool:
        return self.policy.patience is not None and self.best.stale >= self.policy.patience

    def save(self, state_dir: Path | None, step: int) -> None:
        if state_dir is None or not self.group.main:
            return
        stream = None
        if self.task.stateful:
            stream = {"position": self.task.position, "tuple": isinstance(self.carry, tuple)}
        extra = {"running": self.running, "history": self.history.to_dict(), "stream": stream}
        extra |= {"stale": self.best.stale, "since_cut": self.best.since_cut}
        carry = self.carry if isinstance(self.carry, tuple) else (self.carry,)
        carry = tuple(c for c in carry if c is not None)
        save_state(state_dir, self.model, self.opt, self.gen, step, extra, self.best.state, carry)

    def finish(self, seconds: float, steps: int) -> History:
        h = self.history
        h.seconds = seconds
        h.final_metric = h.eval_metric[-1]
        h.solved = self.task.solved(h.final_metric)
        h.lr = self.opt.param_groups[0]["lr"]
        h.stopped = _why_stopped(h, steps, self.best, self.policy)
        if self.policy.restore_best and self.best.state is not None:
            self.model.load_state_dict(self.best.state)
        return h


def _detach(state: Any) -> Any:
    """A recurrent state, (h, c) or h, cut from the graph (truncated BPTT)."""
    return tuple(t.detach() for t in state) if isinstance(state, tuple) else state.detach()


def _why_stopped(history: History, steps: int, best: _Best, policy: Policy) -> str:
    if history.solved:
        return "solved"
    if history.steps[-1] >= steps:
        return "steps"
    if policy.patience is not None and best.stale >= policy.patience:
        return "patience"
    return "time"
