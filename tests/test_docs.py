"""The documentation: every docstring example runs as a doctest, and the site builds with
warnings as errors and documents every public name (skipped, saying why, without the [docs]
extra's MkDocs)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import longshort
import longshort.engine
import longshort.inspect

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = (longshort, longshort.inspect, longshort.engine)


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(longshort.__path__, "longshort."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and ">>>" in Path(spec.origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return sorted(names)


EXAMPLES = _modules_with_examples()


def test_there_are_examples():
    assert len(EXAMPLES) >= 4, EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_site_builds_strict_and_documents_every_public_name(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None or importlib.util.find_spec("mkdocstrings_handlers") is None:
        pytest.skip("MkDocs with mkdocstrings is not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(site)], cwd=ROOT, capture_output=True, text=True,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ids = set(re.findall(r'id="([^"]+)"', (site / "api" / "index.html").read_text()))
    for module in PUBLIC:
        for name in module.__all__:
            home = getattr(getattr(module, name), "__module__", module.__name__)
            assert f"{module.__name__}.{name}" in ids or f"{home}.{name}" in ids, name
    for page in ("tutorial", "how-to/inspection", "benchmarks", "changelog"):
        assert (site / page / "index.html").is_file(), page
