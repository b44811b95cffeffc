"""Tables of runs: one row per run, one per cell and length over seeds, as markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from longshort.apps.experiment import Run


def table_rows(runs: list[Run]) -> list[dict[str, object]]:
    return [
        {
            "task": r.task.name,
            "T": r.task.seq_len,
            "model": r.cell.upper(),
            "metric": r.task.metric_name,
            "final": round(r.history.final_metric, 4),
            "baseline": round(r.task.baseline, 4),
            "solved": r.history.solved,
            "steps": r.history.steps[-1],
            "seconds": round(r.history.seconds, 1),
            "stopped": r.history.stopped,
        }
        for r in runs
    ]


def format_table(rows: list[dict[str, object]]) -> str:
    head = "| task | T / gap | model | metric | held-out | baseline | solved | steps | seconds |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['T']} | {r['model']} | {r['metric']} | {r['final']} "
            f"| {r['baseline']} | {'yes' if r['solved'] else 'no'} | {r['steps']} "
            f"| {r['seconds']} |"
        )
    return "\n".join(lines)


def seed_rows(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """One row per task, length and model from per-run rows: the mean, lowest and highest
    held-out metric, how many seeds solved it, and the mean steps of those that did."""
    groups: dict[tuple, list[dict[str, object]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["T"], r["model"]), []).append(r)
    out = []
    for (task, length, model), rs in groups.items():
        finals = [float(r["final"]) for r in rs]
        solved = [r for r in rs if r["solved"]]
        out.append(
            {
                "task": task,
                "T": length,
                "model": model,
                "metric": rs[0]["metric"],
                "baseline": rs[0]["baseline"],
                "seeds": len(rs),
                "mean": round(sum(finals) / len(finals), 4),
                "min": round(min(finals), 4),
                "max": round(max(finals), 4),
                "solved": f"{len(solved)}/{len(rs)}",
                "steps_to_solve": round(sum(r["steps"] for r in solved) / len(solved))
                if solved
                else None,
            }
        )
    return out


def format_seed_table(rows: list[dict[str, object]]) -> str:
    head = "| task | T / gap | model | metric | mean | range | baseline | solved | steps to solve |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['T']} | {r['model']} | {r['metric']} | {r['mean']} "
            f"| {r['min']}-{r['max']} | {r['baseline']} | {r['solved']} "
            f"| {r['steps_to_solve'] if r['steps_to_solve'] is not None else '-'} |"
        )
    return "\n".join(lines)
