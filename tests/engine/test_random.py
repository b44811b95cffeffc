"""Zoneout's and recurrent dropout's masks from the counter-based generator
(engine/cpu/random.py): reproduced by torch.manual_seed whatever the thread count, at rate p,
with no correlation between neighbours; torch.rand where it does not run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import longshort
from longshort.engine import dispatch

SHAPE = (100, 32, 128)  # 409,600 numbers: drawn on all threads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masks_follow_the_seed_not_the_thread_count(dtype):
    like = torch.empty(0, dtype=dtype)
    before = torch.get_num_threads()
    try:
        draws = []
        for count in (1, 2):
            torch.set_num_threads(count)
            torch.manual_seed(3)
            draws.append(longshort.engine.bernoulli(SHAPE, 0.3, like))
    finally:
        torch.set_num_threads(before)
    assert draws[0].dtype == dtype and draws[0].shape == SHAPE
    assert torch.equal(draws[0], draws[1])
    torch.manual_seed(4)
    assert not torch.equal(draws[0], longshort.engine.bernoulli(SHAPE, 0.3, like))
    assert set(draws[0].unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_masks_have_rate_p_and_no_correlation_between_neighbours(p):
    torch.manual_seed(0)
    m = longshort.engine.bernoulli(SHAPE, p, torch.empty(0, dtype=torch.float64)).flatten()
    n = m.numel()
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(m.mean().item() - p) < 5 * sd
    a, b = m[:-1] - p, m[1:] - p  # lag-1 and lag-128 (the next unit, the next row)
    assert abs((a * b).mean().item()) / (p * (1 - p)) < 5 / (n**0.5)
    a, b = m[:-128] - p, m[128:] - p
    assert abs((a * b).mean().item()) / (p * (1 - p)) < 5 / (n**0.5)


def test_torch_rand_where_the_generator_does_not_run():
    like = torch.empty(0, dtype=torch.bfloat16)
    assert not dispatch.compiled_masks(like)
    torch.manual_seed(1)
    m = longshort.engine.bernoulli((1000,), 0.5, like)
    assert m.dtype == torch.bfloat16 and 400 < m.sum().item() < 600


def test_compiled_graphs_draw_what_eager_draws_and_keep_alike_draws_apart():
    """Under torch.compile the draw is an opaque op run with the graph: the same masks as
    eager for the same seed, and two draws alike in shape and p stay two draws."""

    def two(x):
        a = longshort.engine.bernoulli((6, 5), 0.5, x, 0)
        b = longshort.engine.bernoulli((6, 5), 0.5, x, 1)
        return a, b

    x = torch.randn(6, 5)
    torch.manual_seed(2)
    want = two(x)
    torch._dynamo.reset()
    compiled = torch.compile(two, fullgraph=True, backend="aot_eager")
    torch.manual_seed(2)
    got = compiled(x)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not torch.equal(got[0], got[1])


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_a_probability_outside_0_1_is_refused_by_name(p):
    with pytest.raises(ValueError, match=r"bernoulli: p must be a probability in \[0, 1\], got"):
        longshort.engine.bernoulli((3, 4), p, torch.empty(0))


def test_a_range_of_a_mask_is_splitmix64_of_its_counters():
    """bernoulli over [i0, i1) writes, at each i, SplitMix64's output function of
    seed + (i + 1)·γ, top 24 bits under p·2^24: written out here in plain Python integers.
    The range starts away from 0, as the second thread's does."""
    from longshort.engine.cpu import random as cpu_random

    mask64 = (1 << 64) - 1
    seed, threshold, i0, i1 = 0x1234_5678_9ABC_DEF0, int(0.3 * (1 << 24)), 37, 137

    def draw(i: int) -> float:
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & mask64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        z ^= z >> 31
        return 1.0 if (z >> 40) < threshold else 0.0

    out = np.full(150, -1.0, np.float32)
    cpu_random.bernoulli(seed, threshold, out, i0, i1)
    assert out[i0:i1].tolist() == [draw(i) for i in range(i0, i1)]
    assert (out[:i0] == -1).all() and (out[i1:] == -1).all()  # nothing outside the range
