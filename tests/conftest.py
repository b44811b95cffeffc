"""Shared fixtures, and the worst errors against torch.nn printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.helpers import WORST


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if WORST:
        terminalreporter.section("worst errors against torch.nn")
        for kind, value in sorted(WORST.items()):
            terminalreporter.write_line(f"{kind:40s} {value:.3e}")


@pytest.fixture(params=["reference", "compiled"])
def cpu_engine(request):
    """Run the test on each CPU engine."""
    from longshort.engine import use_cpu_engine

    with use_cpu_engine(request.param):
        yield request.param
