"""Forecasting: windows and baselines are right, a short run beats last-value, bad CSVs are
named clearly."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from longshort.apps.forecast import train_forecaster
from longshort.apps.runs import QUIET, Budget
from longshort.data.forecasting import Forecast
from longshort.data.series import read_column, taylor


def test_windows_and_baselines():
    series = torch.arange(100, dtype=torch.float32)
    task = Forecast(series, window=10, horizon=5, test_steps=20, season=4)
    b = task.batch(3, torch.Generator().manual_seed(0))
    raw = b.x[..., 0] * task.std + task.mean
    torch.testing.assert_close(b.y * task.std + task.mean, raw[:, -1:] + torch.arange(1, 6))
    assert task.origins == [80, 85, 90, 95]
    # on a line, last-value is off by 1..5 (mean 3); seasonal naive by 4 for h < 4, 8 after
    assert task.baselines["last_value"]["MAE"] == pytest.approx(3.0)
    assert task.baselines["seasonal_naive"]["MAE"] == pytest.approx((4 * 4 + 8) / 5)


def test_bad_arguments_and_csv(tmp_path):
    with pytest.raises(ValueError, match="too short"):
        Forecast(torch.zeros(30), window=20, horizon=5, test_steps=10, season=4)
    (tmp_path / "s.csv").write_text("t,load\n0,1.5\n1,oops\n")
    with pytest.raises(ValueError, match=r"s.csv:3: column 'load' holds 'oops'"):
        read_column(tmp_path / "s.csv", "load")
    with pytest.raises(ValueError, match=r"no column 'demand'; columns are \['t', 'load'\]"):
        read_column(tmp_path / "s.csv", "demand")


@pytest.mark.skipif(
    importlib.util.find_spec("pmdarima") is None,
    reason="taylor comes with pmdarima's files (pip install --no-deps pmdarima)",
)
def test_taylor_series():
    s = taylor()
    assert s.shape == (4032,) and float(s[0]) == 22262.0


def test_short_run_beats_last_value(tmp_path):
    t = torch.arange(600, dtype=torch.float32)
    series = 10 + torch.sin(2 * math.pi * t / 24) + 0.05 * torch.randn(600)
    (tmp_path / "s.csv").write_text("y\n" + "\n".join(f"{v:.5f}" for v in series) + "\n")
    summary = train_forecaster(
        None,
        tmp_path / "s.csv",
        "y",
        tmp_path / "out",
        window=48,
        horizon=12,
        test_steps=96,
        season=24,
        budget=Budget(hidden=16, steps=150, lr=3e-3, batch_size=32),
        session=QUIET,
    )
    errors = summary["errors"]
    assert errors["lstm"]["MAE"] < 0.5 * errors["last_value"]["MAE"]


def test_residual_mode_adds_the_seasonal_naive_forecast():
    series = torch.arange(100, dtype=torch.float32) % 7
    task = Forecast(series, window=14, horizon=5, test_steps=20, season=7, residual=True)
    b = task.batch(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(b.y, torch.zeros_like(b.y))  # periodic: nothing left to learn

    class Zero(torch.nn.Module):
        def forward(self, x, lengths=None):
            return torch.zeros(x.shape[0], 5)

    forecast = task.forecast(Zero())
    truth = torch.stack([series[o : o + 5] for o in task.origins])
    torch.testing.assert_close(forecast, truth)


class _Zero(torch.nn.Module):
    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon

    def forward(self, x, lengths=None):
        return torch.zeros(x.shape[0], self.horizon)


def test_linear_base_is_a_ridge_forecast_the_lstm_corrects():
    """On a noiseless sum of two sines the direct linear forecast is exact, so the targets the
    LSTM sees are near zero, and a zero correction gives the linear baseline's own errors."""
    t = torch.arange(400, dtype=torch.float64)
    series = (torch.sin(2 * torch.pi * t / 24) + 0.5 * torch.sin(2 * torch.pi * t / 9)).float()
    task = Forecast(series, window=48, horizon=12, test_steps=48, season=24, base="linear")
    b = task.batch(8, torch.Generator().manual_seed(0))
    assert b.y.abs().max() < 1e-2
    errors = task._errors(task.forecast(_Zero(12)))
    linear = next(v for k, v in task.baselines.items() if k.startswith("linear"))
    assert errors == linear and linear["MAE"] < 1e-2
    assert task.baselines["seasonal_naive"]["MAE"] > 10 * linear["MAE"]


def test_bad_base_is_named():
    with pytest.raises(ValueError, match="base must be one of none, seasonal, linear"):
        Forecast(torch.randn(200), window=24, horizon=6, test_steps=24, season=12, base="arima")
