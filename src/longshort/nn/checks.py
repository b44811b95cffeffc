"""Input validation shared by the modules: every error names the argument, what was received
and what was expected. Nothing is broadcast, truncated or cast silently."""

from __future__ import annotations

import torch
from torch import Tensor


class InputError(ValueError, RuntimeError):
    """A bad shape, size, length or device. A ValueError, and an instance of RuntimeError as
    well, the class torch.nn raises for the same mistakes, so ``except RuntimeError`` written
    against torch.nn still catches it."""


class DtypeError(TypeError, ValueError, RuntimeError):
    """An input or state whose dtype is not the parameters'. A TypeError, and an instance of
    what torch.nn raises for the same mistake: ValueError from the layers, RuntimeError from
    the cells."""


def shape_str(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_tensor(owner: str, name: str, t: object) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_like(owner: str, name: str, t: Tensor, dtype: torch.dtype, device: torch.device) -> None:
    """Same dtype and device as the module's parameters."""
    if not t.dtype.is_floating_point or t.dtype != dtype:
        raise DtypeError(
            f"{owner}: {name} has dtype {t.dtype}, expected {dtype} (the parameters' dtype); "
            f"convert the input or call .to({dtype}) on the module"
        )
    if t.device != device:
        raise InputError(
            f"{owner}: {name} is on device {t.device}, expected {device} (the parameters' device)"
        )


def check_finite(owner: str, name: str, t: Tensor) -> None:
    """Refuse NaN or inf values (skipped while torch.compile traces: it is data-dependent)."""
    if torch.compiler.is_compiling() or t.numel() == 0:
        return
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"{owner}: {name} contains NaN or inf, first at index {tuple(bad)}")


def check_shape(owner: str, name: str, t: Tensor, expected: tuple[int, ...], what: str) -> None:
    if tuple(t.shape) != expected:
        raise InputError(f"{owner}: {name} must have shape {expected} = {what}, got {shape_str(t)}")


def check_lengths(
    owner: str, lengths: object, batch: int, steps: int, device: torch.device
) -> Tensor:
    """A 1-D integer tensor of `batch` lengths in [1, steps], returned as int64 on `device`."""
    lengths = check_tensor(owner, "lengths", lengths)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"{owner}: lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise InputError(
            f"{owner}: lengths must have shape ({batch},), one length per sequence in the batch, "
            f"got {shape_str(lengths)}"
        )
    lengths = lengths.to(device=device, dtype=torch.int64)
    if not torch.compiler.is_compiling():
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > steps:
            raise InputError(
                f"{owner}: lengths must lie in [1, {steps}] (the input has {steps} steps), "
                f"got values from {low} to {high}"
            )
    return lengths
