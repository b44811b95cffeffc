"""Training state for resuming: weights, optimizer, random generators, step and history.

Saved without pickle (safetensors for tensors, JSON for the rest) into two alternating slots,
and a pointer file ``latest.json`` replaced atomically only after a slot is complete and its
checksums recorded. A run killed at any moment, mid-write included, resumes from the last
complete slot; a slot whose files do not match their checksums is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

LATEST = "latest.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def save_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    extra: dict[str, Any],
) -> None:
    """Write a complete resumable state into the slot not pointed to, then point to it."""
    directory.mkdir(parents=True, exist_ok=True)
    current = read_latest(directory)
    slot = "b" if current and current["slot"] == "a" else "a"
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_split(optimizer.state_dict())
    tensors |= opt_tensors
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    weights = directory / f"state-{slot}.safetensors"
    save_file(tensors, weights)
    meta = directory / f"state-{slot}.json"
    _atomic_text(meta, json.dumps({"step": step, "optimizer": opt_meta, **extra}))
    _atomic_text(
        directory / LATEST,
        json.dumps(
            {
                "slot": slot,
                "step": step,
                "sha256": {weights.name: _sha256(weights), meta.name: _sha256(meta)},
            }
        ),
    )


def read_latest(directory: Path) -> dict[str, Any] | None:
    path = directory / LATEST
    if not path.is_file():
        return None
    try:
        latest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(latest, dict) or latest.get("slot") not in ("a", "b"):
        raise ValueError(f"{path}: expected an object with slot 'a' or 'b'")
    return latest


def load_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any] | None:
    """Restore the latest complete state in place; returns its JSON (step, extra) or None when
    the directory holds none."""
    latest = read_latest(directory)
    if latest is None:
        return None
    for name, digest in latest.get("sha256", {}).items():
        path = directory / name
        if not path.is_file() or _sha256(path) != digest:
            raise ValueError(f"{path}: missing or does not match its checksum in {LATEST}")
    slot = latest["slot"]
    try:
        tensors = load_file(directory / f"state-{slot}.safetensors")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{directory}/state-{slot}.safetensors: unreadable ({e})") from None
    meta = json.loads((directory / f"state-{slot}.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_optimizer_join(tensors, meta["optimizer"]))
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta
