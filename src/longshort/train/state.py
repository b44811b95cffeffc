"""Training state for resuming: weights, optimizer, random generators, step and history.

Saved without pickle (safetensors for tensors, JSON for the rest) into two alternating slots,
and a pointer file ``latest.json`` replaced atomically only after a slot is complete and its
checksums recorded. A run killed at any moment, mid-write included, resumes from the last
complete slot. If the pointer is missing or its slot damaged, the newest other slot that reads
whole is used, and the caller is told (``note``); nothing restarts silently.
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
    os.chmod(tmp, shared_mode())
    os.replace(tmp, path)


def shared_mode() -> int:
    """The mode a plain new file gets under the process's umask (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    best: dict[str, torch.Tensor] | None = None,
    carry: tuple[torch.Tensor, ...] = (),
) -> None:
    """Write a complete resumable state into the slot not pointed to, then point to it.
    best: the weights of the best evaluation so far, kept for the end of the run; carry: the
    recurrent state a stream carries into its next chunk."""
    directory.mkdir(parents=True, exist_ok=True)
    current = read_latest(directory)
    slot = "b" if current and current["slot"] == "a" else "a"
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_split(optimizer.state_dict())
    tensors |= opt_tensors
    tensors |= {f"best.{k}": v.detach().contiguous().cpu() for k, v in (best or {}).items()}
    tensors |= {f"carry.{i}": c.detach().contiguous().cpu() for i, c in enumerate(carry)}
    tensors["rng.data"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    weights = directory / f"state-{slot}.safetensors"
    save_file(tensors, weights)
    os.chmod(weights, shared_mode())
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


def _slot_files(directory: Path, slot: str) -> tuple[Path, Path]:
    return directory / f"state-{slot}.safetensors", directory / f"state-{slot}.json"


def _read_slot(directory: Path, slot: str, digests: dict[str, str] | None) -> tuple[dict, dict]:
    """(tensors, meta) of one slot; ValueError naming the file if it is damaged. With digests
    (from latest.json) the files must also match their recorded checksums."""
    weights, meta_path = _slot_files(directory, slot)
    for path in (weights, meta_path):
        if not path.is_file():
            raise ValueError(f"{path}: missing")
        if digests is not None and _sha256(path) != digests.get(path.name):
            raise ValueError(f"{path}: does not match its checksum in {LATEST}")
    try:
        tensors = load_file(weights)
        meta = json.loads(meta_path.read_text())
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights.parent}/state-{slot}: unreadable ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise ValueError(f"{meta_path}: expected an object with an integer step")
    return tensors, meta


def find_state(directory: Path) -> tuple[dict, dict, str | None] | None:
    """The state to resume from: (tensors, meta, note) or None when the directory holds none.

    The slot latest.json points to, checked against its checksums; if latest.json is missing
    or that slot is damaged, the newest other slot that reads whole, with a note saying so.
    ValueError when state files exist but none is usable.
    """
    try:
        latest = read_latest(directory)
    except ValueError as e:
        latest, problem = None, str(e)
    else:
        problem = None if latest else f"{directory / LATEST} is missing"
    if latest is not None:
        try:
            tensors, meta = _read_slot(directory, latest["slot"], latest.get("sha256", {}))
            return tensors, meta, None
        except ValueError as e:
            problem = str(e)
    candidates = []
    for slot in ("a", "b"):
        if latest is not None and slot == latest["slot"]:
            continue
        try:
            candidates.append((*_read_slot(directory, slot, None), slot))
        except ValueError:
            continue
    if not candidates:
        if latest is None and not any(directory.glob("state-*")):
            return None
        raise ValueError(f"no usable training state in {directory}: {problem}")
    tensors, meta, slot = max(candidates, key=lambda c: c[1]["step"])
    return tensors, meta, f"{problem}; resumed from state-{slot} (step {meta['step']}) instead"


def load_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any] | None:
    """Restore the state :func:`find_state` picks, in place; returns its JSON (step, extra,
    and "note" when it fell back to an older slot) or None when the directory holds none."""
    found = find_state(directory)
    if found is None:
        return None
    tensors, meta, note = found
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_optimizer_join(tensors, meta["optimizer"]))
    generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    carry = [tensors[f"carry.{i}"] for i in range(len(tensors)) if f"carry.{i}" in tensors]
    meta = {**meta, "best_state": best or None, "carry": carry}
    return {**meta, "note": note} if note else meta
