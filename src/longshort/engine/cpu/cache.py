"""Keep numba's on-disk cache of the compiled loops in step with their sources.

numba checks only the file of a cached function, not the files of the functions it inlines or
calls (activations.py, blas.py), so an edit there would load stale machine code. Before the
loops are imported, this clears the cache when any source of the engine changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).parent


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
