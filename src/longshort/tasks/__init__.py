"""Long-time-lag tasks where the vanilla RNN fails and the LSTM learns, each with a baseline."""

from longshort.tasks.adding import Adding
from longshort.tasks.base import Batch, Task
from longshort.tasks.copy_memory import CopyMemory
from longshort.tasks.sentiment import Sentiment
from longshort.tasks.temporal_order import TemporalOrder

TASKS: dict[str, type[Task]] = {t.name: t for t in (Adding, CopyMemory, TemporalOrder, Sentiment)}


def make_task(name: str, seq_len: int) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name](seq_len)


__all__ = [
    "TASKS",
    "Adding",
    "Batch",
    "CopyMemory",
    "Sentiment",
    "Task",
    "TemporalOrder",
    "make_task",
]
