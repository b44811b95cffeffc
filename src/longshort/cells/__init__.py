"""One time step of each recurrent cell, forward and backward side by side, in torch ops.

Each file holds one cell, written in the seed's notation (f, i, g for C~, o, c, h) so a reader
can hold the equations and the code side by side. The engines run these steps over sequences.
"""

from longshort.cells import lstm, rnn

__all__ = ["lstm", "rnn"]
