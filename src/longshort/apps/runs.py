"""The habits every training command shares: a run folder with metrics as JSON lines, a
resumable state, a learning curve, the checkpoint and a summary; and the rules that keep a run
from being lost: an existing run is never overwritten without --force, --resume continues only
the same model on the same data, and Ctrl-C leaves a usable model beside the state."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longshort.report import figures
from longshort.tasks import Task
from longshort.train import History, Policy, distributed, fit
from longshort.train.checkpoint import CONFIG, WEIGHTS, save
from longshort.train.model import SequenceModel
from longshort.train.state import find_state

RUN = "run.json"  # what a run is: the model and the data it learns from, checked on --resume


@dataclass
class Budget:
    """What a run learns with: the model's size and the training options (a comparison gives
    every run the same). max_seconds is only a safety net; the budget is steps."""

    hidden: int = 32
    steps: int = 2000
    max_seconds: float | None = None
    seed: int = 0
    lr: float = 1e-2
    batch_size: int = 64
    eval_every: int = 100
    policy: Policy | None = None

    def fit_options(self) -> dict[str, Any]:
        """The options of :func:`longshort.train.fit` this budget sets."""
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "max_seconds": self.max_seconds,
            "eval_every": self.eval_every,
            "policy": self.policy,
        }


@dataclass
class Session:
    """How a run is carried out, apart from what it learns: progress shown, --resume or
    --force for an existing run folder, the device it trains on."""

    progress: bool = True
    resume: bool = False
    force: bool = False
    device: str = "cpu"


QUIET = Session(progress=False)
_OUTPUTS = (RUN, CONFIG, WEIGHTS, "metrics.jsonl", "summary.json", "learning-curve.png")


def read_config(path: Path) -> dict[str, Any]:
    """The config.json of the run folder `path`; ValueError naming the file and what is wrong
    with it (missing, not JSON, not an object)."""
    file = path / CONFIG
    if not file.is_file():
        raise ValueError(
            f"{path}: not a run folder (no {CONFIG}); give a folder written by a longshort "
            "training command"
        )
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{file}: not valid JSON ({e}); the run's configuration is damaged"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(config).__name__}")
    return config


def kind_of(config: dict[str, Any]) -> str | None:
    """The task a run was trained on (config.json's task.task: "adding", "charlm", ...)."""
    task = config.get("task")
    return task.get("task") if isinstance(task, dict) else None


def run_kind(path: Path) -> str | None:
    """The task a run folder was trained on, or None when the folder holds no readable config."""
    try:
        return kind_of(read_config(path))
    except (OSError, ValueError):
        return None


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message says why and what to do."""


def identity(model: SequenceModel, config: dict[str, Any]) -> dict[str, Any]:
    """What must match for --resume: the model's configuration and the data's description."""
    return {
        "model": model.config,
        **{k: config[k] for k in ("task", "vocab", "classes") if k in config},
    }


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            shown = [v if not isinstance(v, str) or len(v) < 40 else f"{v[:37]}..." for v in (a, b)]
            diffs.append(f"{prefix}{key} was {shown[0]!r}, now {shown[1]!r}")
    return diffs


def prepare(out: Path, run: dict[str, Any], resume: bool, force: bool) -> None:
    """Make `out` ready for a run described by `run` (see :func:`identity`), or refuse."""
    if resume and force:
        raise RunFolderError(
            f"--resume and --force contradict each other: --resume continues the run in {out}, "
            "--force replaces it; give one of them"
        )
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file; give a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out}: the folder is not writable")
    state = find_state(out / "state") if resume else None
    if resume:
        if state is None:
            raise RunFolderError(
                f"--resume: {out} holds no saved training state; run without --resume to start"
            )
        if (out / RUN).is_file():
            diffs = _differences(json.loads((out / RUN).read_text()), run)
            if diffs:
                raise RunFolderError(
                    f"--resume: {out} holds another run ({'; '.join(diffs[:3])}); use its "
                    "options, or another --out"
                )
        return
    held = [name for name in (*_OUTPUTS, "state") if (out / name).exists()]
    if held and not force:
        raise RunFolderError(
            f"--out {out} already holds a run ({', '.join(held)}); add --resume to continue "
            "it, --force to replace it, or choose another --out"
        )
    for name in held:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / RUN).write_text(json.dumps(run, indent=2))


def fit_in(
    out: Path | None,
    model: SequenceModel,
    task: Task,
    title: str,
    config: dict[str, Any],
    budget: Budget,
    session: Session,
) -> History:
    """:func:`longshort.train.fit` with `budget`, writing into the run folder `out` (when
    given): run.json, metrics.jsonl (appended to when resuming), state/ for --resume,
    learning-curve.png. `config` is the checkpoint's configuration; on Ctrl-C the model is
    saved with it."""
    main = distributed.is_main(session.device)
    log = None
    if out is not None:
        if main:
            prepare(out, identity(model, config), session.resume, session.force)
        log = out / "metrics.jsonl"
    try:
        history = fit(
            model,
            task,
            desc=title,
            log=log,
            resume=session.resume,
            device=session.device,
            state_dir=None if out is None else out / "state",
            progress=session.progress,
            **budget.fit_options(),
        )
    except KeyboardInterrupt as e:
        if out is not None and main:
            save(model, out, {**config, "summary": {"interrupted": str(e)}})
        raise
    if out is not None and main:
        figures.learning_curves(
            {model.config["cell"].upper(): (history.steps, history.eval_metric)},
            task.metric_name,
            task.baseline,
            title,
            out / "learning-curve.png",
        )
    return history


def record(
    out: Path,
    model: SequenceModel,
    config: dict[str, Any],
    summary: dict[str, Any],
    device: str = "cpu",
) -> None:
    """The checkpoint (weights + config with the summary) and summary.json, from rank 0."""
    if distributed.is_main(device):
        save(model, out, {**config, "summary": summary})
        (out / "summary.json").write_text(json.dumps(summary, indent=2))


def test_set_policy(policy: Policy | None, what: str) -> Policy:
    """For a command that evaluates on its test data (`what`): nothing may be chosen by that
    evaluation, so the last weights are kept and patience or plateau rules are refused."""
    policy = policy or Policy()
    if policy.patience is not None or policy.plateau is not None:
        raise ValueError(
            f"--patience and --plateau need a validation split; this command evaluates on "
            f"{what}, which must not choose the model"
        )
    return Policy(restore_best=False, weight_decay=policy.weight_decay)
