"""Tensors handed to a kernel by address, for the calls whose compiled work is a few
microseconds: one step of a cell.

A NumPy view of a tensor costs 1-1.5 us on the host (``detach``, ``numpy``), and a cell's step
hands its kernels ten tensors or more: at B = 1 the views cost more than the step itself. The
address of a tensor's first element costs 0.1 us (``data_ptr``). A kernel called by address
takes the addresses and the sizes as integers and rebuilds the arrays inside (:func:`view`),
where it costs nothing.

The host keeps every tensor whose address it passes referenced until the call returns, and
passes only C-contiguous CPU tensors of the kernel's dtype (:func:`of`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import njit, types
from numba.extending import intrinsic
from torch import Tensor

# a scalar of each dtype the kernels run, passed to tell them the arrays' dtype
LIKE = {torch.float32: np.float32(0), torch.float64: np.float64(0)}
NONE = 0  # the address of an absent operand (no bias): its view has no elements


def of(t: Tensor) -> int:
    """The address of t's first element; t must be C-contiguous (the host makes it so)."""
    assert t.is_contiguous(), "a kernel called by address reads C-contiguous tensors only"
    return t.data_ptr()


def optional(t: Tensor | None) -> int:
    """The address of a C-contiguous tensor's first element, or NONE for an absent one."""
    return NONE if t is None else of(t)


@intrinsic
def _pointer(typingctx, address, like):
    """address (int64) as a pointer to like's type."""
    sig = types.CPointer(like)(address, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(inline="always")
def view(address, shape, like):
    """The C-contiguous array of `shape` (an int or a tuple) at address, of like's dtype."""
    return numba.carray(_pointer(address, like), shape)


@njit(inline="always")
def unmanaged(a):
    """C-contiguous a as a view that numba's runtime does not count references to: every
    view sliced from it (a row, a gate block) then costs no atomic increment and decrement,
    which the variants' loops, slicing a dozen views a row, paid for 5-7% of a training
    step. The caller keeps a itself alive for as long as the view is used."""
    if not a.flags.c_contiguous:
        raise ValueError("unmanaged: a kernel's array must be C-contiguous")
    return view(a.ctypes.data, a.shape, a.dtype.type(0))
