"""The explorer page: one self-contained HTML file (no server, no network) from the data of
:func:`longshort.inspect.explorer.explore_data`. The script below reads that data, colours the
tokens with the chosen unit, draws the charts as inline SVG, and runs LSTMVis's selection:
explorer.js beside this file, embedded in the page with explorer.css."""

from __future__ import annotations

import html
import json
from importlib.resources import files


def _asset(name: str) -> str:
    """explorer.css or explorer.js, shipped beside this module."""
    return files("longshort.report").joinpath(name).read_text(encoding="utf-8")


def render(data: dict[str, object]) -> str:
    """The page, with `data` embedded as JSON."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(str(data.get("title") or "What each unit learned"))
    note = html.escape(str(data.get("note") or ""))
    style = _asset("explorer.css")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{style}</style></head>
<body><div id="side"><h1>{title}</h1><p class="note">{note}</p>
<div>layer <select id="layer"></select> quantity <select id="q"></select></div>
<h2>Units <span class="note">(click one; its values colour the text: red positive, blue
negative, green a gate's opening)</span></h2><div id="units" class="units"></div>
<h2>Units that track the text</h2><div id="ranking"></div>
<h2>The carousel</h2><div id="carousel"></div>
<h2>Gradient flow</h2><div id="gradient"></div>
<h2>Per class</h2><div id="classes"><div class="note">one class or none</div></div>
<h2>Gate saturation (Karpathy et al. 2015)</h2><div id="saturation"></div>
</div><div id="main"><div id="bar"><b id="status"></b> · select a span of the text to find
the units on across it and off around it (LSTMVis) · threshold
<input id="tau" type="range" min="-1" max="1" step="0.05" value="0.5"> <span id="tauv">0.5</span>
<div id="vis"></div></div><div id="text"></div></div>
<script id="data" type="application/json">{payload}</script>
<script>{_asset("explorer.js")}</script></body></html>
"""
