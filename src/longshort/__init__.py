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
    Patch,
    RNNCell,
    pack_padded_sequence,
    patch_torch,
)
from longshort.nn.variants import LSTMVariant, Options

__version__ = "0.1.0"

# torch.load(..., weights_only=True) of a whole pickled model needs the model's own classes on
# the allow-list, longshort's layers among them (longshort.LSTM where a torch.nn model has
# nn.LSTM). SAFE_GLOBALS lists all six layers, and the two option types that pickles written
# before longshort 0.1.0's options-as-tuples still hold:
#     torch.serialization.add_safe_globals([MyModel, *longshort.SAFE_GLOBALS, ...])
SAFE_GLOBALS = [LSTM, RNN, GRU, LSTMCell, RNNCell, GRUCell, Options, LSTMVariant]

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "SAFE_GLOBALS",
    "GRUCell",
    "LSTMCell",
    "LayerTrace",
    "Patch",
    "RNNCell",
    "__version__",
    "pack_padded_sequence",
    "patch_torch",
]
