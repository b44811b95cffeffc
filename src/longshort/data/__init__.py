"""Real sequence data: text corpora for character language models."""

from longshort.data.text import (
    CharStream,
    CharVocab,
    read_texts,
    shakespeare_corpus,
    stdlib_corpus,
)

__all__ = ["CharStream", "CharVocab", "read_texts", "shakespeare_corpus", "stdlib_corpus"]
