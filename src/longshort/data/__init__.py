"""Real sequence data as tasks of the shared training loop: text corpora for character language
models, labelled sequences for classification, series for forecasting. Each task class joins
:data:`longshort.tasks.REGISTRY` beside the synthetic tasks."""

from longshort.data.classification import Classification
from longshort.data.forecasting import Forecast
from longshort.data.text import (
    CharStream,
    CharVocab,
    read_texts,
    shakespeare_corpus,
    stdlib_corpus,
)

__all__ = [
    "CharStream",
    "CharVocab",
    "Classification",
    "Forecast",
    "read_texts",
    "shakespeare_corpus",
    "stdlib_corpus",
]
