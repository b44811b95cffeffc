"""``longshort.patch_torch()``: torch.nn's recurrent classes replaced by longshort's, for code
you do not own.

A forecasting library, a speech toolkit or a tutorial builds ``nn.LSTM(...)`` inside its own
code. Patched, every name through which such code reaches torch.nn's six recurrent classes
(``torch.nn.LSTM``, ``torch.nn.modules.LSTM``, ``torch.nn.modules.rnn.LSTM`` and the same for
GRU, RNN and the three cells) gives longshort's class instead, so the model it builds runs
longshort's engine, unchanged::

    import longshort
    from darts.models import RNNModel          # any code that calls nn.LSTM(...)

    with longshort.patch_torch():
        model = RNNModel(model="LSTM", ...)    # its recurrent layers are longshort.LSTM

    patch = longshort.patch_torch()            # or for the rest of the program
    ...
    patch.undo()                               # torch.nn's classes back

Only what is built while patched changes: a module built before keeps its class, and a name
bound before patching (``from torch.nn import LSTM`` at the top of a file already imported)
still names torch.nn's class; patch before importing such code. longshort's own code never
reads these names at call time (it holds torch.nn's classes from its import), so patching
changes nothing inside longshort. Patches nest: each undo restores what its patch replaced.

torch.compile refuses to trace whatever ``torch.nn.LSTM``, ``GRU`` and ``RNN`` name, unless
``torch._dynamo.config.allow_rnn`` is set; while patched those names are longshort's layers,
which compile with ``fullgraph=True``, so a patch sets that flag too (and undo restores it).
A torch.nn layer built before the patch is then traced by dynamo's experimental RNN support
instead of breaking the graph. Importing dynamo's config costs about a second, once.
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import torch.nn
import torch.nn.modules
import torch.nn.modules.rnn

from longshort.nn.cells import GRUCell, LSTMCell, RNNCell
from longshort.nn.gru import GRU
from longshort.nn.lstm import LSTM
from longshort.nn.rnn import RNN

REPLACEMENTS: dict[str, type] = {
    "LSTM": LSTM,
    "GRU": GRU,
    "RNN": RNN,
    "LSTMCell": LSTMCell,
    "GRUCell": GRUCell,
    "RNNCell": RNNCell,
}
PLACES: tuple[types.ModuleType, ...] = (torch.nn, torch.nn.modules, torch.nn.modules.rnn)


class Patch:
    """A patch in place: ``undo()`` (or leaving its ``with`` block) puts back what it replaced
    (the classes, and dynamo's ``allow_rnn``). ``replaced`` maps each patched name to the class
    it replaced."""

    def __init__(self, saved: list[tuple[types.ModuleType, str, object]]) -> None:
        self._saved = saved
        self.replaced = {name: cls for _, name, cls in saved if name in REPLACEMENTS}

    @property
    def active(self) -> bool:
        """Whether the patch is still in place (not undone)."""
        return bool(self._saved)

    def undo(self) -> None:
        """Put back the classes this patch replaced; a second call does nothing."""
        for place, name, cls in reversed(self._saved):
            setattr(place, name, cls)
        self._saved = []

    def __enter__(self) -> Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def __repr__(self) -> str:
        state = "active" if self.active else "undone"
        return f"Patch({', '.join(self.replaced)}; {state})"


def patch_torch(names: Iterable[str] | None = None) -> Patch:
    """Replace torch.nn's recurrent classes with longshort's wherever torch.nn exposes them.

    names: which of "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell" to replace (default
    all six). Returns a :class:`Patch`: call ``undo()``, or use it as a context manager
    (``with longshort.patch_torch(): ...``). See the module docstring for what changes.

    Example::

        >>> import torch, longshort
        >>> with longshort.patch_torch():
        ...     layer = torch.nn.LSTM(3, 4)      # as code you do not own builds it
        >>> type(layer).__module__
        'longshort.nn.lstm'
        >>> torch.nn.LSTM.__module__             # torch.nn's class is back
        'torch.nn.modules.rnn'
    """
    chosen = list(REPLACEMENTS) if names is None else list(names)
    unknown = [n for n in chosen if n not in REPLACEMENTS]
    if isinstance(names, str) or unknown:
        raise ValueError(
            f"patch_torch: names must be a list drawn from {list(REPLACEMENTS)}, got {names!r}"
        )
    import torch._dynamo.config as dynamo_config  # not at import: it costs about a second

    saved: list[tuple[types.ModuleType, str, object]] = []
    for name in chosen:
        for place in PLACES:
            saved.append((place, name, getattr(place, name)))
            setattr(place, name, REPLACEMENTS[name])
    saved.append((dynamo_config, "allow_rnn", dynamo_config.allow_rnn))
    dynamo_config.allow_rnn = True  # torch.compile checks the patched names (see above)
    return Patch(saved)
