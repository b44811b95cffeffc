"""Modules: drop-in replacements for torch.nn's recurrent layers. They validate and dispatch;
the engine computes."""

from longshort.nn.base import LayerTrace
from longshort.nn.cells import LSTMCell, RNNCell
from longshort.nn.lstm import LSTM
from longshort.nn.rnn import RNN
from longshort.nn.sequence import pack_padded_sequence

__all__ = ["LSTM", "RNN", "LSTMCell", "LayerTrace", "RNNCell", "pack_padded_sequence"]
