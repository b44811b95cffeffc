"""Training: the task model and one loop shared by every command."""

from longshort.train.fit import History, evaluate, fit
from longshort.train.model import SequenceModel, model_for_task

__all__ = ["History", "SequenceModel", "evaluate", "fit", "model_for_task"]
