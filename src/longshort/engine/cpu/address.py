"""Tensors handed to a kernel by address, for the calls whose compiled work is a few
microseconds: one step of a cell.

A NumPy view of a tensor costs 1-1.5 us on the host (``detach``, ``numpy``), and a cell's step
hands its kernels ten tensors or more: at B = 1 the views cost more than the step itself. The
address of a tensor's first element costs 0.1 us (``data_ptr``). A kernel called by address
takes the addresses and the sizes as integers and rebuilds the arrays inside (:func:`view`),
where it costs nothing.

The host keeps every tensor whose address it passes referenced until the call returns, and
passes only C-contiguous CPU tensors of the kernel's dtype (:func:`of`).

Also here, as they too work on addresses inside a kernel: views without reference counts
(:func:`unmanaged`) and prefetch hints for rows a loop reads next (:func:`prefetch`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
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


def _prefetcher(write: int):
    """An intrinsic hinting that the cache line at an address will soon be read (write=0) or
    written (1): LLVM's prefetch, kept in every cache level (its operands must be constants)."""

    @intrinsic
    def hint(typingctx, address):
        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [ir.PointerType(), i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            ptr = builder.inttoptr(args[0], ir.PointerType())
            builder.call(fn, [ptr, i32(write), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(address), codegen

    return hint


_read_hint, _write_hint = _prefetcher(0), _prefetcher(1)


@njit(inline="always")
def prefetch(a):
    """Prefetch every cache line of C-contiguous a, a row the loop reads next."""
    start = a.ctypes.data
    for off in range(0, a.size * a.itemsize, 64):
        _read_hint(start + off)


@njit(inline="always")
def prefetch_write(a):
    """Prefetch every cache line of C-contiguous a for writing, a row the loop writes next."""
    start = a.ctypes.data
    for off in range(0, a.size * a.itemsize, 64):
        _write_hint(start + off)
