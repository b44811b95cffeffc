"""The ``longshort`` command line: train, compare, demo, inspect."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from longshort.tasks import TASKS
from longshort.train.model import CELLS


class _Help(argparse.HelpFormatter):
    """Each option's default after its help, once, where it says something (not None, not a
    flag's False, not already in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    """Bad options end in one line naming the flag, and exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def _count(text: str) -> int:
    """A whole number >= 0."""
    return 0 if text.strip() == "0" else _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _cells(text: str) -> list[str]:
    cells = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if not cells or bad:
        raise argparse.ArgumentTypeError(
            f"expected cells from {', '.join(CELLS)} separated by commas, got {text!r}"
        )
    return cells


def _lengths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be positive, got {text!r}")
    return values


def _loop_args(
    p: argparse.ArgumentParser,
    hidden: int,
    steps: int,
    batch: int,
    lr: float,
    out: str | None,
    resume: bool = True,
    patience: int | None = None,
    plateau: int | None = None,
    validation: bool = True,
) -> None:
    """The options of the shared training loop, with each command's defaults; --patience and
    --plateau only where a validation split can choose the model (`validation`)."""
    p.add_argument("--hidden", type=_positive_int, default=hidden, help="hidden size")
    p.add_argument("--steps", type=_positive_int, default=steps, help="maximum training steps")
    p.add_argument("--batch-size", type=_positive_int, default=batch, help="sequences a step")
    p.add_argument("--lr", type=_positive_float, default=lr, help="Adam's learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    p.add_argument(
        "--eval-every", type=_positive_int, default=100, help="steps between evaluations"
    )
    p.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        help="time cap per run (a safety net; the budget is --steps)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None if out is None else Path(out),
        help="run folder" + (" (default: runs/TASK-CELL-TSEQ_LEN)" if out is None else ""),
    )
    p.add_argument("--force", action="store_true", help="replace a run already in the --out folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only (bit-identical CPU runs for a seed)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    if validation:
        p.add_argument(
            "--patience",
            type=_positive_int,
            default=patience,
            help="stop after this many evaluations without improvement",
        )
        p.add_argument(
            "--plateau",
            type=_positive_int,
            default=plateau,
            help="halve the learning rate after this many evaluations without improvement",
        )
    p.add_argument(
        "--weight-decay", type=float, default=0.0, help="decoupled weight decay (AdamW) if > 0"
    )
    if resume:
        p.add_argument(
            "--resume", action="store_true", help="continue from the run folder's saved state"
        )


def _budget(args: argparse.Namespace):
    """The training options of a command's run, from its flags."""
    from longshort.apps.runs import Budget

    return Budget(
        args.hidden,
        args.steps,
        None if args.max_minutes is None else args.max_minutes * 60,
        args.seed,
        args.lr,
        args.batch_size,
        args.eval_every,
        _policy(args),
    )


def _session(args: argparse.Namespace):
    """How the command's runs are carried out, from its flags."""
    from longshort.apps.runs import Session

    return Session(
        progress=not args.no_progress,
        resume=getattr(args, "resume", False),
        force=getattr(args, "force", False),
        device=args.device,
    )


def _policy(args: argparse.Namespace):
    from longshort.train import Policy

    patience, plateau = getattr(args, "patience", None), getattr(args, "plateau", None)
    policy = Policy(patience, plateau, weight_decay=args.weight_decay)
    policy.check()  # before any run folder is touched
    return policy


# the commands' parsers -----------------------------------------------------------------------


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="RNN against LSTM on long-range tasks, as an HTML page")
    demo.add_argument("--out", type=Path, default=Path("longshort-demo"), help="page folder")
    demo.add_argument("--seed", type=int, default=0, help="seed of weights and data")
    demo.add_argument(
        "--scale", type=_positive_float, default=1.0, help="multiply the training steps"
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress display")
    demo.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where to train")


def _add_train_and_compare(sub) -> None:
    train = sub.add_parser("train", help="train one model on a task")
    train.add_argument("--task", required=True, choices=sorted(TASKS))
    _loop_args(train, hidden=32, steps=2000, batch=64, lr=1e-2, out=None)
    train.add_argument("--cell", choices=list(CELLS), default="lstm")
    train.add_argument("--seq-len", type=_positive_int, required=True, help="T, or the gap")
    compare = sub.add_parser("compare", help="RNN against LSTM at several lengths")
    compare.add_argument("--task", required=True, choices=sorted(TASKS))
    _loop_args(compare, hidden=32, steps=2000, batch=64, lr=1e-2, out="runs/compare", resume=False)
    compare.add_argument("--seq-len", type=_lengths, required=True, help="e.g. 50,100,200")
    compare.add_argument(
        "--cell",
        type=_cells,
        default=["rnn", "lstm"],
        help="cells side by side, e.g. rnn,gru,lstm or lstm,lstm-no-forget,lstm-peephole,lstm-ln",
    )
    compare.add_argument(
        "--seeds", type=_positive_int, default=1, help="seeds per run: mean and spread"
    )


def _add_lm(sub) -> None:
    lm = sub.add_parser("lm", help="character language model: train, sample")
    lm_sub = lm.add_subparsers(dest="lm_command", required=True)
    lm_train = lm_sub.add_parser("train", help="train on text files (default: Python's stdlib)")
    lm_train.add_argument("files", nargs="*", type=Path, help="UTF-8 text files (else --corpus)")
    lm_train.add_argument(
        "--corpus",
        choices=["stdlib", "shakespeare"],
        default="stdlib",
        help="built-in corpus when no files are given",
    )
    _loop_args(
        lm_train, hidden=256, steps=2000, batch=32, lr=2e-3, out="runs/lm", patience=5, plateau=2
    )
    lm_train.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout on the LSTM's input and output (default: by corpus size: 0.3 under "
        "200k characters, 0.1 under 2M, else 0)",
    )
    lm_train.add_argument("--layers", type=_positive_int, default=1, help="stacked LSTM layers")
    lm_train.add_argument("--seq-len", type=_positive_int, default=100, help="truncated BPTT chunk")
    lm_sample = lm_sub.add_parser("sample", help="generate text from a checkpoint")
    lm_sample.add_argument("checkpoint", type=Path, help="a folder written by lm train")
    lm_sample.add_argument("--prime", default="def ", help="text to continue")
    lm_sample.add_argument(
        "--temperature",
        type=_positive_float,
        default=0.8,
        help="below 1 sharper and safer, above 1 more varied",
    )
    lm_sample.add_argument("--length", type=_count, default=300, help="characters to add")
    lm_sample.add_argument("--seed", type=int, default=0, help="seed of the sampling")


def _add_classify(sub) -> None:
    classify = sub.add_parser("classify", help="sequence classification")
    classify_sub = classify.add_subparsers(dest="classify_command", required=True)
    ct = classify_sub.add_parser("train", help="train an LSTM classifier")
    ct.add_argument(
        "--dataset",
        choices=["JapaneseVowels", "GunPoint", "BasicMotions", "ArrowHead"],
        default=None,
        help="a UEA/UCR data set (else --train and --test)",
    )
    ct.add_argument("--train", type=Path, default=None, help=".ts, .npz or .csv file")
    ct.add_argument("--test", type=Path, default=None, help=".ts, .npz or .csv file")
    _loop_args(ct, hidden=64, steps=1500, batch=32, lr=3e-3, out="runs/classify", validation=False)


def _add_forecast(sub) -> None:
    forecast = sub.add_parser("forecast", help="multi-step forecasting")
    forecast_sub = forecast.add_subparsers(dest="forecast_command", required=True)
    ft = forecast_sub.add_parser("train", help="train an LSTM forecaster")
    ft.add_argument("--dataset", choices=["taylor"], default=None, help="a built-in series")
    ft.add_argument("--csv", type=Path, default=None, help="or a CSV file of your own")
    ft.add_argument("--column", default=None, help="the CSV's column to forecast")
    ft.add_argument(
        "--window", type=_positive_int, default=336, help="past steps seen (336 = a week)"
    )
    ft.add_argument("--horizon", type=_positive_int, default=48, help="steps forecast (48 = a day)")
    ft.add_argument("--test-steps", type=_positive_int, default=672, help="held-out tail")
    ft.add_argument(
        "--season", type=_positive_int, default=336, help="period of the seasonal naive"
    )
    ft.add_argument(
        "--base",
        choices=["linear", "seasonal", "none"],
        default="linear",
        help="the forecast the LSTM learns to correct: a ridge regression from the window "
        "(fitted on the training part), the seasonal naive, or none (the values themselves)",
    )
    ft.add_argument(
        "--residual", action="store_true", help="the same as --base seasonal (older flag)"
    )
    _loop_args(ft, hidden=64, steps=1500, batch=32, lr=3e-3, out="runs/forecast", validation=False)


def _add_inspect(sub) -> None:
    inspect = sub.add_parser("inspect", help="figures and a JSON summary of a trained run")
    inspect.add_argument(
        "checkpoint",
        type=Path,
        help="a run folder of train, or a folder of compare or demo (each run inside)",
    )
    inspect.add_argument("--text", default=None, help="a sentence (sentiment runs)")
    inspect.add_argument("--out", type=Path, default=None, help="default: RUN/inspect")
    inspect.add_argument(
        "--explore",
        action="store_true",
        help="write one interactive HTML page of what each unit learned "
        "(RUN/inspect/explore.html, or --out FILE; a page per run of a compare or demo folder)",
    )
    inspect.add_argument(
        "--input",
        type=Path,
        default=None,
        help="with --explore: the text (lm runs) or sequences (classify runs) to run the model "
        "over (default: the run's own corpus or data)",
    )
    inspect.add_argument(
        "--chars",
        type=int,
        default=20_000,
        help="with --explore: characters of text in the page (lm runs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="longshort",
        description="LSTM, GRU and RNN with handwritten BPTT: train, compare, inspect, demo.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for add in (_add_demo, _add_train_and_compare, _add_lm, _add_classify, _add_forecast):
        add(sub)
    _add_inspect(sub)
    return parser


# the commands: parse, call the Python API, print ------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from longshort.apps.experiment import train_one
    from longshort.train import distributed

    out = args.out or Path("runs") / f"{args.task}-{args.cell}-T{args.seq_len}"
    run = train_one(args.task, args.seq_len, args.cell, _budget(args), out, _session(args))
    h = run.history
    if not distributed.is_main(args.device):
        return 0
    print(
        f"{args.cell.upper()} {args.task} T={args.seq_len}: held-out {run.task.metric_name} "
        f"{h.final_metric:.4f} (baseline {run.task.baseline:.4f}), "
        f"{'solved' if h.solved else 'not solved'} after {h.steps[-1]} steps, "
        f"{h.seconds:.1f} s\nwrote the run to {out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from longshort.apps.experiment import compare
    from longshort.apps.tables import format_seed_table, format_table

    session = _session(args)
    rows = compare(
        args.task, args.seq_len, args.cell, _budget(args), args.out, session, seeds=args.seeds
    )
    print(format_seed_table(rows) if args.seeds > 1 else format_table(rows))
    print(f"wrote the table, figures and runs to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from longshort.apps.demo import DemoConfig, run_demo
    from longshort.apps.tables import format_table

    config = DemoConfig(args.out, args.seed, scale=args.scale, session=_session(args))
    summary = run_demo(config)
    print(format_table(summary["rows"]))
    print(f"\n{summary['verdict']}")
    if summary["time_cap_fired"]:
        print(f"the time cap stopped: {', '.join(summary['time_cap_fired'])}")
    print(f"wrote {args.out / 'index.html'} ({summary['seconds']} s)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from longshort.apps.inspection import explore_runs, inspect_runs

    if args.explore:
        if args.chars < 1:
            raise ValueError(f"--chars must be a positive number of characters, got {args.chars}")
        for page in explore_runs(args.checkpoint, args.out, args.input, args.chars):
            print(f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB); open it in a browser")
        return 0
    summaries = inspect_runs(args.checkpoint, args.text, args.out)
    if len(summaries) == 1:
        print(json.dumps(summaries[0], indent=2)[:2000])
    for summary in summaries:
        print(f"wrote figures and summary.json to {summary['out']}")
    return 0


def cmd_lm(args: argparse.Namespace) -> int:
    from longshort.apps.lm import sample, train_lm

    if args.lm_command == "sample":
        print(sample(args.checkpoint, args.prime, args.length, args.temperature, args.seed))
        return 0
    summary = train_lm(
        args.files,
        args.out,
        args.corpus,
        args.layers,
        args.seq_len,
        args.dropout,
        _budget(args),
        _session(args),
    )
    print(json.dumps(summary, indent=2))
    print(f"wrote the run to {args.out}")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from longshort.apps.classify import train_classifier

    data = (args.dataset, args.train, args.test)
    summary = train_classifier(*data, args.out, _budget(args), _session(args))
    print(json.dumps(summary, indent=2))
    print(f"wrote the run to {args.out}")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from longshort.apps.forecast import train_forecaster

    shape = (args.window, args.horizon, args.test_steps, args.season)
    summary = train_forecaster(
        args.dataset,
        args.csv,
        args.column,
        args.out,
        *shape,
        base="seasonal" if args.residual else args.base,
        budget=_budget(args),
        session=_session(args),
    )
    print(json.dumps(summary, indent=2))
    print(f"wrote the run to {args.out}")
    return 0


def _check_device(args: argparse.Namespace) -> None:
    if getattr(args, "device", "cpu") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                f"--device cuda: no CUDA device is available to this torch ({torch.__version__})"
            )


def _resume_hint(args: argparse.Namespace, argv: list[str]) -> str:
    """The command that continues an interrupted run, when the command can resume."""
    if not hasattr(args, "resume"):
        return ""
    words = ["longshort", *argv]
    if "--resume" not in words:
        words.append("--resume")
    return "; continue with: " + " ".join(words)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad option already reported in one line
        return int(e.code or 0)
    if args.version:
        from longshort import __version__

        print(f"longshort {__version__}")
        return 0
    commands = {
        "demo": cmd_demo,
        "train": cmd_train,
        "compare": cmd_compare,
        "inspect": cmd_inspect,
        "lm": cmd_lm,
        "classify": cmd_classify,
        "forecast": cmd_forecast,
    }
    if args.command not in commands:
        build_parser().print_help()
        return 0
    if getattr(args, "deterministic", False):
        import torch

        torch.use_deterministic_algorithms(True)
    try:
        _check_device(args)
        return commands[args.command](args)
    except KeyboardInterrupt as e:
        print(
            f"\nlongshort {args.command}: interrupted ({e or 'Ctrl-C'}){_resume_hint(args, argv)}",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as e:  # bad input files, values or folders: one line
        message = e
        if isinstance(e, OSError) and e.strerror:
            message = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
        print(f"longshort {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
