"""Regenerate the tutorial's figures from longshort's own traces: nothing in them is drawn by
hand. Runs the demo (about a minute on 2 cores) and copies its pictures of the trained LSTM
into docs/figures/.

    python docs/tutorial_figures.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from longshort.apps.demo import DemoConfig, run_demo
from longshort.apps.runs import QUIET

FIGURES = ("gradient-vs-distance.png", "forget-gates.png", "carousel.png", "cell-states.png")


def main() -> None:
    target = Path(__file__).resolve().parent / "figures"
    target.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        run_demo(DemoConfig(out=Path(folder), session=QUIET))
        for name in FIGURES:
            shutil.copy(Path(folder) / name, target / name)
            print("wrote", target / name)


if __name__ == "__main__":
    main()
