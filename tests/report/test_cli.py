"""CLI smoke tests: train, compare, inspect and demo with tiny budgets."""

from __future__ import annotations

import json
import re

from longshort.cli import main


def test_train_and_inspect(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--task",
                "sentiment",
                "--seq-len",
                "4",
                "--steps",
                "30",
                "--hidden",
                "8",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    ckpt = tmp_path
    assert (ckpt / "model.safetensors").exists() and (ckpt / "metrics.jsonl").exists()
    assert (ckpt / "learning-curve.png").stat().st_size > 1000
    assert (
        main(["inspect", str(ckpt), "--text", "the titanic movie was not as my friends said fun"])
        == 0
    )
    summary = json.loads((ckpt / "inspect" / "summary.json").read_text())
    assert len(summary["half_life_steps"]) == 8
    lives = summary["half_life_steps"]
    assert lives[summary["longest_memory_units"][0]] == max(lives)
    assert summary["prediction"]["label"] in ("negative", "positive")
    assert 0.5 <= summary["prediction"]["probability"] <= 1 and summary["seq_len"] == 10
    for name in ("forget-gates.png", "carousel.png", "cell-states.png"):
        assert (ckpt / "inspect" / name).stat().st_size > 1000


def test_compare(tmp_path, capsys):
    assert (
        main(
            [
                "compare",
                "--task",
                "adding",
                "--seq-len",
                "5,8",
                "--steps",
                "20",
                "--hidden",
                "8",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.count("| adding |") == 4
    assert (tmp_path / "metric-vs-length-adding.png").exists()
    assert (tmp_path / "gradient-adding-T8.png").exists()
    assert main(["inspect", str(tmp_path)]) == 0  # a compare folder: each run inside
    written = capsys.readouterr().out
    for run in ("adding-rnn-T5", "adding-lstm-T5", "adding-rnn-T8", "adding-lstm-T8"):
        assert f"{tmp_path / run / 'inspect'}" in written, run
        assert (tmp_path / run / "inspect" / "summary.json").exists()


def test_demo_tiny_budget_page_references_existing_files(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--scale", "0.01", "--no-progress"]) == 0
    page = (tmp_path / "index.html").read_text()
    refs = re.findall(r'src="([^"]+)"', page)
    assert len(refs) >= 5
    for ref in refs:
        assert (tmp_path / ref).stat().st_size > 1000, ref
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"RNN", "LSTM"}
    assert main(["inspect", str(tmp_path), "--text", "the movie was not fun"]) == 0
    assert (tmp_path / "sentiment-lstm" / "inspect" / "forget-gates.png").exists()
    assert not (tmp_path / "adding-lstm" / "inspect").exists()  # --text: sentiment runs only


def test_the_gate_figure_leads_with_the_units_that_remember_longest(tmp_path):
    import torch

    from longshort.inspect import half_life
    from longshort.report import figures

    torch.manual_seed(0)
    f = torch.rand(30, 40) * 0.5  # 40 units forgetting fast, with large swings...
    f[:, 33] = 0.999  # ...but for two that hold memory and barely vary
    f[:, 7] = 0.99
    longest = [int(u) for u in torch.argsort(half_life(f), descending=True)[:4]]
    assert longest[:2] == [33, 7]
    fig = figures.gate_heatmap(f, None, "f", first=longest, first_label="*")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:2] == ["33 *", "7 *"] and len(labels) == 16
    assert len(set(labels)) == 16


def test_train_resume_and_bad_checkpoint(tmp_path, capsys):
    args = [
        "train",
        "--task",
        "adding",
        "--seq-len",
        "6",
        "--steps",
        "20",
        "--hidden",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 0
    assert (tmp_path / "state" / "latest.json").exists()
    assert main([*args[:6], "40", *args[7:], "--resume"]) == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 40
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("[]")
    assert main(["inspect", str(bad)]) == 2
    capsys.readouterr()
    (bad / "config.json").write_text("[]")
    (bad / "model.safetensors").write_bytes(b"")
    assert main(["inspect", str(bad)]) == 2
    assert "expected a JSON object with a 'model' object" in capsys.readouterr().err


def test_bad_training_options_are_clear_errors(tmp_path, capsys):
    base = ["train", "--task", "adding", "--seq-len", "5", "--out", str(tmp_path), "--no-progress"]
    for extra, message in (
        (["--steps", "0"], "argument --steps: must be a positive whole number, got 0"),
        (["--lr", "-1"], "argument --lr: must be a positive number, got -1"),
        (["--hidden", "0"], "argument --hidden: must be a positive whole number, got 0"),
        (["--max-minutes", "0"], "argument --max-minutes: must be a positive number, got 0"),
    ):
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err


def test_gru_trains_compares_and_inspects(tmp_path, capsys):
    run = tmp_path / "gru"
    base = ["--task", "adding", "--steps", "20", "--hidden", "8", "--no-progress"]
    assert main(["train", *base, "--seq-len", "6", "--cell", "gru", "--out", str(run)]) == 0
    assert main(["inspect", str(run)]) == 0
    summary = json.loads((run / "inspect" / "summary.json").read_text())
    assert summary["cell"] == "gru" and len(summary["half_life_steps"]) == 8
    assert (run / "inspect" / "update-gates.png").stat().st_size > 1000
    cmp = tmp_path / "cmp"
    args = ["compare", *base, "--seq-len", "5", "--cell", "rnn,gru,lstm", "--out", str(cmp)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| GRU |" in out and "| RNN |" in out and "| LSTM |" in out
    assert main(["compare", *base, "--seq-len", "5", "--cell", "rnn,tcn"]) == 2


def test_compare_over_seeds_reports_mean_spread_and_solved_counts(tmp_path, capsys):
    args = ["compare", "--task", "adding", "--seq-len", "5", "--steps", "20", "--hidden", "8"]
    assert main([*args, "--seeds", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    rows = json.loads((tmp_path / "compare-adding.json").read_text())
    assert {r["model"] for r in rows} == {"RNN", "LSTM"} and all(r["seeds"] == 2 for r in rows)
    for r in rows:
        assert r["min"] <= r["mean"] <= r["max"] and r["solved"].endswith("/2")
    assert (tmp_path / "adding-lstm-T5-s1" / "model.safetensors").exists()
    assert "| mean | range |" in capsys.readouterr().out


def test_seed_rows_aggregate_as_stated():
    from longshort.apps.tables import seed_rows

    base = {"task": "adding", "T": 10, "model": "LSTM", "metric": "mse", "baseline": 0.17}
    rows = [
        {**base, "final": 0.01, "solved": True, "steps": 100},
        {**base, "final": 0.03, "solved": True, "steps": 300},
        {**base, "final": 0.20, "solved": False, "steps": 1000},
    ]
    (row,) = seed_rows(rows)
    assert row["mean"] == 0.08 and (row["min"], row["max"]) == (0.01, 0.2)
    assert row["solved"] == "2/3" and row["steps_to_solve"] == 200
