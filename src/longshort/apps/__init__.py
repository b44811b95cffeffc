"""Applications: what a user runs. One run folder per training (``runs``), the long-range
experiments and their comparison (``experiment``), the character language model (``lm``),
sequence classification (``classify``), forecasting (``forecast``) and the inspection of a
trained run (``inspection``). Figures and the demo page are drawn by :mod:`longshort.report`."""
