"""Runs a user can trust: no run is lost or silently replaced, and every mistake on the command
line ends in one line naming the flag, with exit code 2."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

import longshort.apps.runs as runs
from longshort.cli import main
from longshort.train import fit as real_fit
from longshort.train.state import LATEST


def _train(out, *extra):
    return main(
        [
            "train",
            "--task",
            "adding",
            "--seq-len",
            "6",
            "--steps",
            "20",
            "--hidden",
            "4",
            "--eval-every",
            "10",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_existing_run_refused_then_replaced_with_force(tmp_path, capsys):
    assert _train(tmp_path) == 0
    before = (tmp_path / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert _train(tmp_path) == 2
    line = _one_line(capsys.readouterr().err)
    assert "already holds a run" in line and "--resume" in line and "--force" in line
    assert (tmp_path / "metrics.jsonl").read_text() == before  # untouched
    assert _train(tmp_path, "--force") == 0
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_refuses_another_model_and_an_empty_folder(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert _train(tmp_path, "--hidden", "8", "--resume") == 2
    line = _one_line(capsys.readouterr().err)
    assert "hidden_size was 4, now 8" in line
    assert _train(tmp_path / "empty", "--resume") == 2
    assert "holds no saved training state" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("damage", ["pointer missing", "latest slot corrupt"])
def test_resume_falls_back_to_the_intact_slot_and_says_so(tmp_path, capsys, damage):
    assert _train(tmp_path) == 0  # states at steps 10 and 20, in slots a and b
    state = tmp_path / "state"
    latest = json.loads((state / LATEST).read_text())
    if damage == "pointer missing":
        (state / LATEST).unlink()
        resumed_from = 20
    else:
        path = state / f"state-{latest['slot']}.safetensors"
        path.write_bytes(path.read_bytes()[:-8])
        resumed_from = 10
    capsys.readouterr()
    args = ["--steps", "30", "--resume"]
    assert _train(tmp_path, *args) == 0
    err = capsys.readouterr().err
    assert "resumed from state-" in err and f"(step {resumed_from})" in err
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps[-1] == 30


def test_ctrl_c_leaves_a_usable_model_and_the_command_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted_fit(*args, **kwargs):
        real_fit(*args, **{**kwargs, "steps": 10})
        raise KeyboardInterrupt("training stopped at step 10; state saved")

    monkeypatch.setattr(runs, "fit", interrupted_fit)
    assert _train(tmp_path) == 130
    err = capsys.readouterr().err
    assert "state saved" in err and "continue with: longshort train" in err and "--resume" in err
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    monkeypatch.undo()
    assert main(["inspect", str(tmp_path)]) == 0
    assert _train(tmp_path, "--resume") == 0


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert _train(tmp_path) == 0
    finally:
        os.umask(old)
    for path in (
        tmp_path / "model.safetensors",
        tmp_path / "config.json",
        tmp_path / "state" / LATEST,
        *(tmp_path / "state").glob("state-*"),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_command_line_mistakes_are_one_line(tmp_path, capsys):
    assert _train(tmp_path / "run") == 0
    lm = tmp_path / "lm"
    text = tmp_path / "text.txt"
    text.write_text("hello world, " * 200)
    lm_args = ["lm", "train", str(text), "--steps", "4", "--hidden", "8", "--seq-len", "8"]
    assert main([*lm_args, "--eval-every", "2", "--out", str(lm), "--no-progress"]) == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    broken = tmp_path / "broken-lm"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (tmp_path / "no-runs").mkdir()
    capsys.readouterr()
    cases = [
        (["train", "--task", "adding", "--seq-len", "5", "--out", str(a_file)], "is a file"),
        (
            ["train", "--task", "adding", "--seq-len", "5", "--out", str(a_file / "sub")],
            "cannot create the folder",
        ),
        (["train", "--task", "adding", "--seq-len", "5", "--device", "cuda"], "--device cuda"),
        (["inspect", str(tmp_path / "run"), "--text", ""], "--text"),
        (["inspect", str(tmp_path / "run"), "--text", "the movie"], "--text needs a sentiment"),
        (["inspect", str(lm)], "character language model run"),
        (["inspect", str(tmp_path / "nowhere")], "no such run folder"),
        (["lm", "sample", str(tmp_path / "run")], "not a language model run"),
        (["lm", "sample", str(lm), "--length", "-5"], "argument --length"),
        (["train", "--task", "adding", "--seq-len", "5", "--max-minutes", "-1"], "--max-minutes"),
        (["train", "--task", "adding", "--seq-len", "5", "--weight-decay", "-1"], "--weight-decay"),
        ([*lm_args, "--dropout", "1.5", "--out", str(tmp_path / "lm2")], "--dropout"),
        (["compare", "--task", "adding", "--seq-len", "5", "--seeds", "0"], "--seeds"),
        (["lm", "sample", str(lm), "--prime", "hello, zq€"], "never saw in training: 'q', 'z'"),
        (["lm", "sample", str(broken)], "config.json: not valid JSON"),
        (["inspect", str(tmp_path / "no-runs")], "none of its subfolders"),
        (["inspect", str(tmp_path / "run"), "--text", "the movie"], "a run of the adding task"),
        (
            ["train", "--task", "adding", "--seq-len", "6", "--out", str(tmp_path / "run"),
             "--resume", "--force"],
            "--resume and --force contradict each other",
        ),
    ]  # fmt: skip
    for argv, expected in cases:
        if argv[0] == "train" and "--device" in argv:
            import torch

            if torch.cuda.is_available():
                continue
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert expected in line, (argv, line)
        assert "max_seconds" not in line and "hidden_size must" not in line


def test_help_shows_every_default(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for default in ("default: 2000", "default: 64", "default: 0.01", "default: 32"):
        assert default in text, default
    assert main(["lm", "sample", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.8)" in text and "seed of the sampling (default: 0)" in text


COMMANDS = (
    [], ["demo"], ["train"], ["compare"], ["lm", "train"], ["lm", "sample"],
    ["classify", "train"], ["forecast", "train"], ["inspect"],
)  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "longshort")
def test_help_says_each_default_once_and_no_empty_ones(command, capsys):
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text)  # said twice


@pytest.mark.parametrize("command", [["classify", "train"], ["forecast", "train"]])
def test_commands_without_validation_offer_no_patience_or_plateau(command, capsys):
    assert main([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "--patience" not in text and "--plateau" not in text
    assert main([*command, "--patience", "3"]) == 2
    assert "unrecognized arguments: --patience" in _one_line(capsys.readouterr().err)


def test_demo_gives_the_same_table_twice(tmp_path):
    """Budgets are steps: two runs with one seed give the same table (times aside)."""
    tables = []
    for name in ("a", "b"):
        assert (
            main(["demo", "--out", str(tmp_path / name), "--scale", "0.02", "--no-progress"]) == 0
        )
        rows = json.loads((tmp_path / name / "results.json").read_text())["rows"]
        tables.append([{k: v for k, v in r.items() if k != "seconds"} for r in rows])
    assert tables[0] == tables[1]


def test_demo_words_follow_the_numbers():
    from longshort.apps.demo import verdict

    row = {"T": 50, "metric": "accuracy", "baseline": 0.5, "steps": 600}
    rows = [
        {**row, "task": "sentiment", "model": "RNN", "final": 0.51, "solved": False},
        {**row, "task": "sentiment", "model": "LSTM", "final": 0.62, "solved": False},
    ]
    text = verdict(rows)
    assert "the LSTM did not solve it" in text and "does not show" in text
    rows[1] |= {"final": 0.99, "solved": True, "steps": 120}
    assert "the LSTM solved it in 120 steps" in verdict(rows)
    assert "On every task the LSTM bridged the gap" in verdict(rows)


def test_commands_that_evaluate_on_test_data_choose_nothing_by_it():
    from longshort.apps.runs import test_set_policy
    from longshort.train import Policy

    kept = test_set_policy(Policy(weight_decay=0.1), "the test split")
    assert kept.restore_best is False and kept.weight_decay == 0.1
    for policy in (Policy(patience=3), Policy(plateau=2)):
        with pytest.raises(ValueError, match="need a validation split"):
            test_set_policy(policy, "the test split")
