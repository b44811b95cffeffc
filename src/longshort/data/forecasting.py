"""Multi-step forecasting with sliding windows, as a task for the shared training loop.

The last `test_steps` of the series are held out. Training windows: `window` past values ->
the next `horizon` values, from the training part, standardised with its mean and deviation.
Evaluation: rolling origins every `horizon` steps over the held-out tail, each forecast from the
`window` values before it (true values: no forecast feeds the next), errors in the series' own
units, against the last-value, seasonal-naive and linear forecasts at the same origins.

``base`` sets what the LSTM learns: "none", the values themselves; "seasonal" (or
``residual=True``), the correction to the seasonal-naive forecast; "linear", the correction to
a direct linear forecast (ridge regression from the window to the horizon, fitted on the
training windows, its ridge penalty chosen on the last ``test_steps`` of the training part).
Its output is added to that base forecast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from longshort.tasks.base import Batch, Task

BASES = ("none", "seasonal", "linear")
PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)


class Ridge(NamedTuple):
    """A direct linear forecast: horizon = weight @ window + bias, in scaled units."""

    weight: Tensor  # (horizon, window)
    bias: Tensor  # (horizon,)
    penalty: float


def _windows(series: Tensor, stop: int, window: int, horizon: int) -> tuple[Tensor, Tensor]:
    """Every (window, horizon) pair that ends before `stop`, as float64 rows."""
    starts = torch.arange(0, stop - window - horizon + 1)
    w = series.double()[starts[:, None] + torch.arange(window + horizon)[None, :]]
    return w[:, :window], w[:, window:]


def _solve(x: Tensor, y: Tensor, penalty: float) -> Ridge:
    xb = torch.cat((x, torch.ones(len(x), 1, dtype=x.dtype)), dim=1)
    eye = torch.eye(xb.shape[1], dtype=x.dtype)
    eye[-1, -1] = 0.0  # the bias is not penalised
    coef = torch.linalg.solve(xb.T @ xb + penalty * eye, xb.T @ y)  # (window + 1, horizon)
    return Ridge(coef[:-1].T.float(), coef[-1].float(), penalty)


def fit_linear(series: Tensor, split: int, window: int, horizon: int, val_steps: int) -> Ridge:
    """Ridge regression from a window to the horizon on the windows before `split`; the penalty
    is the one of PENALTIES with the lowest MAE at the origins of the last `val_steps` before
    `split`, fitted on what precedes them (falls back to 1.0 when the part is too short)."""
    val_start = split - val_steps
    x_fit, y_fit = _windows(series, val_start, window, horizon)
    origins = range(max(val_start, window), split - horizon + 1, horizon)
    best = (float("inf"), 1.0)
    if len(x_fit) > window and len(origins):
        xv = torch.stack([series[o - window : o] for o in origins]).double()
        yv = torch.stack([series[o : o + horizon] for o in origins]).double()
        for penalty in PENALTIES:
            r = _solve(x_fit, y_fit, penalty)
            mae = float((xv.float() @ r.weight.T + r.bias - yv.float()).abs().mean())
            best = min(best, (mae, penalty))
    return _solve(*_windows(series, split, window, horizon), best[1])


class Forecast(Task):
    name = "forecast"
    readout = "last"
    metric_name = "MAE"
    higher_is_better = False
    baseline_note = "seasonal naive: the value one season earlier"
    solved_at = -1.0  # never stops early: train for the budget

    def __init__(
        self,
        series: Tensor,
        window: int,
        horizon: int,
        test_steps: int,
        season: int,
        residual: bool = False,
        base: str | None = None,
    ) -> None:
        base = base if base is not None else ("seasonal" if residual else "none")
        if base not in BASES:
            raise ValueError(f"Forecast: base must be one of {', '.join(BASES)}, got {base!r}")
        for arg, value in (
            ("window", window),
            ("horizon", horizon),
            ("test_steps", test_steps),
            ("season", season),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Forecast: {arg} must be a positive int, got {value!r}")
        if series.dim() != 1:
            raise ValueError(f"Forecast: series must be 1-D, got shape {tuple(series.shape)}")
        if test_steps < horizon or len(series) - test_steps < window + horizon:
            raise ValueError(
                f"Forecast: a series of {len(series)} steps is too short for window {window}, "
                f"horizon {horizon} and {test_steps} held-out steps"
            )
        if season > window:
            raise ValueError(f"Forecast: season {season} must not exceed the window {window}")
        super().__init__(window)
        self.series, self.window, self.horizon, self.season = series, window, horizon, season
        self.base, self.residual = base, base != "none"
        self.split = len(series) - test_steps
        train = series[: self.split]
        self.mean, self.std = train.mean(), train.std().clamp_min(1e-8)
        self.scaled = (series - self.mean) / self.std
        self.input_size, self.output_size = 1, horizon
        self.origins = list(range(self.split, len(series) - horizon + 1, horizon))
        self.ridge = fit_linear(self.scaled, self.split, window, horizon, test_steps)
        self.baselines = self._baselines()
        self.baseline = self.baselines["seasonal_naive"]["MAE"]

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(pred, y)

    def seasonal(self, x: Tensor) -> Tensor:
        """The seasonal-naive forecast (B, horizon) from windows x (B, window, 1)."""
        h = torch.arange(self.horizon)
        return x[:, self.window - self.season * (1 + h // self.season) + h, 0]

    def linear(self, x: Tensor) -> Tensor:
        """The linear forecast (B, horizon) from windows x (B, window, 1), scaled units."""
        return self.ridge.weight @ x[:, :, 0].T.to(self.ridge.weight) + self.ridge.bias[:, None]

    def base_forecast(self, x: Tensor) -> Tensor:
        """What the LSTM's output is added to: (B, horizon) zeros, seasonal or linear."""
        if self.base == "seasonal":
            return self.seasonal(x)
        if self.base == "linear":
            return self.linear(x).T.to(x.dtype)
        return x.new_zeros(x.shape[0], self.horizon)

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        last_start = self.split - self.window - self.horizon
        starts = torch.randint(0, last_start + 1, (size,), generator=generator)
        idx = starts[:, None] + torch.arange(self.window + self.horizon)[None, :]
        w = self.scaled[idx]
        x, y = w[:, : self.window, None], w[:, self.window :]
        return Batch(x, y - self.base_forecast(x))

    def _errors(self, forecasts: Tensor) -> dict[str, float]:
        truth = torch.stack([self.series[o : o + self.horizon] for o in self.origins])
        err = forecasts - truth
        return {"MAE": float(err.abs().mean()), "RMSE": float(err.pow(2).mean().sqrt())}

    def _baselines(self) -> dict[str, dict[str, float]]:
        last = torch.stack([self.series[o - 1].expand(self.horizon) for o in self.origins])
        seasonal = torch.stack(
            [
                torch.stack(
                    [
                        self.series[o + h - self.season * (1 + h // self.season)]
                        for h in range(self.horizon)
                    ]
                )
                for o in self.origins
            ]
        )
        # the seasonal naive moved by the change of level between the last day and the same
        # day a season earlier: a stronger naive forecast when the demand drifts
        day = min(48, self.season)
        shift = torch.stack(
            [
                self.series[o - day : o].mean()
                - self.series[o - day - self.season : o - self.season].mean()
                for o in self.origins
            ]
        )
        x = torch.stack([self.scaled[o - self.window : o] for o in self.origins])[:, :, None]
        linear = self.linear(x).T * self.std + self.mean
        return {
            "last_value": self._errors(last),
            "seasonal_naive": self._errors(seasonal),
            "seasonal_naive_level_shift": self._errors(seasonal + shift[:, None]),
            f"linear (ridge {self.ridge.penalty:g})": self._errors(linear),
        }

    def forecast(self, model: nn.Module, device: str = "cpu") -> Tensor:
        """(origins, horizon) forecasts in the series' units."""
        x = torch.stack([self.scaled[o - self.window : o] for o in self.origins])[:, :, None]
        was_training = model.training  # restored after, whatever it was
        model.eval()
        with torch.no_grad():
            pred = model(x.to(device)).cpu()
        model.train(was_training)
        pred = pred + self.base_forecast(x)
        return pred * self.std + self.mean

    def evaluate(self, model: nn.Module, device: str = "cpu") -> float:
        return self._errors(self.forecast(model, device))["MAE"]

    def report(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return {"lstm": self._errors(self.forecast(model)), **self.baselines}
