"""The habits every training command shares: a run folder with metrics as JSON lines, a
resumable state, a learning curve, the checkpoint and a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longshort.report import figures
from longshort.tasks import Task
from longshort.train import History, distributed, fit
from longshort.train.checkpoint import save
from longshort.train.model import SequenceModel


def fit_in(
    out: Path | None,
    model: SequenceModel,
    task: Task,
    title: str,
    resume: bool = False,
    device: str = "cpu",
    **fit_kwargs: Any,
) -> History:
    """:func:`longshort.train.fit` writing into the run folder `out` (when given):
    metrics.jsonl (restarted unless resuming), state/ for --resume, learning-curve.png."""
    main = distributed.setup(device).main
    log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log = out / "metrics.jsonl"
        if not resume and main:
            log.unlink(missing_ok=True)
    history = fit(
        model,
        task,
        desc=title,
        log=log,
        resume=resume,
        device=device,
        state_dir=None if out is None else out / "state",
        **fit_kwargs,
    )
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
    if distributed.setup(device).main:
        save(model, out, {**config, "summary": summary})
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
