"""Sequence classification: file formats, clear errors, the UEA loader and a short run."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from longshort.apps.classify import train_classifier
from longshort.apps.runs import QUIET, Budget
from longshort.data.sequences import read_file, uea

TS = """# a tiny two-dimensional, variable-length set in the UCR/UEA format
@problemName Tiny
@dimensions 2
@equalLength false
@classLabel true up down
@data
1,2,3:0,0,0:up
3,2:1,1:down
0,1,2,3:0,1,0,1:up
4,3,2,1:1,0,1,0:down
"""


def test_ts_npz_csv_formats_agree(tmp_path):
    (tmp_path / "a.ts").write_text(TS)
    ts = read_file(tmp_path / "a.ts")
    assert ts.x.shape == (4, 4, 2) and ts.lengths.tolist() == [3, 2, 4, 4]
    assert ts.classes == ["down", "up"] and ts.y.tolist() == [1, 0, 1, 0]
    assert torch.equal(ts.x[1, :2], torch.tensor([[3.0, 1.0], [2.0, 1.0]]))
    np.savez(
        tmp_path / "a.npz",
        x=ts.x.numpy(),
        y=np.array(["up", "down", "up", "down"]),
        lengths=ts.lengths.numpy(),
    )
    npz = read_file(tmp_path / "a.npz")
    assert torch.equal(npz.x, ts.x) and torch.equal(npz.y, ts.y)
    rows = ["id,label,f1,f2"]
    for i in range(4):
        for t in range(int(ts.lengths[i])):
            rows.append(f"s{i},{ts.classes[int(ts.y[i])]},{ts.x[i, t, 0]:g},{ts.x[i, t, 1]:g}")
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    csv = read_file(tmp_path / "a.csv")
    assert torch.equal(csv.x, ts.x) and torch.equal(csv.lengths, ts.lengths)


def test_bad_files_named_clearly(tmp_path):
    (tmp_path / "bad.csv").write_text("id,label,f1\ns0,up,1.0\ns0,up,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: column 'f1' holds 'oops', expected a num"):
        read_file(tmp_path / "bad.csv")
    (tmp_path / "nolabel.csv").write_text("id,f1\ns0,1.0\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        read_file(tmp_path / "nolabel.csv")
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 4)), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"expected x \(N, T, F\)"):
        read_file(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"unknown format '\.txt'"):
        read_file(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="unknown dataset 'Nope'"):
        uea("Nope")


@pytest.mark.skipif(
    importlib.util.find_spec("aeon") is None,
    reason="the UEA files come with the aeon wheel (pip install --no-deps aeon)",
)
def test_japanese_vowels_official_split():
    train, test = uea("JapaneseVowels")
    assert train.x.shape == (270, 26, 12) and test.x.shape == (370, 29, 12)
    assert int(train.lengths.min()) == 7 and train.classes == [str(i) for i in range(1, 10)]
    assert train.y.bincount().tolist() == [30] * 9


def test_short_classifier_run_beats_chance(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 12, 2)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(int)  # the class is in the first step only
    np.savez(tmp_path / "train.npz", x=x[:80], y=y[:80])
    np.savez(tmp_path / "test.npz", x=x[80:], y=y[80:])
    summary = train_classifier(
        None,
        tmp_path / "train.npz",
        tmp_path / "test.npz",
        tmp_path / "out",
        Budget(hidden=16, steps=200, lr=3e-3, batch_size=32),
        QUIET,
    )
    assert summary["test_accuracy"] > 0.75  # chance is about 0.5


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.text(alphabet="id,label,f12\n0.5-:abcxyz@data", max_size=120))
def test_fuzzed_files_load_or_fail_clearly(tmp_path, content):
    """Random bytes in the loaders' formats: a Sequences or a ValueError, nothing else."""
    for suffix in (".csv", ".ts"):
        path = tmp_path / f"fuzz{suffix}"
        path.write_text(content)
        try:
            data = read_file(path)
        except ValueError as e:
            assert str(path) in str(e)
            continue
        assert data.x.shape[0] == data.y.shape[0] == data.lengths.shape[0] > 0
        assert torch.isfinite(data.x).all()
