"""The LSTM's variants as module options: validation, parameters, masks and traces.

Shared by :class:`longshort.LSTM` and :class:`longshort.LSTMCell`; the equations are in
:mod:`longshort.cells.lstm_variant`. Parameters a variant adds or changes, per layer k and
direction (suffix ``_reverse``), beside torch.nn's:

- ``weight_ih_l{k}``, ``weight_hh_l{k}``, biases: G = 3H rows [i, g, o] without a forget gate,
  [f, g, o] with coupled gates (4H [i, f, g, o] otherwise).
- ``weight_ch_l{k}`` ((blocks - 1) * H,), peephole: [p_i, p_f, p_o] in the gates' order
  without g, initialised like every weight, uniform in ±1/sqrt(H).
- ``weight_ln_ih_l{k}``, ``weight_ln_hh_l{k}`` (G,), ``weight_ln_c_l{k}``, ``bias_ln_c_l{k}``
  (H,), layer norm: the gains γ_x, γ_h, γ_c start at 1, the bias β_c at 0.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor, nn

from longshort import engine
from longshort.cells.lstm_variant import normalise, split
from longshort.engine.types import LSTMVariant, VariantMasks, VariantWeights

EXTRA = ("weight_ch", "weight_ln_ih", "weight_ln_hh", "weight_ln_c", "bias_ln_c")
_FIELDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", *EXTRA)  # VariantWeights'


class Options(NamedTuple):
    """A module's variant options, validated."""

    variant: LSTMVariant = LSTMVariant()
    zoneout: tuple[float, float] = (0.0, 0.0)  # (z_c, z_h)
    recurrent_dropout: float = 0.0

    @property
    def active(self) -> bool:
        """Whether anything differs from the plain LSTM."""
        return self != Options()

    def runs_plain(self, training: bool) -> bool:
        """Whether a call computes exactly the plain LSTM: recurrent dropout alone, in
        evaluation (no mask is drawn, and the training masks' 1 / (1 - p) scaling keeps the
        expectation). Such calls take the plain layer's engine and its no-grad path."""
        return not training and self._replace(recurrent_dropout=0.0) == Options()

    def describe(self) -> str:
        """The options that differ from the plain LSTM, as keyword arguments."""
        v = self.variant
        parts = [
            "forget_gate=False" if not v.forget_gate else "",
            "peephole=True" if v.peephole else "",
            "coupled_gates=True" if v.coupled else "",
            "layer_norm=True" if v.layer_norm else "",
            f"zoneout={self.zoneout}" if any(self.zoneout) else "",
            f"recurrent_dropout={self.recurrent_dropout}" if self.recurrent_dropout else "",
        ]
        return ", ".join(p for p in parts if p)


def _probability(owner: str, arg: str, value: object, top: float, closed: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and 0 <= value <= top and (closed or value < top)
    if not ok:
        bound = f"[0, {top}]" if closed else f"[0, {top})"
        raise ValueError(f"{owner}: {arg} must be a number in {bound}, got {value!r}")
    return float(value)


def options(
    owner: str,
    forget_gate: bool,
    peephole: bool,
    coupled_gates: bool,
    layer_norm: bool,
    zoneout: float | tuple[float, float],
    recurrent_dropout: float,
) -> Options:
    """The validated options; errors name the argument, the value and what is accepted."""
    for arg, value in (
        ("forget_gate", forget_gate),
        ("peephole", peephole),
        ("coupled_gates", coupled_gates),
        ("layer_norm", layer_norm),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"{owner}: {arg} must be a bool, got {type(value).__name__}")
    if coupled_gates and not forget_gate:
        raise ValueError(
            f"{owner}: coupled_gates=True sets i_t = 1 - f_t and needs the forget gate; "
            "got forget_gate=False (pick one of the two)"
        )
    pair = zoneout if isinstance(zoneout, tuple | list) else (zoneout, zoneout)
    if len(pair) != 2:
        raise ValueError(f"{owner}: zoneout must be a number or a pair (z_c, z_h), got {zoneout!r}")
    zc, zh = (_probability(owner, "zoneout", z, 1.0, True) for z in pair)
    p = _probability(owner, "recurrent_dropout", recurrent_dropout, 1.0, False)
    v = LSTMVariant(forget_gate, peephole, coupled_gates, layer_norm)
    return Options(v, (zc, zh), p)


class PicklesOptions:
    """Mixin of the modules with variant options: ``options`` pickles as plain tuples of bools
    and floats, so ``torch.load(..., weights_only=True)`` of a whole model needs the classes a
    torch.nn user would list (the model's own, ``longshort.LSTM`` in place of ``nn.LSTM``),
    not longshort's internals. Pickles that hold an :class:`Options` still load."""

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # type: ignore[misc]
        opts = state.get("options")
        if isinstance(opts, Options):
            state["options"] = (tuple(opts.variant), tuple(opts.zoneout), opts.recurrent_dropout)
        return state

    def __setstate__(self, state: dict) -> None:
        opts = state.get("options")
        if isinstance(opts, tuple) and not isinstance(opts, Options):
            variant, zoneout, dropout = opts
            state = {**state, "options": Options(LSTMVariant(*variant), tuple(zoneout), dropout)}
        super().__setstate__(state)  # type: ignore[misc]


def check_biases(owner: str, opts: Options, forget_bias: object, input_bias: object) -> None:
    """A forget or input bias needs the gate it starts."""
    if forget_bias is not None and not opts.variant.forget_gate:
        raise ValueError(
            f"{owner}: forget_bias={forget_bias!r} needs a forget gate; forget_gate=False has none"
        )
    if input_bias is not None and opts.variant.coupled:
        raise ValueError(
            f"{owner}: input_bias={input_bias!r} has no input gate to start: with "
            "coupled_gates=True, i_t = 1 - f_t (set forget_bias instead)"
        )


def bias_blocks(v: LSTMVariant) -> dict[str, int]:
    """The index of the forget and input gate blocks in the weights' layout."""
    if v.blocks == 4:
        return {"forget": 1, "input": 0}
    return {"forget": 0} if v.coupled else {"input": 0}


def make_parameters(module: nn.Module, v: LSTMVariant, suffixes: list[str]) -> None:
    """Give module the parameters of variant v for every suffix ("_l0", "_l0_reverse", or ""
    for a cell): gate weights with v.blocks blocks in place of torch.nn's four, and the extras."""
    for sfx in suffixes:
        w_ih = getattr(module, "weight_ih" + sfx)
        hidden = module.hidden_size
        rows = v.blocks * hidden
        like = {"device": w_ih.device, "dtype": w_ih.dtype}
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            old = getattr(module, kind + sfx, None)
            if old is not None and rows != old.shape[0]:
                shape = (rows, *old.shape[1:])
                setattr(module, kind + sfx, nn.Parameter(torch.empty(shape, **like)))
        sizes = {
            "weight_ch": (v.blocks - 1) * hidden if v.peephole else 0,
            "weight_ln_ih": rows if v.layer_norm else 0,
            "weight_ln_hh": rows if v.layer_norm else 0,
            "weight_ln_c": hidden if v.layer_norm else 0,
            "bias_ln_c": hidden if v.layer_norm else 0,
        }
        for kind, size in sizes.items():
            if size:
                module.register_parameter(kind + sfx, nn.Parameter(torch.empty(size, **like)))


def reset_extras(module: nn.Module, suffixes: list[str], hidden: int) -> None:
    """Peepholes uniform in ±1/sqrt(H); layer-norm gains 1 and bias 0."""
    stdv = 1.0 / math.sqrt(hidden)
    with torch.no_grad():
        for sfx in suffixes:
            for kind, init in (
                ("weight_ch", lambda p: p.uniform_(-stdv, stdv)),
                ("weight_ln_ih", nn.init.ones_),
                ("weight_ln_hh", nn.init.ones_),
                ("weight_ln_c", nn.init.ones_),
                ("bias_ln_c", nn.init.zeros_),
            ):
                p = getattr(module, kind + sfx, None)
                if p is not None:
                    init(p)


def weights(module: nn.Module, sfx: str) -> VariantWeights:
    """The :class:`VariantWeights` of one layer and direction (suffix as for make_parameters).
    Read from the module's parameter dict where they are there (what ``torch.func``'s
    ``functional_call`` swaps too): ``nn.Module.__getattr__`` costs a microsecond a name, and a
    cell reads ten at every step. A weight the variant lacks is None without asking
    ``__getattr__`` (which raised and caught an AttributeError for each, 6 us of a 40 us
    peephole step); one a parametrization or weight norm moved is read where it went."""
    params, buffers, attrs, cls = module._parameters, module._buffers, module.__dict__, type(module)

    def get(kind: str) -> Tensor | None:
        name = kind + sfx
        if name in params:
            return params[name]
        if name in buffers or name in attrs or hasattr(cls, name):  # moved, or a property
            return getattr(module, name)
        return None

    return VariantWeights(*map(get, _FIELDS))


def draw_masks(opts: Options, x: Tensor, sizes: tuple[int, int], training: bool) -> VariantMasks:
    """Zoneout and recurrent dropout masks for one layer and direction over x (T, B, ...),
    drawn from torch's generator in training (so a seed reproduces them), the expectation in
    evaluation. sizes: (H, P)."""
    steps, batch = x.shape[0], x.shape[1]
    (zc, zh), p = opts.zoneout, opts.recurrent_dropout
    hidden, out_size = sizes

    def zone(z: float, size: int, draw: int) -> Tensor | None:
        if z == 0:
            return None
        if not training:
            return x.new_full((1, 1, size), z)
        return engine.bernoulli((steps, batch, size), z, x, draw)  # 1 with probability z

    keep = None
    if p > 0 and training:
        keep = engine.bernoulli((batch, out_size), 1 - p, x, 2) / (1 - p)
    return VariantMasks(zone(zc, hidden, 0), zone(zh, out_size, 1), keep)


def full_gates(gates: Tensor, v: LSTMVariant) -> Tensor:
    """(…, 4H) [i, f, g, o] from a variant's gate blocks: f = 1 without a forget gate,
    i = 1 - f with coupled gates."""
    i, f, g, o = split(gates, v)
    f = torch.ones_like(g) if f is None else f
    i = 1 - f if i is None else i
    return torch.cat((i, f, g, o), dim=-1)


def cell_output(gates: Tensor, cs: Tensor, w: VariantWeights, v: LSTMVariant) -> dict[str, Tensor]:
    """What a trace shows beside the gates: C'_t before zoneout ("c_new"), LN(C'_t)·γ_c + β_c
    ("c_norm", layer norm only) and h'_t = o_t ⊙ tanh(·) before projection and zoneout
    ("h_new"), each (T, B, H), from the saved gates (T, B, G) and cs (T+1, B, H)."""
    i, f, g, o = split(full_gates(gates, v), LSTMVariant())
    c_new = f * cs[:-1] + i * g
    extras = {"c_new": c_new}
    n = c_new
    if v.layer_norm:
        n = extras["c_norm"] = normalise(c_new)[0] * w.ln_c_w + w.ln_c_b
    extras["h_new"] = o * torch.tanh(n)
    return extras
