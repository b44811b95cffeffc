"""longshort: the LSTM of the classic formulation, exact, fast on CPU and transparent.

Drop-in replacements for ``torch.nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells
whose forward pass and backpropagation through time are written out from the equations.
"""

from longshort.nn import (
    GRU,
    LSTM,
    RNN,
    GRUCell,
    LayerTrace,
    LSTMCell,
    RNNCell,
    pack_padded_sequence,
)
from longshort.nn.variants import LSTMVariant, Options

__version__ = "0.1.0"

# For whole pickled models loaded with torch.load(..., weights_only=True):
#     torch.serialization.add_safe_globals(longshort.SAFE_GLOBALS)
SAFE_GLOBALS = [LSTM, RNN, GRU, LSTMCell, RNNCell, GRUCell, Options, LSTMVariant]

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "SAFE_GLOBALS",
    "GRUCell",
    "LSTMCell",
    "LayerTrace",
    "RNNCell",
    "__version__",
    "pack_padded_sequence",
]
