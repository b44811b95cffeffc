"""torch.func over the six modules: vmap, grad, jacrev, jvp, hessian, functional_call and
model ensembles, each against torch.nn with the same weights run without the transform (torch.nn
itself cannot be vmapped: PyTorch issues 105982 and 134606); and gradcheck with batched
gradients in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, jvp, stack_module_state, vmap

import longshort
from tests.nn.test_variants import manual

D = torch.float64
MODULES = [
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("LSTM", {"proj_size": 3}),
    ("GRU", {}),
    ("RNN", {"nonlinearity": "relu"}),
    ("LSTMCell", {}),
    ("GRUCell", {}),
    ("RNNCell", {}),
]
IDS = [f"{n}-{'-'.join(kw) or 'plain'}" for n, kw in MODULES]


def _pair(name: str, kw: dict, seed: int = 0):
    torch.manual_seed(seed)
    theirs = getattr(nn, name)(4, 5, **kw).to(D)
    ours = getattr(longshort, name)(4, 5, **kw).to(D)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _sample(name: str, n: int = 3):
    """n unbatched samples: (n, T, I) for a layer, (n, I) for a cell."""
    torch.manual_seed(1)
    return torch.randn(n, 6, 4, dtype=D) if "Cell" not in name else torch.randn(n, 4, dtype=D)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _batched(module, name, xs):
    """torch.nn's way: the samples as one batch, output per sample first."""
    if "Cell" in name:
        return _first(module(xs))
    return _first(module(xs.transpose(0, 1))).transpose(0, 1)


@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_vmap_over_samples_matches_torch_nn_batch(name, kw):
    ours, theirs = _pair(name, kw)
    xs = _sample(name)
    got = vmap(lambda x: _first(ours(x)))(xs)
    torch.testing.assert_close(got, _batched(theirs, name, xs), rtol=0, atol=1e-12)


def _loss(module, params, x, y):
    return ((_first(functional_call(module, params, (x,))) - y) ** 2).sum()


@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_per_sample_gradients_match_a_torch_nn_loop(name, kw):
    ours, theirs = _pair(name, kw)
    xs = _sample(name)
    ys = torch.randn_like(_batched(theirs, name, xs))
    params = {k: v.detach() for k, v in ours.named_parameters()}
    got = vmap(grad(lambda p, x, y: _loss(ours, p, x, y)), in_dims=(None, 0, 0))(params, xs, ys)
    for i in range(xs.shape[0]):
        loss = ((_first(theirs(xs[i])) - ys[i]) ** 2).sum()
        want = torch.autograd.grad(loss, list(theirs.parameters()))
        for (key, g), w in zip(got.items(), want, strict=True):
            torch.testing.assert_close(g[i], w, rtol=1e-9, atol=1e-10, msg=key)


@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_jacrev_and_jvp_match_torch_nn_autograd(name, kw):
    ours, theirs = _pair(name, kw)
    x = _sample(name, 1)[0]
    want = torch.autograd.functional.jacobian(lambda a: _first(theirs(a)), x)
    torch.testing.assert_close(jacrev(lambda a: _first(ours(a)))(x), want, rtol=1e-9, atol=1e-10)
    v = torch.randn_like(x)
    _, got = jvp(lambda a: _first(ours(a)), (x,), (v,))
    _, expected = torch.autograd.functional.jvp(lambda a: _first(theirs(a)), x, v)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["LSTMCell", "GRU"])
def test_hessian_matches_torch_nn(name):
    ours, theirs = _pair(name, {})
    x = _sample(name, 1)[0]
    want = torch.autograd.functional.hessian(lambda a: _first(theirs(a)).pow(2).sum(), x)
    got = hessian(lambda a: _first(ours(a)).pow(2).sum())(x)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("name", "kw"), MODULES, ids=IDS)
def test_model_ensemble_with_stacked_weights(name, kw):
    """torch.func's ensembling recipe: three models' weights stacked, one vmapped call."""
    pairs = [_pair(name, kw, seed) for seed in range(3)]
    params, buffers = stack_module_state([ours for ours, _ in pairs])
    base = pairs[0][0]
    x = _sample(name, 2).transpose(0, 1) if "Cell" not in name else _sample(name, 2)
    got = vmap(lambda p, b: _first(functional_call(base, (p, b), (x,))))(params, buffers)
    for k, (_, theirs) in enumerate(pairs):
        torch.testing.assert_close(got[k], _first(theirs(x)), rtol=0, atol=1e-12)


def test_per_sample_gradients_of_a_variant_match_its_equations():
    """A layer-norm peephole LSTM with lengths: against the equations written out in
    test_variants.manual, differentiated per sample by a plain loop."""
    kw = {"peephole": True, "layer_norm": True}
    torch.manual_seed(0)
    ours = longshort.LSTM(3, 4, **kw).to(D)
    params = {k: v.detach() for k, v in ours.named_parameters()}
    xs, ys = torch.randn(3, 5, 3, dtype=D), torch.randn(3, 5, 4, dtype=D)
    got = vmap(grad(lambda p, x, y: _loss(ours, p, x, y)), in_dims=(None, 0, 0))(params, xs, ys)
    for i in range(3):
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        zero = torch.zeros(1, 4, dtype=D)
        out, _, _ = manual(xs[i][:, None], zero, zero, leaves, kw, (None, None, None))
        loss = ((out[:, 0] - ys[i]) ** 2).sum()
        want = torch.autograd.grad(loss, list(leaves.values()))
        for (key, g), w in zip(got.items(), want, strict=True):
            torch.testing.assert_close(g[i], w, rtol=1e-9, atol=1e-10, msg=key)


@pytest.mark.parametrize(
    ("name", "kw"),
    [*MODULES, ("LSTM", {"peephole": True, "layer_norm": True, "coupled_gates": True})],
    ids=[*IDS, "LSTM-variant"],
)
def test_gradcheck_with_batched_gradients(name, kw):
    """check_batched_grad runs the backward under vmap (PyTorch's own module tests do)."""
    torch.manual_seed(0)
    module = getattr(longshort, name)(3, 4, **kw).to(D)
    x = torch.randn(*((3,) if "Cell" in name else (4, 2, 3)), dtype=D, requires_grad=True)
    params = tuple(module.parameters())

    def fn(x, *p):
        out = functional_call(
            module, dict(zip(dict(module.named_parameters()), p, strict=True)), (x,)
        )
        return _first(out)

    assert torch.autograd.gradcheck(fn, (x, *params), check_batched_grad=True)


def test_batched_gradients_with_lengths():
    module = longshort.LSTM(3, 2).to(D)
    x = torch.randn(4, 2, 3, dtype=D, requires_grad=True)
    lengths = torch.tensor([4, 2])
    assert torch.autograd.gradcheck(
        lambda a: module(a, lengths=lengths)[0], (x,), check_batched_grad=True
    )
