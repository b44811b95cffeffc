"""Resume continues to the same result as an uninterrupted run; killed runs lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from longshort.tasks import make_task
from longshort.train import fit, model_for_task
from longshort.train.state import LATEST, load_state


def _run(steps, state_dir=None, resume=False):
    task = make_task("adding", 12)
    torch.manual_seed(0)
    model = model_for_task(task, "lstm", 8)
    history = fit(
        model,
        task,
        steps=steps,
        batch_size=16,
        lr=1e-2,
        eval_every=10,
        progress=False,
        state_dir=state_dir,
        resume=resume,
    )
    return model, history


def test_resume_equals_uninterrupted(tmp_path):
    full, full_history = _run(40)
    _run(20, state_dir=tmp_path)
    resumed, history = _run(40, state_dir=tmp_path, resume=True)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert history.steps == full_history.steps
    assert history.eval_metric == full_history.eval_metric


def test_corrupt_state_refused(tmp_path):
    _run(10, state_dir=tmp_path)
    slot = json.loads((tmp_path / LATEST).read_text())["slot"]
    path = tmp_path / f"state-{slot}.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    task = make_task("adding", 12)
    model = model_for_task(task, "lstm", 8)
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_state(tmp_path, model, opt, torch.Generator())


SCRIPT = """
import sys, torch
from pathlib import Path
from longshort.tasks import make_task
from longshort.train import fit, model_for_task
task = make_task("adding", 12)
torch.manual_seed(0)
model = model_for_task(task, "lstm", 8)
fit(model, task, steps=int(sys.argv[2]), batch_size=16, lr=1e-2, eval_every=1, progress=False,
    state_dir=Path(sys.argv[1]), resume=True)
for k, v in model.state_dict().items():
    print(k, float(v.double().sum()))
"""


def _wait_for_a_state(state_dir, proc, before=None) -> None:
    """Until the training process has saved a state newer than `before` (the pointer's text
    when it started): it is then past imports and compiling, however slow or busy the machine
    is. Returns early if the process ended."""
    pointer = state_dir / LATEST
    while proc.poll() is None:
        if pointer.exists() and pointer.read_text() not in ("", before):
            return
        time.sleep(0.05)


def test_sigkill_at_random_moments_then_resume(tmp_path):
    """SIGKILL during training and during state writes (every step writes one) never leaves a
    state that fails to load, and the resumed run ends with the uninterrupted weights."""
    ref = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ref"), "60"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    state = tmp_path / "killed"
    for delay in (0.0, 0.3, 0.7):  # after the run's first saved state, whatever the machine's speed
        before = (state / LATEST).read_text() if (state / LATEST).exists() else None
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(state), "60"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_a_state(state, proc, before)
        time.sleep(delay)
        if proc.poll() is None:  # (a fast machine may have finished the run by now)
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(state), "60"], capture_output=True, text=True, check=True
    ).stdout
    assert done == ref


def test_ctrl_c_saves_then_resumes(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_a_state(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert "state saved" in err
    saved = json.loads((tmp_path / LATEST).read_text())["step"]
    assert saved > 0
