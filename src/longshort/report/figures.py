"""Figures (matplotlib, PNG): each returns the Figure, so a notebook shows it, and saves it
when given a path. Titles, labels and legends say what a reader sees without the code.
Importing this module leaves matplotlib's backend as the user has it (without a display,
matplotlib itself picks Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor


def _save(fig: Figure, path: Path | str | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def _time_axis(ax, tokens: Sequence[str] | None, ylabel: str, title: str) -> None:
    """Steps on x, labelled with the input tokens when there are some."""
    if tokens is not None:
        ax.set_xticks(range(len(tokens)))
        ax.set_xticklabels(tokens, rotation=90, fontsize=7)
    ax.set(xlabel="input token" if tokens is not None else "step", ylabel=ylabel, title=title)


def learning_curves(
    runs: dict[str, tuple[Sequence[int], Sequence[float]]],
    metric: str,
    baseline: float,
    title: str,
    path: Path | str | None = None,
) -> Figure:
    """runs: label -> (steps, held-out metric)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, (steps, values) in runs.items():
        ax.plot(steps, values, marker="o", ms=3, label=label)
    ax.axhline(baseline, color="grey", ls="--", label=f"baseline ({baseline:.3g})")
    ax.set(xlabel="training step", ylabel=f"held-out {metric}", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def gradient_vs_distance(
    flows: dict[str, Tensor], title: str, path: Path | str | None = None
) -> Figure:
    """flows: label -> ||dL/dh_k|| indexed by distance T - k (index 0 = last step). Values
    below the smallest normal float32 (1.2e-38) have underflowed; they are not drawn, and the
    axis stops there with a note."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    tiny = float(np.finfo(np.float32).tiny)
    underflow = False
    for label, values in flows.items():
        v = values.detach().double().numpy()
        underflow |= bool((v < tiny).any())
        ax.semilogy(np.arange(len(v)), np.where(v >= tiny, v, np.nan), label=label)
    ax.set_ylim(bottom=tiny)
    ax.set(
        xlabel="distance T - k (steps back from the loss)",
        ylabel="gradient norm ||dL/dh_k||",
        title=title,
    )
    if underflow:
        ax.text(
            0.99,
            0.02,
            "below 1e-38 float32 underflows: not drawn",
            transform=ax.transAxes,
            ha="right",
            fontsize=8,
        )
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def gate_heatmap(
    values: Tensor,
    tokens: Sequence[str] | None,
    title: str,
    units: int = 16,
    path: Path | str | None = None,
    first: Sequence[int] = (),
    first_label: str = "",
) -> Figure:
    """values: (T, H) one gate of one sequence; shows the units in `first` (at the top, their
    tick labels marked with `first_label`, e.g. the units that hold memory longest), then the
    most varying of the others, `units` rows in all."""
    v = values.detach().double().numpy()
    top = [int(u) for u in first][:units]
    rest = [int(u) for u in np.argsort(-v.std(axis=0)) if int(u) not in top]
    order = top + rest[: units - len(top)]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * v.shape[0]), 3.8))
    im = ax.imshow(
        v[:, order].T, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
    )
    _time_axis(ax, tokens, "unit", title)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(
        [f"{u} {first_label}" if k < len(top) else str(u) for k, u in enumerate(order)],
        fontsize=6,
    )
    if top:
        ax.axhline(len(top) - 0.5, color="white", lw=1.5)
    fig.colorbar(im, ax=ax, label="gate value (0 = closed, 1 = open)")
    return _save(fig, path)


def carousel_products(
    products: Tensor, title: str, units: int = 8, path: Path | str | None = None
) -> Figure:
    """products: (T, H) the carousel product from step 0 to each t, one sequence."""
    p = products.detach().double().clamp_min(1e-45).numpy()
    order = np.argsort(-p[-1])[:units]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for u in order:
        ax.semilogy(p[:, u], label=f"unit {u}")
    ax.set(xlabel="step t", ylabel="∂C_t/∂C_0 = ∏ f_j", title=title)
    # plain decimal ticks (0.2, 0.5, 1) instead of matplotlib's 2×10^-1 on a short log range
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def cell_trajectories(
    c: Tensor,
    tokens: Sequence[str] | None,
    title: str,
    units: int = 6,
    path: Path | str | None = None,
) -> Figure:
    """c: (T, H) cell states of one sequence; plots the most active units."""
    v = c.detach().double().numpy()
    order = np.argsort(-np.abs(v).max(axis=0))[:units]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * v.shape[0]), 3.6))
    for u in order:
        ax.plot(v[:, u], label=f"unit {u}")
    _time_axis(ax, tokens, "cell state C_t", title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def metric_vs_length(
    results: dict[str, tuple[Sequence[int], Sequence[float]]],
    metric: str,
    baseline: float,
    title: str,
    path: Path | str | None = None,
    spread: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Figure:
    """results: label -> (sequence lengths, final metric, the mean over seeds); spread:
    label -> (lowest, highest) over the seeds, drawn as a band."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, (lengths, values) in results.items():
        (line,) = ax.plot(lengths, values, marker="o", label=label)
        if spread and label in spread:
            lo, hi = spread[label]
            ax.fill_between(lengths, lo, hi, color=line.get_color(), alpha=0.2)
    ax.axhline(baseline, color="grey", ls="--", label="baseline")
    ax.set(xlabel="sequence length / gap", ylabel=f"held-out {metric}", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
