"""Run longshort and torch.nn modules with the same weights and compare everything."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from tests.helpers import abs_err, record

OUT_ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}
GRAD_RTOL = {torch.float32: 1e-4, torch.float64: 1e-9}


def _as_list(states):
    return list(states) if isinstance(states, tuple) else [states]


def _data(out):
    return out.data if isinstance(out, PackedSequence) else out


def run_both(ours, theirs, x, hx=None, ours_kwargs=None, theirs_x=None, seed=0):
    """Forward and backward of a random weighted loss through both; compares all tensors.

    theirs_x lets torch.nn see a different but equivalent input: a PackedSequence while ours
    gets the padded tensor and ``lengths=``; our input gradient is then packed the same way.
    Returns the output and states of ours.
    """
    ours_kwargs = ours_kwargs or {}
    dtype = x.data.dtype if isinstance(x, PackedSequence) else x.dtype
    leaves = []

    def fresh(t):
        if t is None:
            return None
        if isinstance(t, PackedSequence):
            data = t.data.detach().clone().requires_grad_()
            leaves.append(data)
            return PackedSequence(data, t.batch_sizes, t.sorted_indices, t.unsorted_indices)
        if isinstance(t, tuple):
            return tuple(fresh(s) for s in t)
        t = t.detach().clone().requires_grad_()
        leaves.append(t)
        return t

    results = []
    for module, inp, kw in ((ours, x, ours_kwargs), (theirs, theirs_x or x, {})):
        leaves.clear()
        module.zero_grad()
        inp_f, hx_f = fresh(inp), fresh(hx)
        out, states = module(inp_f, hx_f, **kw)
        if isinstance(out, PackedSequence) and "lengths" in ours_kwargs:
            out = pad_packed_sequence(out, batch_first=ours.batch_first)[0]
        tensors = [_data(out), *_as_list(states)]
        gen = torch.Generator().manual_seed(seed)
        loss = sum((t * torch.randn(t.shape, generator=gen, dtype=dtype)).sum() for t in tensors)
        loss.backward()
        grads = [leaf.grad for leaf in leaves] + [p.grad for p in module.parameters()]
        if module is ours and isinstance(theirs_x, PackedSequence):
            grads[0] = pack_padded_sequence(
                grads[0],
                ours_kwargs["lengths"],
                batch_first=ours.batch_first,
                enforce_sorted=False,
            ).data
        results.append((tensors, grads))
    (t_ours, g_ours), (t_theirs, g_theirs) = results
    for a, b in zip(t_ours, t_theirs, strict=True):
        assert a.shape == b.shape
        err = record(f"forward abs ({dtype})", abs_err(a, b))
        assert err <= OUT_ATOL[dtype], f"forward differs by {err}"
    # Relative to each tensor's own scale, but a tensor whose gradient is over 100x smaller
    # than the largest one of the model (cancellation in deep, tiny configurations) is measured
    # against 1% of that largest scale: there float32 rounding, not the method, dominates.
    floor = 1e-2 * max(float(b.abs().max()) for b in g_theirs)
    for a, b in zip(g_ours, g_theirs, strict=True):
        assert a is not None and b is not None and a.shape == b.shape
        scale = max(float(b.abs().max()), floor, 1e-30)
        err = record(f"gradient rel ({dtype})", float((a - b).abs().max()) / scale)
        assert err <= GRAD_RTOL[dtype], f"gradient differs by {err} (relative)"
    return t_ours
