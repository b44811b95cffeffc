"""longshort: the LSTM of the classic formulation, exact, fast on CPU and transparent.

Drop-in replacements for ``torch.nn.LSTM``, ``nn.RNN``, ``nn.LSTMCell`` and ``nn.RNNCell``
whose forward pass and backpropagation through time are written out from the equations.
"""

from longshort.nn import LSTM, RNN, LayerTrace, LSTMCell, RNNCell, pack_padded_sequence

__version__ = "0.1.0"
__all__ = [
    "LSTM",
    "RNN",
    "LSTMCell",
    "LayerTrace",
    "RNNCell",
    "__version__",
    "pack_padded_sequence",
]
