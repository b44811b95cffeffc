"""Input validation shared by the modules: every error names the argument, what was received
and what was expected. Nothing is broadcast, truncated or cast silently."""

from __future__ import annotations

import numbers
import warnings

import torch
from torch import Tensor


class InputError(ValueError, RuntimeError):
    """A bad shape, size, length or device. A ValueError, and an instance of RuntimeError as
    well, the class torch.nn raises for the same mistakes, so ``except RuntimeError`` written
    against torch.nn still catches it."""


class ArgumentError(ValueError, RuntimeError):
    """A constructor argument that torch.nn refuses only later, at forward, with a
    RuntimeError (an RNNCell's nonlinearity): a ValueError here, at once, and a RuntimeError
    too, so ``except RuntimeError`` written against torch.nn still catches it."""


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
    """Same dtype and device as the module's parameters. The dtype message contains torch.nn's
    own sentence for an input ("RNN input dtype ... does not match weight dtype ...")."""
    if not t.dtype.is_floating_point or t.dtype != dtype:
        what = "RNN input" if name.startswith("input") else name
        raise DtypeError(
            f"{owner}: {what} dtype ({t.dtype}) does not match weight dtype ({dtype}). "
            f"Convert {what.split()[-1]}: {what.split()[-1]}.to({dtype}), or convert model: "
            f"model.to({t.dtype})"
        )
    if t.device != device:
        raise InputError(
            f"{owner}: {name} is on device {t.device}, expected {device} (the parameters' "
            f"device). Input and parameter tensors are not at the same device, found {name} "
            f"tensor at {t.device} and parameter tensor at {device}"
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


def check_layer_args(
    owner: str,
    allows_projection: bool,
    input_size: object,
    hidden_size: object,
    num_layers: object,
    bias: object,
    batch_first: object,
    dropout: object,
    bidirectional: object,
    proj_size: object,
    recompute_segment: object,
) -> None:
    """A recurrent layer's constructor arguments, as torch.nn.RNNBase's checks them (with its
    exception classes), and longshort's own (recompute_segment)."""
    if proj_size and not allows_projection:  # as torch.nn answers it
        raise ValueError(
            f"{owner}: proj_size argument is only supported for LSTM, not RNN or GRU; "
            f"got proj_size={proj_size!r}"
        )
    if recompute_segment is not None and (
        not isinstance(recompute_segment, int) or recompute_segment < 1
    ):
        raise ValueError(
            f"{owner}: recompute_segment must be None or a positive int, got {recompute_segment!r}"
        )
    sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers}
    for arg, value in (*sizes.items(), ("proj_size", proj_size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{owner}: {arg} should be of type int, got: {type(value).__name__}")
    flags = {"bias": bias, "batch_first": batch_first, "bidirectional": bidirectional}
    for arg, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{owner}: {arg} should be of type bool, got: {type(value).__name__}")
    for arg, value in sizes.items():
        if value <= 0:  # type: ignore[operator]
            raise ValueError(f"{owner}: {arg} must be greater than zero, got {value}")
    _check_projection(owner, proj_size, hidden_size)  # type: ignore[arg-type]
    _check_dropout(owner, dropout, num_layers)  # type: ignore[arg-type]


def _check_projection(owner: str, proj_size: int, hidden_size: int) -> None:
    if proj_size < 0 or (proj_size and proj_size >= hidden_size):
        torch_says = (  # torch.nn's sentences
            "proj_size should be a positive integer or zero to disable projections"
            if proj_size < 0
            else "proj_size has to be smaller than hidden_size"
        )
        raise ValueError(
            f"{owner}: {torch_says}: proj_size must be 0 (no projection) or in "
            f"[1, hidden_size-1] = [1, {hidden_size - 1}], got {proj_size}"
        )


def _check_dropout(owner: str, dropout: object, num_layers: int) -> None:
    is_number = isinstance(dropout, numbers.Real) and not isinstance(dropout, bool)
    if not is_number or not 0 <= dropout <= 1:  # type: ignore[operator]
        raise ValueError(
            f"{owner}: dropout should be a number in range [0, 1] representing the probability "
            f"of an element being zeroed, got {dropout!r}"
        )
    if dropout > 0 and num_layers == 1:  # type: ignore[operator]
        warnings.warn(
            f"{owner}: dropout is applied between layers, so dropout={dropout} with "
            "num_layers=1 has no effect (dropout option adds dropout after all but last "
            "recurrent layer, so non-zero dropout expects num_layers greater than 1, but got "
            f"dropout={dropout} and num_layers={num_layers})",
            stacklevel=5,
        )
