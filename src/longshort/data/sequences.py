"""Labelled sequences for classification: UCR/UEA archives shipped in the aeon wheel, and any
.npz, .csv or .ts file of your own.

Formats:
- ``.ts`` (the UCR/UEA archive format): header lines starting with ``@``, then one series per
  line, dimensions separated by ``:``, values by ``,``, the class label last.
- ``.npz``: arrays ``x`` (N, T, F) float, ``y`` (N,) labels (ints or strings) and optionally
  ``lengths`` (N,) for padded sequences.
- ``.csv``: a header row with columns ``id``, ``label`` and one column per feature; the rows
  of one id, in order, are its time steps.

The UEA data sets come from the aeon wheel's own files, read without importing aeon (which pins
an older numba): ``pip install --no-deps aeon`` provides them.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

UEA = ("JapaneseVowels", "GunPoint", "BasicMotions", "ArrowHead")


@dataclass
class Sequences:
    """Padded sequences (N, T, F) float32, lengths (N,) int64, labels (N,) int64, and the
    class names that the label indices stand for."""

    x: Tensor
    lengths: Tensor
    y: Tensor
    classes: list[str]


def _pack(
    series: list[np.ndarray], labels: list[str], classes: list[str] | None, source: str
) -> Sequences:
    if not series:
        raise ValueError(f"{source}: no sequences found")
    features = {s.shape[1] for s in series}
    if len(features) != 1:
        raise ValueError(f"{source}: sequences have different feature counts {sorted(features)}")
    classes = classes or sorted(set(labels))
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"{source}: labels {unknown} are not among the classes {classes}")
    lengths = torch.tensor([len(s) for s in series])
    if int(lengths.min()) < 1:
        raise ValueError(f"{source}: a sequence has no steps")
    x = torch.zeros(len(series), int(lengths.max()), features.pop())
    for i, s in enumerate(series):
        if not np.isfinite(s).all():
            raise ValueError(f"{source}: sequence {i} contains NaN or inf")
        x[i, : len(s)] = torch.from_numpy(s.astype(np.float32))
    y = torch.tensor([classes.index(label) for label in labels])
    return Sequences(x, lengths, y, classes)


def read_ts(path: Path, classes: list[str] | None = None) -> Sequences:
    series, labels = [], []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            *dims, label = line.split(":")
            try:
                values = [np.array([float(v) for v in d.split(",")]) for d in dims]
            except ValueError as e:
                raise ValueError(f"{path}:{number}: not a number ({e})") from None
            if len({len(v) for v in values}) != 1:
                raise ValueError(f"{path}:{number}: dimensions of different lengths")
            series.append(np.stack(values, axis=1))
            labels.append(label.strip())
    return _pack(series, labels, classes, str(path))


def read_npz(path: Path, classes: list[str] | None = None) -> Sequences:
    with np.load(path, allow_pickle=False) as data:
        for key in ("x", "y"):
            if key not in data:
                raise ValueError(f"{path}: missing array {key!r} (has {sorted(data.keys())})")
        x, y = data["x"], data["y"]
        if x.ndim != 3 or y.shape != (x.shape[0],):
            raise ValueError(
                f"{path}: expected x (N, T, F) and y (N,), got x {x.shape}, y {y.shape}"
            )
        lengths = data["lengths"] if "lengths" in data else np.full(len(x), x.shape[1])
    series = [x[i, : int(n)] for i, n in enumerate(lengths)]
    return _pack(series, [str(v) for v in y], classes, str(path))


def read_csv(path: Path, classes: list[str] | None = None) -> Sequences:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("id", "label") if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; columns are {columns}")
        features = [c for c in columns if c not in ("id", "label")]
        if not features:
            raise ValueError(f"{path}: no feature columns besides id and label")
        rows: dict[str, list[list[float]]] = {}
        labels: dict[str, str] = {}
        for number, row in enumerate(reader, 2):
            try:
                values = [float(row[c]) for c in features]
            except (TypeError, ValueError):
                bad = next(c for c in features if not _is_float(row[c]))
                raise ValueError(
                    f"{path}:{number}: column {bad!r} holds {row[bad]!r}, expected a number"
                ) from None
            key = row["id"]
            if key in labels and labels[key] != row["label"]:
                raise ValueError(f"{path}:{number}: id {key} changes label")
            labels[key] = row["label"]
            rows.setdefault(key, []).append(values)
    series = [np.array(v) for v in rows.values()]
    return _pack(series, list(labels.values()), classes, str(path))


def _is_float(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def read_file(path: Path, classes: list[str] | None = None) -> Sequences:
    readers = {".ts": read_ts, ".npz": read_npz, ".csv": read_csv}
    path = Path(path)
    if path.suffix not in readers:
        raise ValueError(f"{path}: unknown format {path.suffix!r}; use .ts, .npz or .csv")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return readers[path.suffix](path, classes)


def uea(name: str) -> tuple[Sequences, Sequences]:
    """The official train and test splits of a UEA/UCR data set from the aeon wheel."""
    if name not in UEA:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(UEA)}")
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"dataset {name} is read from the aeon wheel's files, and aeon is not "
            "installed: pip install --no-deps aeon"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    train = read_ts(folder / f"{name}_TRAIN.ts")
    return train, read_ts(folder / f"{name}_TEST.ts", train.classes)
