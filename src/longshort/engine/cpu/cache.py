"""numba's on-disk cache of the compiled loops: kept in step with their sources, and a line
on screen while it is filled.

numba checks only the file of a cached function, not the files of the functions it inlines or
calls (activations.py, blas.py), so an edit there would load stale machine code. Before the
loops are imported, :func:`refresh` clears the cache when any source of the engine changed.

The first process on a machine (or after an upgrade, or on another CPU: numba keys its cache
by the CPU's name and features) compiles each kernel as it is first called, seconds each;
later processes load them in milliseconds. :func:`announce_compiles` says so on stderr once,
when the first of longshort's kernels starts compiling, so the wait is not a silent one.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

from numba.core import errors, event

HERE = Path(__file__).parent
NOTICE = (
    "longshort: compiling the CPU kernels for this CPU, once (about 5-30 s in all, spread over "
    "the first calls); later runs load them from {where}"
)


def refresh() -> None:
    digest = hashlib.sha256()
    for source in sorted(HERE.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    cache = HERE / "__pycache__"
    stamp = cache / "longshort-sources.sha256"
    try:
        if stamp.is_file() and stamp.read_text() == digest.hexdigest():
            return
        for entry in cache.glob("*.nb[ic]"):
            entry.unlink()
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        return


def _ours(ev: event.Event) -> bool:
    func = getattr(ev.data.get("dispatcher"), "py_func", None)
    return getattr(func, "__module__", "").startswith("longshort.")


class _Announce(event.Listener):
    """Prints :data:`NOTICE` when the first longshort kernel starts compiling (a cache miss:
    numba loads cached kernels without a compile event), then stays silent. While one of our
    kernels compiles, numba's NumbaIRAssumptionWarning is ignored: its internal check flags
    the helpers the kernels inline (``activations.tanh_into``'s loop, as "variable ... is not
    in scope") and asks for a bug report, a page of text on a user's first run about code
    that compiles and runs correctly (the parity tests). numba compiles under its global
    lock, so the filter's start and end pair up."""

    def __init__(self) -> None:
        self.said = False
        self.quiet: list[warnings.catch_warnings] = []

    def on_start(self, ev: event.Event) -> None:
        if not _ours(ev):
            return
        quiet = warnings.catch_warnings()
        quiet.__enter__()
        warnings.simplefilter("ignore", errors.NumbaIRAssumptionWarning)
        self.quiet.append(quiet)
        if not self.said:
            self.said = True
            where = os.environ.get("NUMBA_CACHE_DIR") or str(HERE / "__pycache__")
            print(NOTICE.format(where=where), file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        if _ours(ev) and self.quiet:
            self.quiet.pop().__exit__(None, None, None)


_LISTENER = _Announce()
_REGISTERED: list[bool] = []


def announce_compiles() -> None:
    """Register the notice (once per process; the compiled engine calls this when imported)."""
    if not _REGISTERED:
        event.register("numba:compile", _LISTENER)
        _REGISTERED.append(True)
