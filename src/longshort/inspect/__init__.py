"""Seeing inside: traces of every gate and state, the carousel, gradient flow, statistics and
figures."""

from longshort.inspect.carousel import carousel, half_life
from longshort.inspect.gradients import GradientFlow, gradient_flow
from longshort.inspect.stats import gate_statistics
from longshort.inspect.trace import Trace, trace

__all__ = [
    "GradientFlow",
    "Trace",
    "carousel",
    "gate_statistics",
    "gradient_flow",
    "half_life",
    "trace",
]
