"""Training: the task model and one loop shared by every command."""

from longshort.train.fit import History, Policy, evaluate, fit
from longshort.train.model import SequenceModel, model_for_task

__all__ = ["History", "Policy", "SequenceModel", "evaluate", "fit", "model_for_task"]
