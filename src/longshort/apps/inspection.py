"""``longshort inspect``: figures and a JSON summary of a trained run's gates and cell states."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from longshort.apps.runs import run_kind
from longshort.inspect import carousel, half_life, trace
from longshort.report import figures
from longshort.tasks import TASKS, Task, make_task
from longshort.train.checkpoint import CONFIG, load

OTHER_RUNS = {
    "charlm": "a character language model run: sample from it with `longshort lm sample {path}`",
    "classify": "a classifier run (`longshort classify train`); its summary.json has its result",
    "forecast": "a forecaster run (`longshort forecast train`); its summary.json has its errors",
}
SENTIMENT_LABELS = ("negative", "positive")
LONGEST = 4  # units with the longest half-life, drawn first in the gate figures


def read_run_kind(path: Path) -> str:
    """The task name of the run folder at `path`; ValueError saying what the folder is when it
    is not a run of the long-range tasks that inspect reads."""
    if not path.is_dir():
        raise ValueError(f"{path}: no such run folder")
    config_path = path / CONFIG
    if not config_path.is_file():
        raise ValueError(
            f"{path}: not a run folder (no {CONFIG}); give a folder written by longshort train, "
            "or a folder of runs written by compare or demo"
        )
    kind = run_kind(path)  # None: load() below names what is wrong with the file
    if kind in OTHER_RUNS:
        raise ValueError(
            f"{path} is {OTHER_RUNS[kind].format(path=path)}; inspect reads runs of the "
            f"long-range tasks ({', '.join(sorted(TASKS))})"
        )
    return kind


def _sentence(task: Task, text: str) -> tuple[torch.Tensor, list[str]]:
    from longshort.tasks.sentiment import INDEX, VOCAB

    if task.name != "sentiment":
        raise ValueError(f"--text needs a sentiment run; this one is a run of the {task.name} task")
    tokens = text.lower().replace(",", " , ").split()
    if not tokens:
        raise ValueError("--text is empty; give a sentence such as 'the movie was not fun'")
    unknown = [w for w in tokens if w not in INDEX]
    if unknown:
        raise ValueError(
            f"--text: words not in the task's vocabulary: {', '.join(unknown)}; it knows: "
            f"{' '.join(sorted(VOCAB))}"
        )
    return torch.tensor([[INDEX[w] for w in tokens]]), tokens


def _prediction(task: Task, output: torch.Tensor) -> object:
    """A label with its probability for the classification tasks, else the raw values."""
    if task.metric_name != "accuracy" or output.dim() != 2:
        return [round(v, 4) for v in output[0].flatten().tolist()]
    probs = output[0].softmax(-1)
    k = int(probs.argmax())
    label = SENTIMENT_LABELS[k] if task.name == "sentiment" else f"class {k}"
    return {"label": label, "probability": round(float(probs[k]), 4)}


def inspect_run(path: Path, text: str | None = None, out: Path | None = None) -> dict[str, object]:
    """Trace the run's LSTM over `text` (sentiment runs) or one example of its task, draw the
    gates, carousel products and cell states into `out` (default path/inspect) and return the
    summary written there as summary.json."""
    kind = read_run_kind(path)
    model, config = load(path)
    task = make_task(kind, int(config.get("task", {}).get("seq_len", 50)))
    out = out or path / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    tokens = None
    if text is not None:
        x, tokens = _sentence(task, text)
    else:
        x = task.batch(1, torch.Generator().manual_seed(0)).x
    with torch.no_grad():
        tr = trace(model.rnn, model.features(x))[0]
        output = model(x)
    summary: dict[str, object] = {
        "run": str(path),
        "task": task.name,
        "cell": model.config["cell"],
        "seq_len": int(tr.h.shape[0]),
        "prediction": _prediction(task, output),
    }
    if tr.f is not None:  # LSTM: forget gates carry the cell state
        f = tr.f[:, 0]
        lives = half_life(f)
        longest = [int(u) for u in torch.argsort(lives, descending=True)[:LONGEST]]
        figures.gate_heatmap(
            f,
            tokens,
            f"Forget gate f_t: the {len(longest)} units that hold memory longest (*), "
            "then the most varying",
            path=out / "forget-gates.png",
            first=longest,
            first_label="*",
        )
        figures.gate_heatmap(tr.i[:, 0], tokens, "Input gate i_t", path=out / "input-gates.png")
        figures.carousel_products(
            carousel(f, k=0), "Carousel products from step 0", path=out / "carousel.png"
        )
        figures.cell_trajectories(
            tr.c[:, 0], tokens, "Cell states C_t", path=out / "cell-states.png"
        )
        summary["half_life_steps"] = [round(v, 2) for v in lives.tolist()]
        summary["longest_memory_units"] = longest
        summary["mean_forget_gate"] = round(float(f.mean()), 4)
    elif tr.z is not None:  # GRU: update gates carry h along its additive path
        z = tr.z[:, 0]
        lives = half_life(z)
        longest = [int(u) for u in torch.argsort(lives, descending=True)[:LONGEST]]
        figures.gate_heatmap(
            z,
            tokens,
            f"Update gate z_t: the {len(longest)} units that hold memory longest (*), "
            "then the most varying",
            path=out / "update-gates.png",
            first=longest,
            first_label="*",
        )
        figures.gate_heatmap(tr.r[:, 0], tokens, "Reset gate r_t", path=out / "reset-gates.png")
        figures.carousel_products(
            carousel(z, k=0),
            "Products of update gates from step 0 (∂h_t/∂h_0 along z)",
            path=out / "carousel.png",
        )
        summary["half_life_steps"] = [round(v, 2) for v in lives.tolist()]
        summary["longest_memory_units"] = longest
        summary["mean_update_gate"] = round(float(z.mean()), 4)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["out"] = str(out)
    return summary


def runs_in(path: Path, text: str | None = None) -> list[Path]:
    """The run folders that `inspect PATH` reads: PATH itself when it is a run, else its
    subfolders that are runs of the long-range tasks (a compare or demo folder), sentiment runs
    alone when `text` is given. ValueError when there is none."""
    if not path.is_dir():
        raise ValueError(f"{path}: no such run folder")
    if (path / CONFIG).is_file():
        return [path]
    runs = sorted(
        sub for sub in path.iterdir() if (sub / CONFIG).is_file() and run_kind(sub) in TASKS
    )
    if text is not None:
        runs = [sub for sub in runs if run_kind(sub) == "sentiment"]
    if not runs:
        wanted = (
            "sentiment runs (for --text)" if text is not None else "runs of the long-range tasks"
        )
        raise ValueError(
            f"{path}: not a run folder (no {CONFIG}), and none of its subfolders holds "
            f"{wanted}; give a folder written by longshort train, compare or demo"
        )
    return runs


def inspect_runs(
    path: Path, text: str | None = None, out: Path | None = None
) -> list[dict[str, object]]:
    """:func:`inspect_run` on each run that :func:`runs_in` finds at `path`; with `out`, each
    run's figures go to out/RUN-NAME (out itself for a single run folder)."""
    runs = runs_in(path, text)
    if runs == [path]:
        return [inspect_run(path, text, out)]
    return [inspect_run(run, text, None if out is None else out / run.name) for run in runs]


# -- the explorer page (longshort inspect RUN --explore) ------------------------------------

EXPLORE_CHARS = 20_000  # characters of a language model's text in one page
EXPLORE_SEQUENCES = 12  # sequences of the other run kinds


def _summary(path: Path) -> dict:
    file = path / "summary.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def _lm_input(model, config: dict, path: Path, input_file: Path | None, chars: int):
    """The characters to explore and how they were chosen: the held-out tail of the run's
    corpus (or `input_file`), the last `chars` characters."""
    from longshort.data import read_texts, shakespeare_corpus, stdlib_corpus

    if input_file is not None:
        text, name = read_texts([input_file])[0], str(input_file)
    else:
        corpus = str(_summary(path).get("corpus", {}).get("corpus", "python-stdlib"))
        if corpus.startswith("shakespeare"):
            text = shakespeare_corpus()[0]
        elif corpus == "python-stdlib":
            text = stdlib_corpus()[0]
        else:
            raise ValueError(f"{path}: trained on files; give them to explore with --input FILE")
        name = f"the {corpus} corpus"
    vocab = {c: i for i, c in enumerate(config["vocab"])}
    part = "".join(c for c in text[-chars:] if c in vocab and c != "\0")
    note = (
        f"The last {len(part):,} characters of {name} ({len(text):,} in all: the end of its "
        "held-out test split), characters the model never saw left out."
    )
    return torch.tensor([[vocab[c] for c in part]]), [list(part)], None, note


def _step_tokens(x: torch.Tensor, kind: str) -> list[list[str]]:
    """A short label for each step of each sequence: the word (sentiment), the symbol of a
    one-hot step, the value and its marker (adding), else the first feature's value."""
    if kind == "sentiment":
        from longshort.tasks.sentiment import VOCAB

        return [[VOCAB[int(i)] for i in row] for row in x]
    if x.dim() == 2:
        return [[str(int(i)) for i in row] for row in x]
    if kind == "adding":
        return [[f"{v:.2f}" + ("*" if m > 0 else "") for v, m in row.tolist()] for row in x]
    if x.shape[-1] > 2:  # one-hot symbols
        return [[str(int(v.argmax())) if v.max() > 0 else "·" for v in row] for row in x]
    return [[f"{v[0]:.2f}" for v in row.tolist()] for row in x]


def _series_input(kind: str, path: Path, config: dict, input_file: Path | None):
    """Sequences of a classifier (with their class names) or windows of a forecaster."""
    summary = _summary(path)
    if kind == "classify":
        from longshort.data.sequences import read_file, uea

        if input_file is not None:
            data = read_file(input_file, config.get("classes"))
        else:
            data = uea(str(summary.get("dataset")))[1]  # the test split
        take = torch.arange(min(EXPLORE_SEQUENCES, len(data.y)))
        labels = [data.classes[int(data.y[k])] for k in take]
        x, lengths = data.x[take], data.lengths[take].tolist()
        return x, _step_tokens(x, kind), labels, lengths, "The first sequences of the data."
    from longshort.data.forecasting import Forecast
    from longshort.data.series import read_column, taylor

    source = str(summary.get("series", ""))
    if source.startswith("taylor"):
        series = taylor()
    elif ":" in source:
        csv, column = source.rsplit(":", 1)
        series = read_column(Path(csv), column)
    else:
        raise ValueError(f"{path}: its summary.json names no series to read")
    task = Forecast(series, summary["window"], summary["horizon"], summary["held_out_steps"],
                    summary["season"], False, summary.get("base"))  # fmt: skip
    x = task.batch(EXPLORE_SEQUENCES, torch.Generator().manual_seed(0)).x
    return x, _step_tokens(x, kind), None, None, "Training windows drawn with seed 0."


def explore_run(
    path: Path, out: Path | None = None, input_file: Path | None = None, chars: int = EXPLORE_CHARS
) -> Path:
    """Write the explorer page of the run at `path` (:func:`longshort.inspect.explore`) to
    `out` (default path/inspect/explore.html) and return its path."""
    from longshort.inspect.explorer import explore

    if not (path / CONFIG).is_file():
        raise ValueError(f"{path}: not a run folder (no {CONFIG}); give a folder written by a run")
    kind = run_kind(path)
    model, config = load(path)
    out = out or path / "inspect" / "explore.html"
    title = f"What each unit learned: {path.name} ({kind}, {model.config['cell'].upper()})"
    labels = lengths = None
    if kind == "charlm":
        x, tokens, lengths, note = _lm_input(model, config, path, input_file, chars)
    elif kind in ("classify", "forecast"):
        x, tokens, labels, lengths, note = _series_input(kind, path, config, input_file)
    elif kind in TASKS:
        task = make_task(kind, int(config.get("task", {}).get("seq_len", 50)))
        batch = task.batch(EXPLORE_SEQUENCES, torch.Generator().manual_seed(0))
        x, tokens, note = batch.x, _step_tokens(batch.x, kind), "Examples drawn with seed 0."
        if kind == "sentiment":
            labels = [SENTIMENT_LABELS[int(y)] for y in batch.y]
        lengths = None if batch.lengths is None else batch.lengths.tolist()
    else:
        raise ValueError(f"{path}: a run of kind {kind!r}, which the explorer does not read")
    if lengths is not None:
        tokens = [t[:n] for t, n in zip(tokens, lengths, strict=True)]
    return explore(model, x, tokens, out, lengths=lengths, labels=labels,
                   text=kind == "charlm", title=title, note=note)  # fmt: skip


def explore_runs(
    path: Path, out: Path | None = None, input_file: Path | None = None, chars: int = EXPLORE_CHARS
) -> list[Path]:
    """:func:`explore_run` on the run at `path`, or on each run of a compare or demo folder
    (as :func:`runs_in` finds them; with `out`, each page goes to out/RUN-NAME.html)."""
    if (path / CONFIG).is_file():
        return [explore_run(path, out, input_file, chars)]
    runs = runs_in(path)
    return [
        explore_run(run, None if out is None else out / f"{run.name}.html", input_file, chars)
        for run in runs
    ]
