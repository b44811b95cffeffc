"""Long-time-lag tasks where the vanilla RNN fails and the LSTM learns, each with a baseline."""

from longshort.tasks.adding import Adding
from longshort.tasks.base import REGISTRY, Batch, Task
from longshort.tasks.copy_memory import CopyMemory
from longshort.tasks.sentiment import Sentiment
from longshort.tasks.temporal_order import TemporalOrder

# The synthetic tasks, made from a length alone; REGISTRY holds these and every real-data task
# of longshort.data (forecast, classify, charlm), which are made from their data.
TASKS: dict[str, type[Task]] = {t.name: t for t in (Adding, CopyMemory, TemporalOrder, Sentiment)}


def make_task(name: str, seq_len: int) -> Task:
    """A synthetic task of length seq_len."""
    if name not in TASKS:
        hint = f" ({name} is made from its data: see longshort.data)" if name in REGISTRY else ""
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}{hint}")
    return TASKS[name](seq_len)


__all__ = [
    "REGISTRY",
    "TASKS",
    "Adding",
    "Batch",
    "CopyMemory",
    "Sentiment",
    "Task",
    "TemporalOrder",
    "make_task",
]
