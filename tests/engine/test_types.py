"""The engines implement engine/types.py's protocols, and the engine's code type-checks."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from longshort.engine import reference, types
from longshort.engine.cpu import compiled

ROOT = Path(__file__).resolve().parents[2]
IMPLEMENTS = [
    (reference, types.Engine),
    (compiled, types.Engine),
    (compiled, types.StepEngine),
    (compiled, types.CompiledEngine),
]


def _members(protocol: type) -> dict[str, object]:
    names = set()
    for cls in protocol.__mro__:
        if cls in (object, types.Protocol) or cls.__name__ in ("Protocol", "Generic"):
            continue
        names |= {n for n in vars(cls) if not n.startswith("_")}
        names |= set(getattr(cls, "__annotations__", {}))
    return {n: getattr(protocol, n, None) for n in sorted(names)}


@pytest.mark.parametrize(
    ("engine", "protocol"), IMPLEMENTS, ids=lambda x: getattr(x, "__name__", str(x))
)
def test_each_engine_has_every_member_of_its_protocol_with_the_same_parameters(engine, protocol):
    for name, member in _members(protocol).items():
        assert hasattr(engine, name), f"{engine.__name__} lacks {protocol.__name__}.{name}"
        if not callable(member):
            continue
        want = list(inspect.signature(member).parameters)[1:]  # without self
        got = list(inspect.signature(getattr(engine, name)).parameters)
        assert got == want, f"{engine.__name__}.{name}{got} is not {protocol.__name__}'s {want}"


def test_the_engine_type_checks():
    """mypy over src/longshort/engine (pyproject.toml's [tool.mypy]); the protocols are checked
    where dispatch returns the engines as them."""
    mypy = shutil.which("mypy") or shutil.which("mypy", path=str(Path(sys.executable).parent))
    if mypy is None:
        pytest.skip("mypy is not installed (it comes with the [dev] extra)")
    result = subprocess.run(
        [mypy, "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
