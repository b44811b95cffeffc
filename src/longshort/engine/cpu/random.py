"""Bernoulli masks (zoneout's, recurrent dropout's) drawn by a counter-based generator.

torch's CPU generator (a Mersenne twister, one thread) draws about 3.5 ns a number on a Zen 3:
zoneout's two (T, B, H) masks cost 3.5 ms of a 20 ms training step at (100, 32, 32, 128).
Here the i-th number of a mask is SplitMix64's output function of the counter seed + i·γ
(Steele, Lea and Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014; the
generator behind Java's SplittableRandom, which passes BigCrush): no state runs from one
number to the next, so the threads draw disjoint ranges of one mask at once, at 0.33-0.43 ns
a number on one thread of a Zen 4 (its stores vectorised; they were scatters, 0.6-0.85 ns).
The seed comes from torch's default generator, so ``torch.manual_seed``
reproduces every mask. A number's top 24 bits make it a uniform draw, as ``torch.rand``'s
float32 has 24.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from longshort.engine.cpu import address, threads
from longshort.engine.cpu.activations import JIT
from longshort.engine.cpu.address import view

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2^64 / the golden ratio
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
# From this many numbers a mask is drawn on all of torch's threads (a parallel region costs
# 30-70 us, about 40K numbers' time on one thread).
PARALLEL_FROM = 1 << 17


@njit(**JIT)
def bernoulli(seed, threshold, out, i0, i1):
    """out[i] = 1 where the i-th number of the stream `seed` is under threshold / 2^24, else
    0, for i in [i0, i1): out (N,) float32 or float64; threshold (int) = p·2^24."""
    s, limit = np.uint64(seed), np.uint64(threshold)
    part = out[i0:i1]  # indexed from 0: with i0 unknown, a negative index was possible to
    for k in range(part.shape[0]):  # LLVM, whose wraparound check made each store a scatter
        z = s + np.uint64(i0 + k + 1) * _GAMMA
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        z = z ^ (z >> _S31)
        part[k] = 1.0 if (z >> _S40) < limit else 0.0


@njit(**JIT)
def bernoulli_at(seed, threshold, out, size, like):
    """:func:`bernoulli` over all of out, `size` numbers at address out (a cell's masks: a
    NumPy view would cost more than the draw, :mod:`.address`)."""
    bernoulli(seed, threshold, view(out, size, like), 0, size)


def mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A new tensor of `shape`, like's dtype, 1 with probability p and 0 otherwise, its seed
    drawn from torch's default generator."""
    seed = int(torch.empty((), dtype=torch.int64).random_())
    out = torch.empty(shape, dtype=like.dtype)
    threshold = int(p * (1 << 24))
    size = out.numel()
    if size < PARALLEL_FROM:
        bernoulli_at(seed, threshold, out.data_ptr(), size, address.LIKE[like.dtype])
        return out
    flat = out.view(-1).numpy()
    count = torch.get_num_threads()
    jobs = [(seed, threshold, flat, i0, i1) for i0, i1 in threads.split(size, 0, count)]
    threads.run_jobs(bernoulli, jobs)
    return out
