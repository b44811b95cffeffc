"""Progress of a training run: tqdm's bar on a terminal, a plain line now and then elsewhere.

Off a terminal (a log file, CI, ``nohup``), tqdm's bar would write a carriage-return redraw
several times a second, hundreds of kilobytes for one run. There :class:`LineProgress` prints
one line at every tenth of the run, and at least once a minute when steps are slow.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol

from tqdm.auto import tqdm


class Progress(Protocol):
    def update(self, step: int, loss: float, steps_per_s: float) -> None: ...

    def close(self) -> None: ...


class BarProgress:
    """tqdm's bar (a terminal): redrawn in place."""

    def __init__(self, total: int, initial: int, desc: str, file: IO[str]) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, leave=False, file=file)

    def update(self, step: int, loss: float, steps_per_s: float) -> None:
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", steps_per_s=f"{steps_per_s:.1f}")

    def close(self) -> None:
        self.bar.close()


class LineProgress:
    """One line a tenth of the run (and at least one a minute): ``desc: step 200/2000 (10%),
    loss 0.1234, 45.1 steps/s``."""

    def __init__(
        self, total: int, initial: int, desc: str, file: IO[str], every_s: float = 60.0
    ) -> None:
        self.total, self.desc, self.file, self.every_s = total, desc, file, every_s
        self.stride = max(1, total // 10)
        self.last_step, self.last_time = initial, time.monotonic()

    def update(self, step: int, loss: float, steps_per_s: float) -> None:
        now = time.monotonic()
        if step % self.stride and step != self.total and now - self.last_time < self.every_s:
            return
        self.last_step, self.last_time = step, now
        print(
            f"{self.desc}: step {step}/{self.total} ({100 * step // self.total}%), "
            f"loss {loss:.4f}, {steps_per_s:.1f} steps/s",
            file=self.file,
            flush=True,
        )

    def close(self) -> None:
        pass


class NoProgress:
    def update(self, step: int, loss: float, steps_per_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def progress(total: int, initial: int, desc: str, show: bool, file: IO[str] | None = None):
    """The progress display of a run of `total` steps starting after `initial`: nothing when
    not `show`, tqdm's bar when `file` (default stderr) is a terminal, else plain lines."""
    file = file or sys.stderr
    if not show:
        return NoProgress()
    if file.isatty() or type(file).__module__.startswith("ipykernel"):  # a notebook: tqdm's widget
        return BarProgress(total, initial, desc, file)
    return LineProgress(total, initial, desc, file)
