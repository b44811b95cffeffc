"""One time step of each recurrent cell, forward and backward side by side, in torch ops.

Each file holds one cell, written in the notation of its paper (the LSTM's f, i, g for C~, o,
c, h after Hochreiter and Schmidhuber 1997 and Gers et al. 2000; the GRU's r, z, n after Cho et
al. 2014) so a reader can hold the equations and the code side by side. The engines run these
steps over sequences.
"""

from longshort.cells import gru, lstm, rnn

__all__ = ["gru", "lstm", "rnn"]
