"""``longshort forecast train``: multi-step forecasting of a series against naive baselines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from longshort.apps.runs import Budget, Session, fit_in, record, test_set_policy
from longshort.data.forecasting import Forecast
from longshort.data.series import read_column, taylor
from longshort.train.model import SequenceModel

BUDGET = Budget(hidden=64, steps=1500, lr=3e-3, batch_size=32)  # the CLI's defaults


def train_forecaster(
    dataset: str | None,
    csv: Path | None,
    column: str | None,
    out: Path,
    window: int = 336,
    horizon: int = 48,
    test_steps: int = 672,
    season: int = 336,
    residual: bool = False,
    base: str | None = None,
    budget: Budget = BUDGET,
    session: Session | None = None,
) -> dict[str, object]:
    """Train an LSTM forecaster of `horizon` steps from `window` past steps, evaluated on
    the held-out tail of `test_steps` (which chooses nothing: the last weights are kept)."""
    session = session or Session()
    if dataset == "taylor":
        series, source = taylor(), "taylor (pmdarima)"
    elif csv is not None and column is not None:
        series, source = read_column(csv, column), f"{csv}:{column}"
    else:
        raise ValueError("give --dataset taylor, or --csv FILE with --column NAME")
    budget = replace(budget, policy=test_set_policy(budget.policy, "the held-out tail"))
    task = Forecast(series, window, horizon, test_steps, season, residual, base)
    torch.manual_seed(budget.seed)
    model = SequenceModel("lstm", 1, budget.hidden, horizon, forget_bias=1.0)
    config = {
        "task": {"task": "forecast", "seq_len": window, "horizon": horizon, "base": task.base}
    }
    title = f"{source}: held-out MAE (dashed: seasonal naive)"
    history = fit_in(out, model, task, title, config, budget, session)
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
    record(out, model, config, summary, session.device)
    return summary
