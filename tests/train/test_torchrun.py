"""`longshort train` under torchrun (2 processes, gloo, loopback) ends with the weights of a
1-process run with the same global batch and seed; --deterministic runs repeat bit for bit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import torch
from safetensors.torch import load_file

ARGS = [
    "train",
    "--task",
    "adding",
    "--seq-len",
    "12",
    "--steps",
    "12",
    "--hidden",
    "8",
    "--batch-size",
    "32",
    "--no-progress",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_equal_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, "-m", "longshort.cli", *ARGS, "--out", str(one)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_port()}",
            "-m",
            "longshort.cli",
            *ARGS,
            "--out",
            str(two),
        ],
        check=True,
        capture_output=True,
    )
    a = load_file(one / "model.safetensors")
    b = load_file(two / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


def test_deterministic_runs_repeat_bit_for_bit(tmp_path):
    curves = []
    for name in ("a", "b"):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "longshort.cli",
                *ARGS,
                "--deterministic",
                "--out",
                str(tmp_path / name),
            ],
            check=True,
            capture_output=True,
        )
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        curves.append([(r["train_loss"], r["mse"]) for r in map(json.loads, lines)])
    assert curves[0] == curves[1]
