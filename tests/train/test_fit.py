"""A short run learns; checkpoints round-trip and refuse corrupt or crafted files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from longshort.report.experiment import train_one
from longshort.train.checkpoint import load, save


def test_lstm_clearly_beats_baseline_on_short_adding(tmp_path):
    run = train_one("adding", 10, "lstm", 16, 400, 60, 0, 1e-2, 64, tmp_path, progress=False)
    assert run.history.final_metric < 0.3 * run.task.baseline
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == len(run.history.steps)


def test_checkpoint_round_trip(tmp_path):
    run = train_one("sentiment", 3, "lstm", 8, 5, None, 0, 1e-2, 16, None, progress=False)
    save(run.model, tmp_path, {"task": run.task.describe()})
    model, config = load(tmp_path)
    assert config["task"]["task"] == "sentiment"
    for (k, a), (_, b) in zip(
        run.model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_corrupt_and_crafted_checkpoints_refused(tmp_path):
    run = train_one("adding", 4, "rnn", 4, 2, None, 0, 1e-2, 8, None, progress=False)
    save(run.model, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors"):
        load(tmp_path)

    ran = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (ran.write_text, ("pwned",))

    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load(tmp_path)
    assert not ran.exists()  # the pickle payload never ran

    save(run.model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model"]["hidden_size"] = -3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.hidden_size must be an int in \[1, 1000000\]"):
        load(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        load(tmp_path)


def test_evaluate_restores_the_mode_the_model_had():
    from longshort.tasks import make_task
    from longshort.train import evaluate, model_for_task

    task = make_task("adding", 5)
    model = model_for_task(task, "lstm", 4)
    for mode in (False, True):
        model.train(mode)
        evaluate(model, task, batches=1, batch_size=4)
        assert model.training is mode
