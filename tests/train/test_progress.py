"""Progress a log can hold, and a finished run that --resume leaves finished."""

from __future__ import annotations

import io

import pytest
import torch

from longshort.tasks import make_task
from longshort.train import fit, model_for_task
from longshort.train.progress import BarProgress, LineProgress, NoProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_line_every_tenth_of_the_run_and_no_redraws():
    log = io.StringIO()
    shown = progress(1000, 0, "adding", True, log)
    assert isinstance(shown, LineProgress)
    for step in range(1, 1001):
        shown.update(step, 0.5, 100.0)
    shown.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in log.getvalue()
    assert lines[0] == "adding: step 100/1000 (10%), loss 0.5000, 100.0 steps/s"
    assert lines[-1].startswith("adding: step 1000/1000 (100%)")


def test_a_terminal_gets_the_bar_and_no_progress_gets_nothing():
    assert isinstance(progress(10, 0, "x", True, Terminal()), BarProgress)
    assert isinstance(progress(10, 0, "x", False, Terminal()), NoProgress)


def test_a_short_run_prints_each_step_at_most_once():
    log = io.StringIO()
    shown = progress(3, 0, "tiny", True, log)
    for step in (1, 2, 3):
        shown.update(step, 1.0, 2.0)
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "tiny: step 1/3 (33%)",
        "tiny: step 2/3 (66%)",
        "tiny: step 3/3 (100%)",
    ]


def test_training_off_a_terminal_logs_lines_not_a_flood(capsys):
    task = make_task("adding", 6)
    torch.manual_seed(0)
    fit(model_for_task(task, "lstm", 4), task, steps=200, batch_size=8, eval_every=100)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err
    steps = [int(line.split("step ")[1].split("/")[0]) for line in err.splitlines()]
    assert set(range(20, 201, 20)) <= set(steps)  # every tenth of the run...
    assert len(steps) == len(set(steps))  # ...each step once (a slow one adds its minute line)


def _fit(task, state_dir, steps, resume):
    torch.manual_seed(0)
    model = model_for_task(task, "lstm", 8, forget_bias=3.0, input_bias=-3.0)
    return fit(
        model,
        task,
        steps=steps,
        batch_size=32,
        lr=1e-2,
        eval_every=20,
        progress=False,
        state_dir=state_dir,
        resume=resume,
    )


def test_resuming_a_solved_run_trains_no_further(tmp_path, capsys):
    task = make_task("sentiment", 3)
    first = _fit(task, tmp_path, 400, False)
    if not first.solved:
        pytest.fail(f"the short sentiment run should solve its task: {first.final_metric}")
    again = _fit(task, tmp_path, 1000, True)
    assert again.steps == first.steps and again.solved and again.stopped == "solved"
    assert "already ended at step" in capsys.readouterr().err
