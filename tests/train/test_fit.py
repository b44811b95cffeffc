"""A short run learns; checkpoints round-trip and refuse corrupt or crafted files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from longshort.apps.experiment import Budget, train_one
from longshort.apps.runs import QUIET
from longshort.train.checkpoint import load, save


def test_lstm_clearly_beats_baseline_on_short_adding(tmp_path):
    run = train_one("adding", 10, "lstm", Budget(16, 400), tmp_path, session=QUIET)
    assert run.history.final_metric < 0.3 * run.task.baseline
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == len(run.history.steps)


def test_checkpoint_round_trip(tmp_path):
    run = train_one("sentiment", 3, "lstm", Budget(8, 5, batch_size=16), session=QUIET)
    save(run.model, tmp_path, {"task": run.task.describe()})
    model, config = load(tmp_path)
    assert config["task"]["task"] == "sentiment"
    for (k, a), (_, b) in zip(
        run.model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("cell", ["lstm-no-forget", "lstm-coupled", "lstm-ln", "lstm-peephole"])
def test_variant_cells_train_and_round_trip(tmp_path, cell):
    run = train_one("adding", 5, cell, Budget(8, 3, batch_size=16), session=QUIET)
    save(run.model, tmp_path, {"task": run.task.describe()})
    model, _ = load(tmp_path)
    assert model.config["cell"] == cell
    for (k, a), (_, b) in zip(
        run.model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k


def test_corrupt_and_crafted_checkpoints_refused(tmp_path):
    run = train_one("adding", 4, "rnn", Budget(4, 2, batch_size=8), session=QUIET)
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


def test_policy_keeps_the_best_weights_stops_on_patience_and_resumes(tmp_path):
    """With a learning rate far too high the metric gets worse after its best: training stops
    after `patience` evaluations without improvement and ends with the best weights."""
    from longshort.tasks import make_task
    from longshort.train import Policy, evaluate, fit, model_for_task

    task = make_task("adding", 8)

    def run(steps, state_dir=None, resume=False):
        torch.manual_seed(0)
        model = model_for_task(task, "lstm", 8)
        policy = Policy(patience=3, plateau=1)
        history = fit(
            model,
            task,
            steps=steps,
            batch_size=16,
            lr=0.3,
            eval_every=5,
            progress=False,
            policy=policy,
            state_dir=state_dir,
            resume=resume,
        )
        return model, history

    model, history = run(400)
    assert history.stopped == "patience" and history.steps[-1] < 400
    assert history.best_step < history.steps[-1]
    assert evaluate(model, task) == pytest.approx(history.best_metric, rel=1e-6)
    assert history.lr < 0.3  # the plateau rule halved it
    run(history.best_step + 5, state_dir=tmp_path)  # interrupted just after the best
    resumed, again = run(400, state_dir=tmp_path, resume=True)
    assert again.best_step == history.best_step and again.steps == history.steps
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_temporal_order_at_t100_is_solved_with_the_task_defaults():
    """Input gates that start closed (and forget gates held open) let the LSTM learn the
    order of two symbols 40-90 steps apart: it stayed at chance with torch's init."""
    run = train_one("temporal-order", 100, "lstm", Budget(32, 600, eval_every=100), session=QUIET)
    assert run.history.solved and run.history.final_metric >= 0.95
    assert run.model.config["input_bias"] == -3.0 and run.model.config["forget_bias"] == 3.0
