"""The demo's HTML page: one self-contained file beside its figures."""

from __future__ import annotations

import html


def render(
    rows: list[dict[str, object]],
    pictures: list[tuple[str, str]],
    summary: dict[str, object],
    safety_seconds: float,
) -> str:
    """The page: the question, the table of runs, the verdict and the figures with captions
    (pictures: (file name, caption)); safety_seconds: the time cap a run had."""
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v if k != 'solved' else ('yes' if v else 'no')))}</td>"
            for k, v in r.items()
        )
        + "</tr>"
        for r in rows
    )
    header = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    figs = "".join(
        f'<figure><img src="{html.escape(n)}" alt="{html.escape(t)}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for n, t in pictures
    )
    fired = summary.get("time_cap_fired") or []
    cap_note = (
        f"<p><b>The time cap ({safety_seconds:.0f} s a run) stopped: "
        f"{html.escape(', '.join(fired))}</b>; those runs ended before their step budget, "
        "so their numbers are not what this seed gives elsewhere.</p>"
        if fired
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>longshort demo: RNN against LSTM</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
img{{max-width:100%}}figure{{margin:1.5em 0}}</style></head><body>
<h1>Can a network remember across a long gap?</h1>
<p>The question of Hochreiter and Schmidhuber (1997): a vanilla RNN forgets the start of a
long sentence because its gradient is a product of σ'(a)·W factors that shrinks with every
step; the LSTM keeps a cell state C<sub>t</sub> whose gradient along the conveyor belt is the
product of its forget gates, ∂C<sub>t</sub>/∂C<sub>k</sub> = ∏ f<sub>j</sub> (Gers et al.
2000), which the network can hold near 1.</p>
<p>Two tasks, one RNN and one LSTM each, the same hidden size, budget and seed:
<b>sentiment</b> (“the … movie was [not] &lt;filler words&gt; entertaining”: the negation sits
far before the verdict) and the <b>adding problem</b> (sum the two marked numbers of a long
sequence). A run stops when solved or when its budget ends.</p>
<table><tr>{header}</tr>{cells}</table>
<p>{html.escape(str(summary["verdict"]))}</p>
{cap_note}
<p>Budgets are counted in steps: the same seed gives the same numbers on any machine.
Total time {summary["seconds"]} s, seed {summary["seed"]}, torch {summary["torch"]}.</p>
{figs}
</body></html>
"""
