"""Seeing inside: traces of every gate and state, the carousel, gradient flow, statistics,
figures, and the explorer page of what each unit learned."""

from longshort.inspect.carousel import carousel, half_life
from longshort.inspect.explorer import explore
from longshort.inspect.gradients import GradientFlow, gradient_flow
from longshort.inspect.stats import gate_statistics
from longshort.inspect.trace import Trace, trace

__all__ = [
    "GradientFlow",
    "Trace",
    "carousel",
    "explore",
    "gate_statistics",
    "gradient_flow",
    "half_life",
    "trace",
]
