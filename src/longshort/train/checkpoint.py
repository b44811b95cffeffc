"""Checkpoints: weights as safetensors and configuration as JSON, written atomically, never
loaded through pickle, validated before use."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from longshort.train.model import CELLS, SequenceModel
from longshort.train.state import shared_mode

WEIGHTS, CONFIG = "model.safetensors", "config.json"
_INT_KEYS = ("input_size", "hidden_size", "output_size", "num_layers", "embedding_size")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, shared_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save(model: SequenceModel, directory: Path | str, extra: dict[str, Any] | None = None) -> Path:
    """Write model.safetensors and config.json into `directory` (created), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic_write(directory / WEIGHTS, lambda p: save_file(state, p))
    config = {"model": model.config, **(extra or {})}
    _atomic_write(directory / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2)))
    return directory


def validate_config(config: object, source: str) -> dict[str, Any]:
    """The model section of a checkpoint config, with types and ranges checked."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{source}: expected a JSON object with a 'model' object")
    model = config["model"]
    for key in _INT_KEYS:
        value = model.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1_000_000:
            raise ValueError(f"{source}: model.{key} must be an int in [1, 1000000], got {value!r}")
    if model.get("cell") not in CELLS:
        raise ValueError(
            f"{source}: model.cell must be one of {', '.join(CELLS)}, got {model.get('cell')!r}"
        )
    if model.get("readout") not in ("last", "all"):
        raise ValueError(
            f"{source}: model.readout must be 'last' or 'all', got {model.get('readout')!r}"
        )
    if not isinstance(model.get("tokens"), bool):
        raise ValueError(f"{source}: model.tokens must be true or false")
    fb = model.get("forget_bias")
    if fb is not None and (not isinstance(fb, int | float) or isinstance(fb, bool)):
        raise ValueError(f"{source}: model.forget_bias must be a number or null, got {fb!r}")
    drop = model.get("dropout", 0.0)
    if not isinstance(drop, int | float) or isinstance(drop, bool) or not 0 <= drop < 1:
        raise ValueError(f"{source}: model.dropout must be a number in [0, 1), got {drop!r}")
    ib = model.get("input_bias")
    if ib is not None and (not isinstance(ib, int | float) or isinstance(ib, bool)):
        raise ValueError(f"{source}: model.input_bias must be a number or null, got {ib!r}")
    keys = {*_INT_KEYS, "cell", "readout", "tokens", "forget_bias", "dropout", "input_bias"}
    unknown = set(model) - keys
    if unknown:
        raise ValueError(f"{source}: unknown model keys {sorted(unknown)}")
    return model


def load(directory: Path | str) -> tuple[SequenceModel, dict[str, Any]]:
    """The model and the whole config of a checkpoint directory. Corrupt, incomplete or
    mismatched files raise ValueError naming the file."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG, directory / WEIGHTS
    for p in (config_path, weights_path):
        if not p.is_file():
            raise ValueError(f"checkpoint {directory}: missing {p.name}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_path}: not valid JSON ({e})") from None
    model = SequenceModel.from_config(validate_config(config, str(config_path)))
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({e})") from None
    expected = model.state_dict()
    if set(state) != set(expected):
        raise ValueError(
            f"{weights_path}: tensors {sorted(set(state) ^ set(expected))} do not "
            "match the model in config.json"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{weights_path}: {key} has shape {tuple(value.shape)}, the config "
                f"needs {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
    return model, config
