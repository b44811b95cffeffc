"""The ``longshort`` command line: train, compare, demo, inspect."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from longshort.tasks import TASKS


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
    out: str,
    resume: bool = True,
) -> None:
    """The options of the shared training loop, with each command's defaults."""
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden size (default {hidden})")
    p.add_argument("--steps", type=int, default=steps, help="maximum training steps")
    p.add_argument("--batch-size", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    p.add_argument("--max-minutes", type=float, default=None, help="time budget per run")
    p.add_argument("--out", type=Path, default=Path(out))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms only (bit-identical CPU runs for a seed)",
    )
    p.add_argument("--no-progress", action="store_true")
    if resume:
        p.add_argument(
            "--resume", action="store_true", help="continue from the run folder's saved state"
        )


def _seconds(args: argparse.Namespace) -> float | None:
    return None if args.max_minutes is None else args.max_minutes * 60


def _loop_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The shared training-loop options as keyword arguments of the train_* functions."""
    return {
        "hidden": args.hidden,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "eval_every": args.eval_every,
        "max_seconds": _seconds(args),
        "progress": not args.no_progress,
        "resume": args.resume,
        "device": args.device,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longshort", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="RNN against LSTM on long-range tasks, as an HTML page")
    demo.add_argument("--out", type=Path, default=Path("longshort-demo"))
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--scale", type=float, default=1.0, help="multiply the training budget (steps and seconds)"
    )
    demo.add_argument("--no-progress", action="store_true")
    train = sub.add_parser("train", help="train one model on a task")
    train.add_argument("--task", required=True, choices=sorted(TASKS))
    _loop_args(train, hidden=32, steps=2000, batch=64, lr=1e-2, out="runs")
    train.add_argument("--cell", choices=["lstm", "rnn"], default="lstm")
    train.add_argument("--seq-len", type=int, required=True)
    compare = sub.add_parser("compare", help="RNN against LSTM at several lengths")
    compare.add_argument("--task", required=True, choices=sorted(TASKS))
    _loop_args(compare, hidden=32, steps=2000, batch=64, lr=1e-2, out="runs", resume=False)
    compare.add_argument("--seq-len", type=_lengths, required=True, help="e.g. 50,100,200")
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
    _loop_args(lm_train, hidden=256, steps=2000, batch=32, lr=2e-3, out="runs/lm")
    lm_train.add_argument("--layers", type=int, default=1)
    lm_train.add_argument("--seq-len", type=int, default=100, help="truncated BPTT chunk")
    lm_sample = lm_sub.add_parser("sample", help="generate text from a checkpoint")
    lm_sample.add_argument("checkpoint", type=Path)
    lm_sample.add_argument("--prime", default="def ")
    lm_sample.add_argument("--temperature", type=float, default=0.8)
    lm_sample.add_argument("--length", type=int, default=300)
    lm_sample.add_argument("--seed", type=int, default=0)
    classify = sub.add_parser("classify", help="sequence classification")
    classify_sub = classify.add_subparsers(dest="classify_command", required=True)
    ct = classify_sub.add_parser("train", help="train an LSTM classifier")
    ct.add_argument(
        "--dataset",
        choices=["JapaneseVowels", "GunPoint", "BasicMotions", "ArrowHead"],
        default=None,
    )
    ct.add_argument("--train", type=Path, default=None, help=".ts, .npz or .csv file")
    ct.add_argument("--test", type=Path, default=None, help=".ts, .npz or .csv file")
    _loop_args(ct, hidden=64, steps=1500, batch=32, lr=3e-3, out="runs/classify")
    forecast = sub.add_parser("forecast", help="multi-step forecasting")
    forecast_sub = forecast.add_subparsers(dest="forecast_command", required=True)
    ft = forecast_sub.add_parser("train", help="train an LSTM forecaster")
    ft.add_argument("--dataset", choices=["taylor"], default=None)
    ft.add_argument("--csv", type=Path, default=None)
    ft.add_argument("--column", default=None)
    ft.add_argument("--window", type=int, default=336, help="past steps seen (336 = a week)")
    ft.add_argument("--horizon", type=int, default=48, help="steps forecast (48 = a day)")
    ft.add_argument("--test-steps", type=int, default=672, help="held-out tail")
    ft.add_argument("--season", type=int, default=336, help="period of the seasonal naive")
    ft.add_argument(
        "--residual",
        action="store_true",
        help="learn the correction to the seasonal-naive forecast",
    )
    _loop_args(ft, hidden=64, steps=1500, batch=32, lr=3e-3, out="runs/forecast")
    inspect = sub.add_parser("inspect", help="figures and a JSON summary of a checkpoint")
    inspect.add_argument("checkpoint", type=Path)
    inspect.add_argument("--text", default=None, help="a sentence (sentiment checkpoints)")
    inspect.add_argument("--out", type=Path, default=None)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from longshort.report.experiment import train_one
    from longshort.train import distributed

    out = args.out / f"{args.task}-{args.cell}-T{args.seq_len}"
    run = train_one(
        args.task,
        args.seq_len,
        args.cell,
        args.hidden,
        args.steps,
        _seconds(args),
        args.seed,
        args.lr,
        args.batch_size,
        out,
        not args.no_progress,
        args.resume,
        args.device,
        args.eval_every,
    )
    h = run.history
    if not distributed.setup(args.device).main:
        return 0
    print(
        f"{args.cell.upper()} {args.task} T={args.seq_len}: held-out {run.task.metric_name} "
        f"{h.final_metric:.4f} (baseline {run.task.baseline:.4f}), "
        f"{'solved' if h.solved else 'not solved'} after {h.steps[-1]} steps, "
        f"{h.seconds:.1f} s; checkpoint in {out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from longshort.report import figures
    from longshort.report.demo import format_table, table_rows
    from longshort.report.experiment import flow_by_distance, train_one

    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for length in args.seq_len:
        pair = [
            train_one(
                args.task,
                length,
                cell,
                args.hidden,
                args.steps,
                _seconds(args),
                args.seed,
                args.lr,
                args.batch_size,
                args.out / f"{args.task}-{cell}-T{length}",
                not args.no_progress,
                eval_every=args.eval_every,
            )
            for cell in ("rnn", "lstm")
        ]
        runs += pair
        task = pair[0].task
        figures.learning_curves(
            {r.cell.upper(): (r.history.steps, r.history.eval_metric) for r in pair},
            task.metric_name,
            task.baseline,
            f"{args.task}, T = {length}",
            args.out / f"curves-{args.task}-T{length}.png",
        )
        figures.gradient_vs_distance(
            {r.cell.upper(): flow_by_distance(r, args.seed) for r in pair},
            f"Gradient norm against distance, {args.task}, T = {length}",
            args.out / f"gradient-{args.task}-T{length}.png",
        )
    task = runs[0].task
    figures.metric_vs_length(
        {
            c.upper(): (
                [r.task.seq_len for r in runs if r.cell == c],
                [r.history.final_metric for r in runs if r.cell == c],
            )
            for c in ("rnn", "lstm")
        },
        task.metric_name,
        task.baseline,
        f"{args.task}: final metric against length",
        args.out / f"metric-vs-length-{args.task}.png",
    )
    rows = table_rows(runs)
    (args.out / f"compare-{args.task}.json").write_text(json.dumps(rows, indent=2))
    print(format_table(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from longshort.report.demo import DemoConfig, format_table, run_demo

    summary = run_demo(
        DemoConfig(out=args.out, seed=args.seed, scale=args.scale, progress=not args.no_progress)
    )
    print(format_table(summary["rows"]))
    print(f"\nwrote {args.out / 'index.html'} ({summary['seconds']} s)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import torch

    from longshort.inspect import carousel, half_life, trace
    from longshort.report import figures
    from longshort.tasks import make_task
    from longshort.train.checkpoint import load

    model, config = load(args.checkpoint)
    out = args.out or args.checkpoint / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    task_info = config.get("task", {})
    task = make_task(task_info.get("task", "adding"), int(task_info.get("seq_len", 50)))
    tokens = None
    if args.text is not None:
        from longshort.tasks.sentiment import INDEX

        if task.name != "sentiment":
            raise SystemExit("longshort inspect: --text needs a sentiment checkpoint")
        tokens = args.text.lower().replace(",", " , ").split()
        unknown = [w for w in tokens if w not in INDEX]
        if unknown:
            raise SystemExit(f"longshort inspect: words not in the vocabulary: {unknown}")
        x = torch.tensor([[INDEX[w] for w in tokens]])
    else:
        x = task.batch(1, torch.Generator().manual_seed(0)).x
    with torch.no_grad():
        tr = trace(model.rnn, model.features(x))[0]
        pred = model(x)
    summary: dict[str, object] = {
        "checkpoint": str(args.checkpoint),
        "task": task.name,
        "cell": model.config["cell"],
        "steps": int(tr.h.shape[0]),
    }
    if tr.f is not None:
        f = tr.f[:, 0]
        figures.gate_heatmap(f, tokens, "Forget gate f_t", path=out / "forget-gates.png")
        figures.gate_heatmap(tr.i[:, 0], tokens, "Input gate i_t", path=out / "input-gates.png")
        figures.carousel_products(
            carousel(f, k=0), "Carousel products from step 0", path=out / "carousel.png"
        )
        figures.cell_trajectories(
            tr.c[:, 0], tokens, "Cell states C_t", path=out / "cell-states.png"
        )
        summary["half_life_steps"] = [round(v, 2) for v in half_life(f).tolist()]
        summary["mean_forget_gate"] = round(float(f.mean()), 4)
    summary["prediction"] = pred[0].tolist()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2)[:2000])
    print(f"wrote figures and summary.json to {out}")
    return 0


def cmd_lm(args: argparse.Namespace) -> int:
    from longshort.report.lm import sample, train_lm

    if args.lm_command == "sample":
        print(sample(args.checkpoint, args.prime, args.length, args.temperature, args.seed))
        return 0
    summary = train_lm(
        args.files,
        args.out,
        args.corpus,
        layers=args.layers,
        seq_len=args.seq_len,
        **_loop_kwargs(args),
    )
    print(json.dumps(summary, indent=2))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from longshort.report.classify import train_classifier

    summary = train_classifier(args.dataset, args.train, args.test, args.out, **_loop_kwargs(args))
    print(json.dumps(summary, indent=2))
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from longshort.report.forecast import train_forecaster

    summary = train_forecaster(
        args.dataset,
        args.csv,
        args.column,
        args.out,
        args.window,
        args.horizon,
        args.test_steps,
        args.season,
        residual=args.residual,
        **_loop_kwargs(args),
    )
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        return commands[args.command](args)
    except KeyboardInterrupt as e:
        print(f"\nlongshort {args.command}: interrupted ({e or 'Ctrl-C'})", file=sys.stderr)
        return 130
    except ValueError as e:  # bad input files or values: the message says which and why
        print(f"longshort {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
