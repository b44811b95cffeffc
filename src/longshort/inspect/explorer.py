"""``longshort.inspect.explore``: one self-contained HTML page of what each unit learned.

The page (written by :mod:`longshort.report.explorer`) colours the input, token by token, with
any unit's C_t, h_t or gate value; ranks units by how well they track simple features of the
text (:mod:`longshort.inspect.features`, after Karpathy et al. 2015); draws each layer's gate
saturation (the fraction of steps a gate spends below 0.1 against above 0.9, their figure);
shows the chosen unit's carousel (product of its forget gates from a clicked step) and its
gradient flow; and does LSTMVis's selection (Strobelt et al. 2018): select a span, get the
units on across it and off around it, and every other place where that set fires.

Data travel in the page as one byte per value (per unit, 256 levels between its minimum and
maximum), base64-coded: 20,000 characters by 256 units and five quantities is about 34 MB.
"""

from __future__ import annotations

import base64
from pathlib import Path

import torch
from torch import Tensor

from longshort.inspect.features import text_features, tracking_units
from longshort.inspect.gradients import unit_gradient_flow
from longshort.inspect.trace import Trace, trace
from longshort.nn import GRU, LSTM, RNN

QUANTITIES = {LSTM: ("c", "h", "i", "f", "o", "g"), GRU: ("h", "r", "z", "n"), RNN: ("h",)}
CAROUSEL_GATE = {LSTM: "f", GRU: "z"}
SIGNED = ("c", "h", "g", "n")  # the others are gates in (0, 1)
RANKED = ("c", "h")  # the quantities correlated with the text's features


def _pack(values: Tensor) -> dict[str, object]:
    """(N, H) values as one byte each, per unit between its own minimum and maximum."""
    v = values.detach().double().cpu()
    lo, hi = v.min(dim=0).values, v.max(dim=0).values
    scale = torch.where(hi > lo, hi - lo, 1.0)
    q = ((v - lo) / scale * 255).round().clamp(0, 255).to(torch.uint8)
    return {
        "b64": base64.b64encode(q.contiguous().numpy().tobytes()).decode("ascii"),
        "lo": [round(x, 5) for x in lo.tolist()],
        "hi": [round(x, 5) for x in hi.tolist()],
    }


def _flatten(values: Tensor, lengths: list[int]) -> Tensor:
    """(T, B, H) -> (sum of lengths, H): each sequence's own steps, one after the other."""
    return torch.cat([values[:n, b] for b, n in enumerate(lengths)])


def _saturation(tr: Trace, gates: tuple[str, ...], lengths: list[int]) -> dict[str, object]:
    out = {}
    for name in gates:
        v = _flatten(getattr(tr, name), lengths)
        out[name] = {
            "left": [round(x, 4) for x in (v < 0.1).double().mean(dim=0).tolist()],
            "right": [round(x, 4) for x in (v > 0.9).double().mean(dim=0).tolist()],
        }
    return out


def _layer_name(tr: Trace) -> str:
    return f"layer {tr.layer}" + (" (reverse)" if tr.direction else "")


def _gradients(model, rnn, feats: Tensor, traces: list[Trace], steps: int, window: int):
    """|∂score/∂state| over the last `window` steps of the first sequence, per layer, or
    None where the layer is not a plain one-direction stack (see unit_gradient_flow)."""
    start = max(steps - window, 0)
    states = None  # zeros at the first step, else the traced states before the window
    if start > 0:
        kinds = ("h", "c") if traces[0].c is not None else ("h",)
        states = tuple(torch.stack([getattr(t, q)[start - 1, 0] for t in traces]) for q in kinds)
    head = getattr(model, "head", None)

    def score(out: Tensor) -> Tensor:
        last = out[-1] if head is None else head(out[-1])
        return last.max()  # the prediction's logit (or the largest output)

    x = feats[0, start:steps] if rnn.batch_first else feats[start:steps, 0]
    try:
        grads = unit_gradient_flow(rnn, x, score, states)
    except ValueError:
        return None
    return {"start": start, "layers": [_pack(g) for g in grads]}


def explore_data(
    model,
    x: Tensor,
    tokens: list[list[str]],
    *,
    lengths: list[int] | None = None,
    labels: list[str] | None = None,
    text: bool = False,
    title: str = "",
    note: str = "",
    window: int = 300,
) -> dict[str, object]:
    """What the page shows, as plain data (see :func:`explore`)."""
    rnn = getattr(model, "rnn", model)
    if not isinstance(rnn, LSTM | GRU | RNN):
        raise TypeError(
            "explore: model must be a longshort LSTM, GRU or RNN, or a model holding one as "
            f".rnn, got {type(model).__name__}"
        )
    kind = next(k for k in QUANTITIES if isinstance(rnn, k))
    lengths = lengths or [len(t) for t in tokens]
    if len(tokens) != len(lengths) or any(
        len(t) != n for t, n in zip(tokens, lengths, strict=True)
    ):
        raise ValueError(
            "explore: tokens must hold one list of strings per sequence, a string a step; got "
            f"lists of {[len(t) for t in tokens]} strings for sequences of lengths {lengths}"
        )
    training = model.training
    model.eval()  # no dropout in what the page shows; the mode is restored below
    try:
        return _data(model, rnn, kind, x, tokens, lengths, labels, text, title, note, window)
    finally:
        model.train(training)


def _data(model, rnn, kind, x, tokens, lengths, labels, text, title, note, window):
    """explore_data's work, with the model in evaluation mode."""
    with torch.no_grad():
        feats = model.features(x) if hasattr(model, "features") else x
        lens = torch.tensor(lengths) if len(set(lengths)) > 1 else None
        traces = trace(rnn, feats, lens)
    layers = []
    for tr in traces:
        names = [q for q in QUANTITIES[kind] if getattr(tr, q) is not None]
        values = {q: _flatten(getattr(tr, q), lengths) for q in names}
        gates = tuple(q for q in names if q not in SIGNED)
        layers.append({
            "name": _layer_name(tr),
            "units": int(tr.h.shape[-1]),
            "quantities": {q: _pack(v) for q, v in values.items()},
            "saturation": _saturation(tr, gates, lengths),
            "values": values,  # dropped before the page is written
        })  # fmt: skip
    flat = [t for seq in tokens for t in seq]
    ranking = _ranking(layers, "".join(flat)) if text else []
    for layer in layers:
        del layer["values"]
    with torch.enable_grad():
        grads = _gradients(model, rnn, feats, traces, lengths[0], window)
    return {
        "title": title,
        "note": note,
        "cell": kind.__name__,
        "text": text,
        "tokens": flat,
        "starts": [sum(lengths[:k]) for k in range(len(lengths))],
        "labels": labels or [],
        "signed": list(SIGNED),
        "carousel": CAROUSEL_GATE.get(kind),
        "layers": layers,
        "ranking": ranking,
        "gradient": grads,
    }


TOP = 4  # units listed per feature


def _ranking(layers: list[dict], text: str) -> list[list[object]]:
    """[feature, layer, quantity, unit, r] for the TOP units (over every layer, C_t and h_t)
    that track each feature best, strongest |r| first; a unit's C_t and h_t count once."""
    features = text_features(text)
    rows = []
    for k, layer in enumerate(layers):
        for q in RANKED:
            if q not in layer["values"]:
                continue
            for feature, best in tracking_units(layer["values"][q], features, top=TOP).items():
                rows += [[feature, k, q, unit, r] for unit, r in best]
    rows.sort(key=lambda row: (row[0], -abs(row[4])))
    kept, seen = [], set()
    for row in rows:
        key = (row[0], row[1], row[3])
        if key not in seen and sum(r[0] == row[0] for r in kept) < TOP:
            kept.append(row)
            seen.add(key)
    return kept


def explore(
    model,
    x: Tensor,
    tokens: list[str] | list[list[str]],
    path: Path | str = "explore.html",
    *,
    lengths: list[int] | None = None,
    labels: list[str] | None = None,
    text: bool | None = None,
    title: str = "What each unit learned",
    note: str = "",
    window: int = 300,
) -> Path:
    """Write the explorer page of `model` run over `x` to `path` and return the path.

    model: a :class:`longshort.LSTM`, ``GRU`` or ``RNN``, or a model that holds one as
    ``.rnn`` (with ``.features(x)`` turning x into the layer's input and ``.head`` its readout,
    as longshort's task models do). x: a batch as the model takes it. tokens: one string per
    step for one sequence, or one list per sequence of the batch (its length is the
    sequence's). text: whether the tokens are characters of one text, whose features rank the
    units (default: every token one character). labels: a class name per sequence. window:
    the steps before the end of the first sequence whose gradient flow is computed.
    """
    seqs = [list(tokens)] if tokens and isinstance(tokens[0], str) else [list(t) for t in tokens]
    if text is None:
        text = len(seqs) == 1 and all(len(t) == 1 for t in seqs[0])
    data = explore_data(
        model, x, seqs, lengths=lengths, labels=labels, text=text, title=title, note=note,
        window=window,
    )  # fmt: skip
    from longshort.report.explorer import render  # the page is a report's job

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    return path
