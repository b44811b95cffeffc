"""A barrier between the threads of one call, for the loops that split the hidden units.

When the threads of a loop each own a share of the hidden units
(:func:`.lstm.lstm_forward_units`), step t + 1 reads the whole of h_t, which every thread wrote
a part of: the threads meet once a step. The barrier is one shared int64 counter: at its k-th
barrier a thread adds 1 (an atomic add, which publishes everything it wrote before) and spins
until the counter reaches k x team (an acquire load, which makes the others' writes visible).
The counter only grows, so it needs no reset between barriers. Measured on a Zen 3, 2 threads:
48 ns a barrier in a loop that does nothing else.

Spinning costs a core while it waits: after :data:`SPINS` polls the thread yields its core
(``sched_yield``), so on a busy machine the thread it waits for can run. The caller must run
every member of the team at once (:func:`longshort.engine.cpu.threads.run_team`): a member
that waited for a thread which has not started would wait forever.
"""

from __future__ import annotations

import ctypes
import platform

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

SPINS = 2000  # polls (each with a pause, about 40-140 cycles) before yielding the core
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def _yield_symbol() -> bool:
    """sched_yield bound by name for the compiled barrier (POSIX); False where there is none."""
    try:
        fn = ctypes.CDLL(None).sched_yield
    except (AttributeError, OSError, TypeError):
        return False
    llvmlite.binding.add_symbol("longshort_sched_yield", ctypes.cast(fn, ctypes.c_void_p).value)
    return True


HAS_YIELD = _yield_symbol()


@intrinsic
def _add(typingctx, address, value):
    """Atomic *address += value (int64, sequentially consistent); returns the old value."""
    sig = types.int64(types.intp, types.int64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", ptr, args[1], "seq_cst")

    return sig, codegen


@intrinsic
def _load(typingctx, address):
    """*address as an int64, an acquire load (never hoisted out of the spin loop)."""
    sig = types.int64(types.intp)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        load = builder.load_atomic(ptr, "acquire", 8)
        return load

    return sig, codegen


@intrinsic
def _relax(typingctx):
    """A spin-wait hint (x86 ``pause``), so the waiting core neither floods the memory system
    nor starves its sibling hyperthread; after SPINS of them, sched_yield."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _sched_yield(typingctx):
    sig = types.void()

    def codegen(context, builder, signature, args):
        if HAS_YIELD:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "longshort_sched_yield"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def wait(count, team, k):
    """The k-th barrier (k = 1, 2, ...) of a team of ``team`` threads sharing ``count``, an
    int64 array whose element 0 started at 0."""
    address = count.ctypes.data
    _add(address, np.int64(1))
    target = np.int64(k) * team
    spins = 0
    while _load(address) < target:
        _relax()
        spins += 1
        if spins == SPINS:
            _sched_yield()
            spins = 0


def counter() -> np.ndarray:
    """A fresh counter: element 0 counts, the rest pad it to its own 128 bytes (two cache
    lines), so no other data shares its line."""
    return np.zeros(16, np.int64)
