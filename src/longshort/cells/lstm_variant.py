"""The LSTM's variants: one step forward, one step of BPTT, every option in one place.

The plain step is :mod:`longshort.cells.lstm`; this one adds, each alone or together:

- ``forget_gate=False``, the LSTM of Hochreiter and Schmidhuber (1997): f_t = 1, so
  C_t = C_{t-1} + i_t ⊙ C~_t, the pure constant error carousel.
- ``peephole`` (Gers and Schmidhuber 2000): i_t and f_t see C_{t-1}, o_t sees C_t, through
  diagonal weights p_i, p_f, p_o.
- ``coupled`` (CIFG, Greff et al. 2017): i_t = 1 - f_t, one gate block less.
- ``layer_norm`` (Ba et al. 2016): a_t = LN(W x_t)·γ_x + LN(U h_{t-1})·γ_h + b and
  h_t = o_t ⊙ tanh(LN(C_t)·γ_c + β_c); LN normalises each row over its features (mean 0,
  biased variance 1, ε = 1e-5) and the input part is done for all steps before the loop.
- zoneout (Krueger et al. 2017): C_t = d^c ⊙ C_{t-1} + (1 - d^c) ⊙ C'_t and
  h_t = d^h ⊙ h_{t-1} + (1 - d^h) ⊙ h'_t, where C'_t, h'_t are the cell's new values and d a
  0/1 draw in training (its probability in evaluation).
- recurrent dropout (Gal and Ghahramani 2016): U (m ⊙ h_{t-1}) with one mask m per sequence.

Gate blocks: [i, f, g, o], or [i, g, o] without a forget gate, or [f, g, o] when coupled
(:class:`longshort.engine.types.LSTMVariant`). Shapes: B batch, H hidden, P size of h, G gates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from longshort.engine.types import LSTMVariant, VariantMasks, VariantWeights

EPS = 1e-5  # layer norm's ε, torch's default


def normalise(a: Tensor) -> tuple[Tensor, Tensor]:
    """(a - μ) / sqrt(σ² + ε) over the last dimension, and 1 / sqrt(σ² + ε) (…, 1)."""
    mu = a.mean(dim=-1, keepdim=True)
    var = ((a - mu) ** 2).mean(dim=-1, keepdim=True)  # biased variance, as Ba et al.
    rstd = torch.rsqrt(var + EPS)
    return (a - mu) * rstd, rstd


def normalise_backward(dy: Tensor, a_hat: Tensor, rstd: Tensor) -> Tensor:
    """dL/da of a_hat = normalise(a), given dL/da_hat = dy."""
    mean_dy = dy.mean(dim=-1, keepdim=True)
    mean_dy_a = (dy * a_hat).mean(dim=-1, keepdim=True)
    return rstd * (dy - mean_dy - a_hat * mean_dy_a)


def split(a: Tensor, v: LSTMVariant) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """The blocks (i, f, g, o) of a (…, G); None for a gate the variant lacks."""
    blocks = a.chunk(v.blocks, dim=-1)
    if v.blocks == 4:
        return blocks  # type: ignore[return-value]
    first, g, o = blocks
    return (None, first, g, o) if v.coupled else (first, None, g, o)


def peepholes(w_ch: Tensor, v: LSTMVariant) -> tuple[Tensor | None, Tensor | None, Tensor]:
    """(p_i, p_f, p_o) of the peephole weights; None for a gate the variant lacks."""
    *first, p_o = w_ch.chunk(v.blocks - 1)
    if v.blocks == 4:
        return first[0], first[1], p_o
    return (None, first[0], p_o) if v.coupled else (first[0], None, p_o)


def new_cells(gates: Tensor, c_prev: Tensor, v: LSTMVariant) -> Tensor:
    """C'_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t from saved gate blocks (…, G) and C_{t-1} (…, H)."""
    i, f, g, _ = split(gates, v)
    i = 1 - f if i is None else i
    return i * g + (c_prev if f is None else f * c_prev)


def forward_step(
    xa: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step forward.

    xa: (B, G) the input part of the pre-activations, W x_t + b (or LN(W x_t)·γ_x + b).
    h_prev (B, P), c_prev (B, H); masks hold this step's zone_c (B or 1, H), zone_h (B or 1, P)
    and keep (B, P), or None. Returns the gate blocks after their nonlinearities (B, G),
    C_t (B, H), h_t (B, P) and the recurrent product U h_{t-1} (B, G).
    """
    hd = h_prev if masks.keep is None else masks.keep * h_prev  # m ⊙ h_{t-1}: recurrent dropout
    r = hd @ w.w_hh.T  # U h_{t-1}
    a = xa + (normalise(r)[0] * w.ln_hh if v.layer_norm else r)  # + LN(U h_{t-1})·γ_h
    ai, af, ag, ao = split(a, v)
    p_i, p_f, p_o = peepholes(w.w_ch, v) if v.peephole else (None, None, None)
    if p_i is not None:
        ai = ai + p_i * c_prev  # i_t = σ(W_i x_t + U_i h_{t-1} + p_i ⊙ C_{t-1} + b_i)
    if p_f is not None:
        af = af + p_f * c_prev  # f_t = σ(W_f x_t + U_f h_{t-1} + p_f ⊙ C_{t-1} + b_f)
    f = torch.sigmoid(af) if af is not None else None  # f_t; none in the 1997 LSTM (f = 1)
    i = torch.sigmoid(ai) if ai is not None else 1 - f  # i_t, or 1 - f_t with coupled gates
    g = torch.tanh(ag)  # C~_t = tanh(W_C x_t + U_C h_{t-1} + b_C)
    c_new = i * g + (c_prev if f is None else f * c_prev)  # C'_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    o = torch.sigmoid(ao if p_o is None else ao + p_o * c_new)  # o_t = σ(… + p_o ⊙ C'_t)
    n = normalise(c_new)[0] * w.ln_c_w + w.ln_c_b if v.layer_norm else c_new  # LN(C'_t)
    h_new = o * torch.tanh(n)  # h'_t = o_t ⊙ tanh(C'_t)
    if w.w_hr is not None:
        h_new = h_new @ w.w_hr.T  # projected: h'_t = W_hr (o_t ⊙ tanh(C'_t))
    c, h = c_new, h_new
    if masks.zone_c is not None:
        c = masks.zone_c * c_prev + (1 - masks.zone_c) * c_new  # C_t = d ⊙ C_{t-1} + (1-d) ⊙ C'_t
    if masks.zone_h is not None:
        h = masks.zone_h * h_prev + (1 - masks.zone_h) * h_new  # h_t = d ⊙ h_{t-1} + (1-d) ⊙ h'_t
    kept = ([] if v.coupled else [i]) + ([] if f is None else [f]) + [g, o]
    return torch.cat(kept, dim=1), c, h, r


def backward_step(
    dh: Tensor,
    dc: Tensor,
    gates: Tensor,
    c_prev: Tensor,
    r: Tensor | None,
    w: VariantWeights,
    v: LSTMVariant,
    masks: VariantMasks,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor, Tensor]:
    """One step back through time.

    dh: (B, P) dL/dh_t in all (output and step t+1); dc: (B, H) dL/dC_t from step t+1.
    gates (B, G) and r (B, G) as :func:`forward_step` returned them, c_prev (B, H) C_{t-1}.
    Returns da (B, G) at the pre-activations, dr (B, G) at U h_{t-1}, dn (B, H) at LN(C'_t)
    (None without layer norm), dh' (B, P) at the cell's new h, dL/dh_{t-1} (B, P),
    dL/dC_{t-1} (B, H) and dL/dC'_t (B, H) in all.
    """
    i, f, g, o = split(gates, v)
    i = 1 - f if i is None else i
    c_new = new_cells(gates, c_prev, v)  # C'_t, recomputed
    p_i, p_f, p_o = peepholes(w.w_ch, v) if v.peephole else (None, None, None)
    dh_new = dh if masks.zone_h is None else (1 - masks.zone_h) * dh  # zoneout of h
    dm = dh_new @ w.w_hr if w.w_hr is not None else dh_new  # back through h' = W_hr m
    if v.layer_norm:
        c_hat, rstd = normalise(c_new)
        tn = torch.tanh(c_hat * w.ln_c_w + w.ln_c_b)
    else:
        tn = torch.tanh(c_new)
    do = dm * tn  # h'_t = o_t ⊙ tanh(n_t)
    dn = dm * o * (1 - tn * tn)  # … and through tanh
    dc_new = normalise_backward(dn * w.ln_c_w, c_hat, rstd) if v.layer_norm else dn
    dc_new = dc_new + (dc if masks.zone_c is None else (1 - masks.zone_c) * dc)  # zoneout of C
    dao = do * o * (1 - o)  # σ'(z) = σ(1 - σ)
    if p_o is not None:
        dc_new = dc_new + dao * p_o  # o_t sees C'_t
    di = dc_new * g  # C'_t = f_t ⊙ C_{t-1} + i_t ⊙ C~_t
    dag = dc_new * i * (1 - g * g)  # tanh' = 1 - tanh²
    dc_prev = dc_new if f is None else dc_new * f  # ∂C'_t/∂C_{t-1} = f_t: the carousel
    if masks.zone_c is not None:
        dc_prev = dc_prev + masks.zone_c * dc
    blocks = []
    if not v.coupled:
        dai = di * i * (1 - i)
        blocks.append(dai)
        if p_i is not None:
            dc_prev = dc_prev + dai * p_i
    if f is not None:
        df = dc_new * c_prev - (di if v.coupled else 0)  # coupled: i_t = 1 - f_t
        daf = df * f * (1 - f)
        blocks.append(daf)
        if p_f is not None:
            dc_prev = dc_prev + daf * p_f
    da = torch.cat((*blocks, dag, dao), dim=1)
    dr = normalise_backward(da * w.ln_hh, *normalise(r)) if v.layer_norm else da
    dh_prev = dr @ w.w_hh  # the path through h_{t-1}
    if masks.keep is not None:
        dh_prev = dh_prev * masks.keep
    if masks.zone_h is not None:
        dh_prev = dh_prev + masks.zone_h * dh
    return da, dr, dn if v.layer_norm else None, dh_new, dh_prev, dc_prev, dc_new
