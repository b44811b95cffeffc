"""``longshort forecast train``: multi-step forecasting of a series against naive baselines."""

from __future__ import annotations

from pathlib import Path

import torch

from longshort.apps.runs import fit_in, record, test_set_policy
from longshort.data.forecasting import Forecast
from longshort.data.series import read_column, taylor
from longshort.train import Policy
from longshort.train.model import SequenceModel


def train_forecaster(
    dataset: str | None,
    csv: Path | None,
    column: str | None,
    out: Path,
    window: int = 336,
    horizon: int = 48,
    test_steps: int = 672,
    season: int = 336,
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
    residual: bool = False,
    base: str | None = None,
    force: bool = False,
    policy: Policy | None = None,
) -> dict[str, object]:
    if dataset == "taylor":
        series, source = taylor(), "taylor (pmdarima)"
    elif csv is not None and column is not None:
        series, source = read_column(csv, column), f"{csv}:{column}"
    else:
        raise ValueError("give --dataset taylor, or --csv FILE with --column NAME")
    policy = test_set_policy(policy, "the held-out tail")
    task = Forecast(series, window, horizon, test_steps, season, residual, base)
    torch.manual_seed(seed)
    model = SequenceModel("lstm", 1, hidden, horizon, forget_bias=1.0)
    config = {
        "task": {"task": "forecast", "seq_len": window, "horizon": horizon, "base": task.base}
    }
    history = fit_in(
        out,
        model,
        task,
        f"{source}: held-out MAE (dashed: seasonal naive)",
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
        "series": source,
        "steps_in_series": len(series),
        "window": window,
        "horizon": horizon,
        "base": task.base,
        "held_out_steps": test_steps,
        "season": season,
        "errors": task.report(model),
        "train_steps": history.steps[-1],
        "seconds": round(history.seconds, 1),
    }
    record(out, model, config, summary, device)
    return summary
