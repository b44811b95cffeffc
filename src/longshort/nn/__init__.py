"""Modules: drop-in replacements for torch.nn's recurrent layers. They validate and dispatch;
the engine computes."""

from longshort.nn.base import LayerTrace
from longshort.nn.cells import GRUCell, LSTMCell, RNNCell
from longshort.nn.gru import GRU
from longshort.nn.lstm import LSTM
from longshort.nn.patch import Patch, patch_torch
from longshort.nn.rnn import RNN
from longshort.nn.sequence import pack_padded_sequence

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "LayerTrace",
    "Patch",
    "RNNCell",
    "pack_padded_sequence",
    "patch_torch",
]
