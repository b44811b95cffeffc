"""Multi-step forecasting with sliding windows, as a task for the shared training loop.

The last `test_steps` of the series are held out. Training windows: `window` past values ->
the next `horizon` values, from the training part, standardised with its mean and deviation.
Evaluation: rolling origins every `horizon` steps over the held-out tail, each forecast from the
`window` values before it (true values: no forecast feeds the next), errors in the series' own
units, against the last-value and seasonal-naive forecasts at the same origins. With
``residual=True`` the LSTM learns the correction to the seasonal-naive forecast (its output is
added to the value one season earlier) instead of the values themselves.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longshort.tasks.base import Batch, Task


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
    ) -> None:
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
        self.residual = residual
        self.split = len(series) - test_steps
        train = series[: self.split]
        self.mean, self.std = train.mean(), train.std().clamp_min(1e-8)
        self.scaled = (series - self.mean) / self.std
        self.input_size, self.output_size = 1, horizon
        self.origins = list(range(self.split, len(series) - horizon + 1, horizon))
        self.baselines = self._baselines()
        self.baseline = self.baselines["seasonal_naive"]["MAE"]

    def loss(self, pred: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(pred, y)

    def seasonal(self, x: Tensor) -> Tensor:
        """The seasonal-naive forecast (B, horizon) from windows x (B, window, 1)."""
        h = torch.arange(self.horizon)
        return x[:, self.window - self.season * (1 + h // self.season) + h, 0]

    def batch(self, size: int, generator: torch.Generator) -> Batch:
        last_start = self.split - self.window - self.horizon
        starts = torch.randint(0, last_start + 1, (size,), generator=generator)
        idx = starts[:, None] + torch.arange(self.window + self.horizon)[None, :]
        w = self.scaled[idx]
        x, y = w[:, : self.window, None], w[:, self.window :]
        return Batch(x, y - self.seasonal(x) if self.residual else y)

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
        return {
            "last_value": self._errors(last),
            "seasonal_naive": self._errors(seasonal),
            "seasonal_naive_level_shift": self._errors(seasonal + shift[:, None]),
        }

    def forecast(self, model: nn.Module, device: str = "cpu") -> Tensor:
        """(origins, horizon) forecasts in the series' units."""
        x = torch.stack([self.scaled[o - self.window : o] for o in self.origins])[:, :, None]
        was_training = model.training  # restored after, whatever it was
        model.eval()
        with torch.no_grad():
            pred = model(x.to(device)).cpu()
        model.train(was_training)
        if self.residual:
            pred = pred + self.seasonal(x)
        return pred * self.std + self.mean

    def evaluate(self, model: nn.Module, device: str = "cpu") -> float:
        return self._errors(self.forecast(model, device))["MAE"]

    def report(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return {"lstm": self._errors(self.forecast(model)), **self.baselines}
