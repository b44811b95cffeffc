"""Time series for forecasting: the ``taylor`` electricity demand series shipped with pmdarima,
or any column of a CSV file.

``taylor`` is half-hourly electricity demand in England and Wales, June-August 2000 (4032
steps, Taylor 2003). It is read from the literal array in pmdarima's source file by parsing it
(``ast.literal_eval``), never importing or running pmdarima: ``pip install --no-deps pmdarima``
provides the file.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import math
from pathlib import Path

import torch
from torch import Tensor


def taylor() -> Tensor:
    """The 4032 half-hourly demand values, float32."""
    spec = importlib.util.find_spec("pmdarima")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "dataset taylor is read from pmdarima's files, and pmdarima is not "
            "installed: pip install --no-deps pmdarima"
        )
    source = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "taylor.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "array"
            and node.args
            and isinstance(node.args[0], ast.List)
        ):
            values = ast.literal_eval(node.args[0])
            if len(values) == 4032:
                return torch.tensor(values, dtype=torch.float32)
    raise ValueError(f"{source}: the taylor array was not found")


def read_column(path: Path, column: str) -> Tensor:
    """One numeric column of a CSV file with a header row, float32."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            raise ValueError(f"{path}: no column {column!r}; columns are {reader.fieldnames}")
        values = []
        for number, row in enumerate(reader, 2):
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}:{number}: column {column!r} holds {row[column]!r}, expected a number"
                ) from None
            if not math.isfinite(value):
                raise ValueError(f"{path}:{number}: column {column!r} holds {value}")
            values.append(value)
    if len(values) < 2:
        raise ValueError(f"{path}: column {column!r} has {len(values)} values")
    return torch.tensor(values, dtype=torch.float32)
