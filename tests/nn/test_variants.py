"""The LSTM's variants against an independent implementation written here in plain torch ops.

``manual`` below is an LSTMCell-style loop, written from the papers' equations with
``torch.nn.functional.layer_norm`` and autograd, sharing no code with longshort. Every variant,
alone and together, runs through both CPU engines and is compared with it: forward at 1e-5,
gradients of every parameter and of the input and initial states at 1e-4 (float32); float64
gradcheck covers the handwritten BPTT itself.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

import longshort
from longshort import engine
from longshort.engine import gradient_norms
from longshort.engine.types import LSTMVariant, VariantMasks
from longshort.inspect import trace
from longshort.nn import variants
from tests.helpers import record, rel_err

T, B, I, H = 6, 3, 5, 4

ALONE = {
    "no_forget": {"forget_gate": False},
    "peephole": {"peephole": True},
    "coupled": {"coupled_gates": True},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": (0.3, 0.2)},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
}
TOGETHER = {
    "all_coupled": {
        "peephole": True,
        "coupled_gates": True,
        "layer_norm": True,
        "zoneout": (0.3, 0.2),
        "recurrent_dropout": 0.25,
    },
    "all_no_forget": {
        "forget_gate": False,
        "peephole": True,
        "layer_norm": True,
        "zoneout": 0.1,
        "recurrent_dropout": 0.1,
    },
    "peephole_ln": {"peephole": True, "layer_norm": True},
}
CASES = {**ALONE, **TOGETHER}


def manual(x, h0, c0, params, kw, masks, proj=False):
    """One layer, time-major, from the equations: a plain loop with autograd.

    params: the module's parameters of layer 0 by name; masks: (zone_c (T,B,H) or None,
    zone_h (T,B,P) or None, keep (B,P) or None)."""
    zone_c, zone_h, keep = masks
    names = ["i", "f", "g", "o"]
    if kw.get("forget_gate") is False:
        names = ["i", "g", "o"]
    if kw.get("coupled_gates"):
        names = ["f", "g", "o"]
    w, u = params["weight_ih_l0"], params["weight_hh_l0"]
    b = params["bias_ih_l0"] + params["bias_hh_l0"]
    ln = kw.get("layer_norm", False)
    peep = {}
    if kw.get("peephole"):
        peep = dict(
            zip(
                [n for n in names if n != "g"],
                params["weight_ch_l0"].split(c0.shape[1]),
                strict=True,
            )
        )

    def norm(a, gain, bias=None):
        return F.layer_norm(a, a.shape[-1:], eps=1e-5) * gain + (0 if bias is None else bias)

    h, c, outs = h0, c0, []
    for t in range(x.shape[0]):
        hr = h if keep is None else h * keep
        if ln:
            a = norm(x[t] @ w.T, params["weight_ln_ih_l0"])
            a = a + norm(hr @ u.T, params["weight_ln_hh_l0"]) + b
        else:
            a = x[t] @ w.T + hr @ u.T + b
        blk = dict(zip(names, a.split(c0.shape[1], dim=1), strict=True))
        f = torch.sigmoid(blk["f"] + peep.get("f", 0) * c) if "f" in blk else 1.0
        i = torch.sigmoid(blk["i"] + peep.get("i", 0) * c) if "i" in blk else 1 - f
        g = torch.tanh(blk["g"])
        c_new = f * c + i * g
        o = torch.sigmoid(blk["o"] + peep.get("o", 0) * c_new)
        if ln:
            h_new = o * torch.tanh(norm(c_new, params["weight_ln_c_l0"], params["bias_ln_c_l0"]))
        else:
            h_new = o * torch.tanh(c_new)
        if proj:
            h_new = h_new @ params["weight_hr_l0"].T
        c = c_new if zone_c is None else zone_c[t] * c + (1 - zone_c[t]) * c_new
        h = h_new if zone_h is None else zone_h[t] * h + (1 - zone_h[t]) * h_new
        outs.append(h)
    return torch.stack(outs), h, c


def _model(kw, proj=0, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    m = longshort.LSTM(I, H, proj_size=proj, dtype=dtype, **kw)
    with torch.no_grad():  # spread the gains and biases away from their neutral start
        for name, p in m.named_parameters():
            if "ln" in name or "weight_ch" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return m


def _masks(kw, p_size, seed=1, dtype=torch.float32, batch=B):
    g = torch.Generator().manual_seed(seed)
    zc, zh = (
        kw.get("zoneout", (0, 0))
        if isinstance(kw.get("zoneout"), tuple)
        else (kw.get("zoneout", 0),) * 2
    )
    p = kw.get("recurrent_dropout", 0)
    bern = lambda prob, *s: torch.bernoulli(torch.full(s, prob, dtype=dtype), generator=g)  # noqa: E731
    zone_c = bern(zc, T, batch, H) if zc else None
    zone_h = bern(zh, T, batch, p_size) if zh else None
    keep = bern(1 - p, batch, p_size) / (1 - p) if p else None
    return zone_c, zone_h, keep


def _run_engine(m, x, h0, c0, masks, lengths=None, segment=0):
    w = variants.weights(m, "_l0")
    res = engine.variant_layer(
        x, h0, c0, w, m.options.variant, VariantMasks(*masks), lengths, segment
    )
    return res.out, res.h_n, res.c_n


@pytest.mark.parametrize("proj", [0, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_variant_matches_manual_loop(cpu_engine, case, proj):
    kw = CASES[case]
    m = _model(kw, proj)
    p_size = proj or H
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = torch.randn(B, p_size, requires_grad=True)
    c0 = torch.randn(B, H, requires_grad=True)
    masks = _masks(kw, p_size)
    got = _run_engine(m, x, h0, c0, masks)
    params = dict(m.named_parameters())
    want = manual(x, h0, c0, params, kw, masks, proj=bool(proj))
    for a, b in zip(got, want, strict=True):
        assert record("variant forward", rel_err(a, b)) < 1e-5
    weights = torch.randn_like(want[0])
    inputs = [x, h0, c0, *params.values()]
    g_got = torch.autograd.grad((got[0] * weights).sum() + got[2].sum(), inputs)
    g_want = torch.autograd.grad((want[0] * weights).sum() + want[2].sum(), inputs)
    for name, a, b in zip(["x", "h0", "c0", *params], g_got, g_want, strict=True):
        assert record("variant gradient", rel_err(a, b)) < 1e-4, name


IN_LOOP = {
    "peephole_zoneout_dropout": {"peephole": True, "zoneout": (0.3, 0.2), "recurrent_dropout": 0.2},
    "no_forget": {"forget_gate": False},
    "coupled_peephole": {"coupled_gates": True, "peephole": True},
    "layer_norm": {"layer_norm": True},  # W x_t and U h_{t-1} apart, each normalised
}


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("proj", [0, 6])
@pytest.mark.parametrize("case", list(IN_LOOP))
def test_variant_inference_makes_w_x_in_its_loop(monkeypatch, case, proj, ragged):
    """A no-graph call of a variant makes W x_t inside its loop, one product on
    [x_t | h_{t-1}], or with layer norm one on x_t and one on h_{t-1} (no (T, B, G) input part
    written): the equations' values, with masks drawn as in training, lengths and
    projection."""
    from longshort.engine.cpu import lstm_variant

    parts = []
    original = lstm_variant.scratch_input_part
    monkeypatch.setattr(
        lstm_variant, "scratch_input_part", lambda *a: parts.append(1) or original(*a)
    )
    kw, steps, batch, inp, hid = IN_LOOP[case], 7, 5, 3, 8
    torch.manual_seed(4)
    m = longshort.LSTM(inp, hid, proj_size=proj, **kw)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "ln" in name or "weight_ch" in name:
                p.add_(torch.randn_like(p) * 0.3)
    p_size = proj or hid
    g = torch.Generator().manual_seed(2)
    bern = lambda prob, *s: torch.bernoulli(torch.full(s, prob), generator=g)  # noqa: E731
    zc, zh = kw.get("zoneout", (0, 0))
    rd = kw.get("recurrent_dropout", 0)
    masks = (
        bern(zc, steps, batch, hid) if zc else None,
        bern(zh, steps, batch, p_size) if zh else None,
        bern(1 - rd, batch, p_size) / (1 - rd) if rd else None,
    )
    x, h0, c0 = torch.randn(steps, batch, inp), torch.randn(batch, p_size), torch.randn(batch, hid)
    lengths = torch.tensor([7, 2, 5, 1, 6]) if ragged else None
    w = variants.weights(m, "_l0")
    with torch.no_grad():
        got = engine.variant_layer(
            x, h0, c0, w, m.options.variant, VariantMasks(*masks), lengths, keep=False
        )
        want = manual(x, h0, c0, dict(m.named_parameters()), kw, masks, proj=bool(proj))
    assert parts == []
    if lengths is None:
        for a, b in zip((got.out, got.h_n, got.c_n), want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        return
    with torch.no_grad():  # each sequence against its own run, to its own length
        for k, n in enumerate(lengths.tolist()):
            rows = [mk if mk is None else mk[:, k : k + 1] for mk in masks[:2]]
            keep = None if masks[2] is None else masks[2][k : k + 1]
            one = manual(x[:n, k : k + 1], h0[k : k + 1], c0[k : k + 1],
                         dict(m.named_parameters()), kw,
                         (*[None if r is None else r[:n] for r in rows], keep),
                         proj=bool(proj))  # fmt: skip
            torch.testing.assert_close(got.out[:n, k : k + 1], one[0], rtol=1e-5, atol=1e-6)
            assert bool(got.out[n:, k].eq(0).all())
            torch.testing.assert_close(got.h_n[k : k + 1], one[1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got.c_n[k : k + 1], one[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("case", "proj"), [(c, 0) for c in CASES] + [("all_coupled", 2), ("all_no_forget", 2)]
)
def test_variant_gradcheck(cpu_engine, case, proj):
    kw = CASES[case]
    m = _model(kw, proj, dtype=torch.float64)
    masks = _masks(kw, proj or H, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    rnd = lambda *s: (torch.randn(*s, generator=g, dtype=torch.float64) * 0.7).requires_grad_()  # noqa: E731
    w = variants.weights(m, "_l0")
    names = [k for k, t in w._asdict().items() if t is not None]
    args = [rnd(T, B, I), rnd(B, proj or H), rnd(B, H)] + [
        getattr(w, k).detach().clone().requires_grad_() for k in names
    ]
    lengths = torch.tensor([6, 2, 4])

    def f(x, h0, c0, *ws):
        weights = w._replace(**dict(zip(names, ws, strict=True)))
        res = engine.variant_layer(
            x, h0, c0, weights, m.options.variant, VariantMasks(*masks), lengths
        )
        return res.out, res.h_n, res.c_n

    assert gradcheck(f, tuple(args), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_variant_gradgradcheck():
    m = _model(TOGETHER["all_coupled"], dtype=torch.float64)
    x = torch.randn(3, 2, I, dtype=torch.float64, requires_grad=True)
    m.eval()  # zoneout's expectation, no random masks

    def f(x):
        return m(x)[0]

    assert torch.autograd.gradgradcheck(f, (x,), eps=1e-6, atol=1e-6)


def test_compiled_engine_matches_reference():
    kw = TOGETHER["all_no_forget"]
    m = _model(kw)
    x, h0, c0 = torch.randn(T, B, I), torch.randn(B, H), torch.randn(B, H)
    masks = _masks(kw, H)
    with engine.use_cpu_engine("reference"):
        want = _run_engine(m, x, h0, c0, masks)
    got = _run_engine(m, x, h0, c0, masks)
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("case", ["layer_norm", "all_coupled"])
def test_layers_bidirectional_lengths_and_segments(cpu_engine, case):
    """Two bidirectional layers with lengths: against running each direction by hand (reversed
    sequences), and recomputation in segments gives the same gradients."""
    kw = {k: v for k, v in CASES[case].items() if k not in ("zoneout", "recurrent_dropout")}
    torch.manual_seed(0)
    m = longshort.LSTM(I, H, num_layers=2, bidirectional=True, **kw).eval()
    x = torch.randn(T, B, I)
    lengths = torch.tensor([6, 3, 5])
    out, (h_n, c_n) = m(x, lengths=lengths)
    params = dict(m.named_parameters())
    for b in range(B):  # each sequence alone, cut to its length
        n = int(lengths[b])
        seq = x[:n, b : b + 1]
        layer_in = seq
        for layer in range(2):
            outs = []
            for d, sfx in enumerate(["", "_reverse"]):
                p = {k.replace(f"_l{layer}{sfx}", "_l0"): v for k, v in params.items()
                     if k.endswith(f"_l{layer}{sfx}")}  # fmt: skip
                inp = layer_in.flip(0) if d else layer_in
                zero = torch.zeros(1, H)
                o, hh, cc = manual(inp, zero, zero, p, kw, (None, None, None))
                outs.append(o.flip(0) if d else o)
                k = 2 * layer + d
                assert rel_err(hh, h_n[k, b : b + 1]) < 1e-5
                assert rel_err(cc, c_n[k, b : b + 1]) < 1e-5
            layer_in = torch.cat(outs, dim=2)
        assert rel_err(layer_in[:, 0], out[:n, b]) < 1e-5
        assert out[n:, b].abs().max() == 0 if n < T else True
    m.train()
    m_seg = longshort.LSTM(I, H, num_layers=2, bidirectional=True, recompute_segment=2, **kw)
    m_seg.load_state_dict(m.state_dict())
    grads = []
    for model in (m, m_seg):
        model.zero_grad()
        y, _ = model(x, lengths=lengths)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert rel_err(a, b) < 1e-5


def test_zoneout_and_recurrent_dropout_masks_follow_the_seed_and_modes():
    m = longshort.LSTM(I, H, zoneout=(0.5, 0.5), recurrent_dropout=0.5)
    x = torch.randn(T, B, I)
    torch.manual_seed(7)
    a = m(x)[0]
    torch.manual_seed(7)
    b = m(x)[0]
    torch.manual_seed(8)
    c = m(x)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    m.eval()  # the expectation: deterministic, and equal to the manual loop with z in place
    e1, e2 = m(x)[0], m(x)[0]
    assert torch.equal(e1, e2)
    zc = torch.full((T, B, H), 0.5)
    want = manual(x, torch.zeros(B, H), torch.zeros(B, H), dict(m.named_parameters()),
                  {}, (zc, zc, None))[0]  # fmt: skip
    assert rel_err(e1, want) < 1e-5


def test_traces_show_every_gate_and_the_variant_quantities():
    kw = {"coupled_gates": True, "layer_norm": True, "zoneout": (0.4, 0.0)}
    m = _model(kw).eval()
    x = torch.randn(T, B, I)
    tr = trace(m, x)[0]
    assert torch.allclose(tr.i, 1 - tr.f)  # coupled
    assert torch.allclose(tr.c[0], 0.4 * 0 + 0.6 * (tr.f[0] * 0 + tr.i[0] * tr.g[0]), atol=1e-6)
    ln = F.layer_norm(tr.extras["c_new"], (H,), m.weight_ln_c_l0, m.bias_ln_c_l0, eps=1e-5)
    assert torch.allclose(tr.h, tr.o * torch.tanh(ln), atol=1e-6)
    out = m(x)[0]
    assert torch.allclose(out, tr.h, atol=1e-6)  # no zoneout on h, no projection
    nf = trace(_model({"forget_gate": False}), x)[0]
    assert torch.equal(nf.f, torch.ones_like(nf.f))


def test_gradient_norms_are_recorded_for_variants():
    m = _model({"peephole": True})
    with gradient_norms.recording() as records:
        m(torch.randn(T, B, I))[0].sum().backward()
    assert records and records[0][1].shape == (T, B, 2)


@pytest.mark.parametrize("case", ["no_forget", "all_coupled"])
def test_bf16_variants_run_close_to_fp32(case):
    m = _model(CASES[case]).eval()
    x = torch.randn(T, B, I)
    want = m(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = m(x)[0]
    assert got.dtype == torch.bfloat16
    assert rel_err(got.float(), want) < 3e-2


@pytest.mark.parametrize("batch", [2, 7])
@pytest.mark.parametrize("case", ["layer_norm", "all_coupled"])
def test_bf16_variant_cell_close_to_manual(case, batch):
    """A bf16 variant cell (the float32 one-call step on float32 copies, rounded back):
    outputs and gradients within bf16's reach of the manual float32 step on the same
    bf16-rounded weights, and every gradient in bf16."""
    kw = CASES[case]
    layer = _model(kw)
    cell = longshort.LSTMCell(I, H, dtype=torch.bfloat16, **kw)
    cell.load_state_dict(
        {k.removesuffix("_l0"): v.bfloat16() for k, v in layer.state_dict().items()}
    )
    zone_c, zone_h, keep = _masks(kw, H, batch=batch)
    masks = VariantMasks(*(None if m is None else m[:1] for m in (zone_c, zone_h)), keep)
    x, h0, c0 = (torch.randn(batch, n).bfloat16() for n in (I, H, H))
    got = engine.variant_cell(x, h0, c0, variants.weights(cell, ""), cell.options.variant, masks)
    params = {k + "_l0": p.detach().float().requires_grad_() for k, p in cell.named_parameters()}
    want = manual(x[None].float(), h0.float(), c0.float(), params, kw, masks)[1:]
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.bfloat16 and rel_err(a.float(), b) < 2e-2
    sum(t.float().sum() for t in got).backward()
    sum(t.sum() for t in want).backward()
    for name, p in cell.named_parameters():
        assert p.grad.dtype == torch.bfloat16
        assert rel_err(p.grad.float(), params[name + "_l0"].grad) < 3e-2, name


def test_parameters_shapes_names_and_init():
    m = longshort.LSTM(I, H, coupled_gates=True, peephole=True, layer_norm=True)
    shapes = {k: tuple(p.shape) for k, p in m.named_parameters()}
    assert shapes["weight_ih_l0"] == (3 * H, I) and shapes["weight_hh_l0"] == (3 * H, H)
    assert shapes["weight_ch_l0"] == (2 * H,)
    assert shapes["weight_ln_ih_l0"] == (3 * H,) and shapes["bias_ln_c_l0"] == (H,)
    assert torch.equal(m.weight_ln_c_l0, torch.ones(H))
    assert torch.equal(m.bias_ln_c_l0, torch.zeros(H))
    assert m.weight_ch_l0.abs().max() <= 1 / H**0.5
    nf = longshort.LSTM(I, H, forget_gate=False, input_bias=-2.0)
    assert torch.equal(nf.bias_ih_l0[:H], torch.full((H,), -2.0))
    cf = longshort.LSTM(I, H, coupled_gates=True, forget_bias=1.0)
    assert torch.equal(cf.bias_ih_l0[:H], torch.ones(H))
    assert "coupled_gates=True" in repr(cf)
    assert longshort.LSTM(I, H).state_dict().keys() == torch.nn.LSTM(I, H).state_dict().keys()


@pytest.mark.parametrize(
    ("kw", "exc", "words"),
    [
        ({"forget_gate": False, "coupled_gates": True}, ValueError, "coupled_gates"),
        ({"zoneout": 1.5}, ValueError, "zoneout"),
        ({"zoneout": (0.1, 0.2, 0.3)}, ValueError, "zoneout"),
        ({"recurrent_dropout": 1.0}, ValueError, "recurrent_dropout"),
        ({"peephole": "yes"}, TypeError, "peephole"),
        ({"forget_gate": False, "forget_bias": 1.0}, ValueError, "forget_bias"),
        ({"coupled_gates": True, "input_bias": -1.0}, ValueError, "input_bias"),
    ],
)
def test_bad_options_are_named(kw, exc, words):
    with pytest.raises(exc, match=words):
        longshort.LSTM(I, H, **kw)
    if "bias" not in str(kw):  # the cells take the options, not the bias starts
        with pytest.raises(exc, match=f"LSTMCell: .*{words}"):
            longshort.LSTMCell(I, H, **kw)


def test_to_torch_refuses_variants_and_converts_plain():
    with pytest.raises(ValueError, match="peephole=True"):
        longshort.LSTM(I, H, peephole=True).to_torch()
    assert isinstance(longshort.LSTM(I, H).to_torch(), torch.nn.LSTM)


def test_every_combination_runs_forward_and_backward():
    flags = ["forget_gate", "peephole", "coupled_gates", "layer_norm"]
    for values in itertools.product([False, True], repeat=4):
        kw = dict(zip(flags, values, strict=True))
        kw["forget_gate"] = not kw["forget_gate"]
        if kw["coupled_gates"] and not kw["forget_gate"]:
            continue
        m = longshort.LSTM(I, H, zoneout=0.1, recurrent_dropout=0.1, **kw)
        out, _ = m(torch.randn(T, B, I))
        out.sum().backward()
        assert all(p.grad is not None for p in m.parameters()), kw
        assert isinstance(m.options.variant, LSTMVariant)


@pytest.mark.parametrize("case", ["no_forget", "peephole_ln", "all_coupled"])
def test_cell_loop_matches_the_layer(cpu_engine, case):
    """An LSTMCell variant stepped by hand over a sequence gives the LSTM variant's outputs and
    gradients (evaluation mode: zoneout's expectation, no recurrent dropout)."""
    kw = CASES[case]
    layer = _model(kw).eval()
    cell = longshort.LSTMCell(I, H, **kw).eval()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(T, B, I)
    out, (_, c_n) = layer(x)
    h = c = torch.zeros(B, H)
    outs = []
    for t in range(T):
        h, c = cell(x[t], (h, c))
        outs.append(h)
    assert rel_err(torch.stack(outs), out) < 1e-5 and rel_err(c, c_n[0]) < 1e-5
    out.sum().backward()
    torch.stack(outs).sum().backward()
    for name, p in cell.named_parameters():
        assert rel_err(p.grad, getattr(layer, name + "_l0").grad) < 1e-4, name


ZONED = [c for c, kw in CASES.items() if "zoneout" in kw]


@pytest.mark.parametrize("batch", [3, 7])  # 7 > FEW_ROWS: the products on torch's GEMM
@pytest.mark.parametrize(  # zoneout's masks per row, or one row of expectations
    ("case", "drawn"), [(c, True) for c in CASES] + [(c, False) for c in ZONED]
)
def test_variant_cell_step_matches_manual(cpu_engine, case, drawn, batch):
    """One step of an LSTMCell variant (the compiled engine's one-call step, or a one-step
    layer on the reference engine) against the manual loop over one step: outputs, and the
    gradients of the input, both states and every parameter."""
    kw = CASES[case]
    layer = _model(kw)
    cell = longshort.LSTMCell(I, H, **kw)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(batch, I, requires_grad=True)
    h0 = torch.randn(batch, H, requires_grad=True)
    c0 = torch.randn(batch, H, requires_grad=True)
    zone_c, zone_h, keep = _masks(kw, H, batch=batch)
    if not drawn:  # evaluation's form: one row of probabilities for every batch row
        zone_c, zone_h = (
            None if z is None else torch.full((1, 1, H), 0.3) for z in (zone_c, zone_h)
        )
    masks = VariantMasks(*(None if m is None else m[:1] for m in (zone_c, zone_h)), keep)
    w, v = variants.weights(cell, ""), cell.options.variant
    if cpu_engine == "compiled":
        assert engine.dispatch.step_engine(x, w) is not None  # the one-call step runs
    got = engine.variant_cell(x, h0, c0, w, v, masks)
    params = {k + "_l0": p for k, p in cell.named_parameters()}
    want = manual(x[None], h0, c0, params, kw, masks)[1:]
    for a, b in zip(got, want, strict=True):
        assert record("variant forward", rel_err(a, b)) < 1e-5
    inputs = [x, h0, c0, *cell.parameters()]
    weights = torch.randn(batch, H)
    g_got = torch.autograd.grad((got[0] * weights).sum() + (got[1] ** 2).sum(), inputs)
    g_want = torch.autograd.grad((want[0] * weights).sum() + (want[1] ** 2).sum(), inputs)
    names = ["x", "h0", "c0", *dict(cell.named_parameters())]
    for name, a, b in zip(names, g_got, g_want, strict=True):
        assert record("variant gradient", rel_err(a, b)) < 1e-4, name


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [2, 6])
@pytest.mark.parametrize("case", ["all_coupled", "all_no_forget"])
def test_variant_cell_step_gradcheck(case, batch, bias):
    """float64 gradcheck of the one-call variant step's BPTT, both product paths."""
    kw = CASES[case]
    torch.manual_seed(0)
    cell = longshort.LSTMCell(I, H, bias=bias, dtype=torch.float64, **kw)
    with torch.no_grad():
        for name, p in cell.named_parameters():
            if "ln" in name or "weight_ch" in name:
                p.add_(torch.randn_like(p) * 0.3)
    masks = VariantMasks(*_masks(kw, H, batch=batch, dtype=torch.float64))
    masks = VariantMasks(*(None if m is None else m[:1] for m in masks[:2]), masks.keep)
    w, v = variants.weights(cell, ""), cell.options.variant
    names = [k for k, t in w._asdict().items() if t is not None]
    g = torch.Generator().manual_seed(3)
    rnd = lambda *s: (torch.randn(*s, generator=g, dtype=torch.float64) * 0.7).requires_grad_()  # noqa: E731
    args = [rnd(batch, I), rnd(batch, H), rnd(batch, H)]
    args += [getattr(w, k).detach().clone().requires_grad_() for k in names]
    assert engine.dispatch.step_engine(args[0], w) is not None

    def f(x, h0, c0, *ws):
        return engine.variant_cell(
            x, h0, c0, w._replace(**dict(zip(names, ws, strict=True))), v, masks
        )

    assert gradcheck(f, tuple(args), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_whole_variant_model_saves_and_loads_with_the_safe_globals():
    import io

    m = longshort.LSTM(I, H, peephole=True, zoneout=0.1).eval()
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    with torch.serialization.safe_globals(longshort.SAFE_GLOBALS):
        loaded = torch.load(buf, weights_only=True)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(loaded(x)[0], m(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("proj_size", [0, 3])
def test_recurrent_dropout_in_evaluation_is_the_plain_lstm_on_its_path(proj_size, monkeypatch):
    """Recurrent dropout alone, in evaluation, computes torch.nn's LSTM exactly, and runs the
    plain layer (no variant loop); in training it still draws its masks."""
    torch.manual_seed(4)
    theirs = nn.LSTM(5, 7, num_layers=2, proj_size=proj_size)
    ours = longshort.LSTM(5, 7, num_layers=2, proj_size=proj_size, recurrent_dropout=0.3)
    ours.load_state_dict(theirs.state_dict())
    cell = longshort.LSTMCell(5, 7, recurrent_dropout=0.3)
    theirs_cell = nn.LSTMCell(5, 7)
    theirs_cell.load_state_dict(cell.state_dict())
    x = torch.randn(9, 2, 5)
    calls = []
    monkeypatch.setattr(longshort.engine, "variant_layer", lambda *a, **k: calls.append(a))
    ours.eval()
    cell.eval()
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cell(x[0])[0], theirs_cell(x[0])[0], rtol=1e-5, atol=1e-6)
    assert calls == []
    monkeypatch.undo()
    ours.train()
    assert not torch.allclose(ours(x)[0], theirs(x)[0])


@pytest.mark.parametrize("case", list(CASES))
def test_inference_without_a_graph_matches_manual(cpu_engine, case):
    """Evaluation under no_grad (the path that keeps nothing per step: C_t in two rows, U h
    in one) against the manual loop: the outputs and both final states. Zoneout in
    evaluation is its expectation; recurrent dropout in evaluation is the plain LSTM."""
    kw = CASES[case]
    m = _model(kw).eval()
    x, h0, c0 = torch.randn(T, B, I), torch.randn(1, B, H), torch.randn(1, B, H)
    with torch.no_grad():
        out, (h_n, c_n) = m(x, (h0, c0))
    zoneout = kw.get("zoneout", 0.0)
    zc, zh = zoneout if isinstance(zoneout, tuple) else (zoneout, zoneout)
    masks = (torch.full((T, B, H), zc) if zc else None, torch.full((T, B, H), zh) if zh else None)
    params = dict(m.named_parameters())
    with torch.no_grad():
        want = manual(x, h0[0], c0[0], params, kw, (*masks, None))
    for a, b in zip((out, h_n[0], c_n[0]), want, strict=True):
        assert rel_err(a, b) < 1e-5
