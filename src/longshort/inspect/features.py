"""Simple features of source text, and the units that track them.

Karpathy, Johnson and Fei-Fei ("Visualizing and Understanding Recurrent Networks", 2015) found
single cells of character language models that follow quotes, line length and brackets. To
find such cells here, each character gets the values of a few features computed from the text
itself, and each unit's trace is correlated with each feature (Pearson's r over the steps).

Features (one value per character, Python-like source in mind):

- ``in_string``: 1 inside a string literal (quotes included), else 0; ``'``, ``"`` and their
  triple forms, with backslash escapes;
- ``line_position``: the column, 0 at the start of each line;
- ``indentation``: the leading spaces of the character's line;
- ``bracket_depth``: open ``(``, ``[`` and ``{`` outside strings and comments;
- ``in_comment``: 1 from ``#`` (outside a string) to the end of the line.
"""

from __future__ import annotations

import torch
from torch import Tensor

FEATURES = ("in_string", "line_position", "indentation", "bracket_depth", "in_comment")
OPEN, CLOSE = "([{", ")]}"


def _indentations(text: str) -> list[int]:
    """The leading spaces of each character's line."""
    out: list[int] = []
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        out.extend([indent] * (len(line) + 1))  # the newline belongs to its line
    return out[: len(text)]


def text_features(text: str) -> dict[str, Tensor]:
    """Each feature of :data:`FEATURES` for each character of `text`: {name: (len(text),)}.

    Example::

        >>> f = text_features("x = f('a')")
        >>> f["in_string"].tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
        >>> f["bracket_depth"].tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    """
    string = comment = None  # the open quote, or the open comment
    escaped, depth = False, 0
    rows: list[tuple[float, float, float]] = []
    i = 0
    while i < len(text):
        ch, width = text[i], 1
        if string is not None:
            inside = 1.0
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif text.startswith(string, i):
                width, string = len(string), None  # the closing quote is inside
            elif ch == "\n" and len(string) == 1:
                string = None  # an unterminated one-line string ends with its line
        elif comment:
            inside = 0.0
        elif ch == "#":
            comment, inside = True, 0.0
        elif ch in "'\"":
            string = ch * 3 if text.startswith(ch * 3, i) else ch
            width, inside = len(string), 1.0
        else:
            inside = 0.0
            depth = depth + 1 if ch in OPEN else max(depth - 1, 0) if ch in CLOSE else depth
        rows.extend([(inside, float(depth), 1.0 if comment else 0.0)] * width)
        if ch == "\n":
            comment = None
        i += width
    values = torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)
    columns, col = [], 0
    for c in text:
        columns.append(col)
        col = 0 if c == "\n" else col + 1
    return {
        "in_string": values[:, 0],
        "line_position": torch.tensor(columns, dtype=torch.float64),
        "indentation": torch.tensor(_indentations(text), dtype=torch.float64),
        "bracket_depth": values[:, 1],
        "in_comment": values[:, 2],
    }


def correlations(values: Tensor, feature: Tensor) -> Tensor:
    """Pearson's r of each unit's trace with a feature. values (T, H), feature (T,) -> (H,);
    0 where either is constant."""
    v = values.double() - values.double().mean(dim=0)
    f = feature.double() - feature.double().mean()
    denom = v.norm(dim=0) * f.norm()
    r = (v * f[:, None]).sum(dim=0) / denom
    return torch.where(denom > 0, r, 0.0)


def tracking_units(
    values: Tensor, features: dict[str, Tensor], top: int = 5
) -> dict[str, list[tuple[int, float]]]:
    """For each feature, the `top` units whose trace (T, H) correlates most with it, strongest
    |r| first: {feature: [(unit, r), ...]}."""
    out = {}
    for name, feature in features.items():
        r = correlations(values, feature)
        order = torch.argsort(r.abs(), descending=True)[:top]
        out[name] = [(int(u), round(float(r[u]), 4)) for u in order]
    return out
