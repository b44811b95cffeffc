"""The compiled CPU engine. Importing this package loads nothing; :mod:`.compiled` is the engine.

Layout, one job a module:

- :mod:`.lstm`, :mod:`.gru`, :mod:`.rnn`, :mod:`.lstm_variant`: one cell each, its numba kernels
  (the forward loop beside its BPTT loop, the row step each way, a cell's one-call step) and,
  below them, the host code that lays out their buffers and runs them.
- :mod:`.host`: what the cells' host code shares (tensors as arrays, buffers kept across calls,
  packed weights, the one-off products before and after a loop).
- :mod:`.packed` (the per-step product on weights packed once: BLIS's micro-kernel and
  macro-kernel split), :mod:`.small` (few-row products on weights as they are), :mod:`.blas`
  (BLAS's gemm, and the choice between it and :mod:`.small`), :mod:`.activations` (σ and tanh).
- :mod:`.threads`: batch rows and products split across torch's threads.
- :mod:`.cache`: numba's disk cache kept in step with the sources, and the first compile's notice.
- :mod:`.compiled`: the engine, the functions of :class:`longshort.engine.types.Engine`.

Every kernel takes the same four bundles, in this order, then (the sequence loops) the rows
[b0, b1) of the batch it computes:

- ``weights``: the layer's parameters as the loop reads them, and its constants (the gate
  coefficients, the nonlinearity, the variant's flags);
- ``io``: the call's inputs and outputs (states in and out, outputs, lengths, masks,
  gradients);
- ``saved``: what the forward keeps for BPTT (the gates, the cell states, the states);
- ``scratch``: the calling thread's work buffers (N = b1 - b0 rows).

Each kernel's docstring lists each bundle's fields with their shapes, and its first lines
unpack them by those names. A bundle is a plain tuple: numba's dispatcher types a tuple of
arrays in about 0.1 us, a named tuple in about 0.9 us (measured here), which would add a fifth
to a cell's call at B = 1.
"""
