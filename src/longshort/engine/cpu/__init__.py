"""The compiled CPU engine: numba loops (:mod:`.lstm`, :mod:`.rnn`) over BLAS products
(:mod:`.blas`), batch rows split across threads (:mod:`.rows`), and the engine functions that
lay out buffers and call them (:mod:`.compiled`). Importing this package loads nothing."""
