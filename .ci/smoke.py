"""Smoke test of an installed wheel (run by .ci/wheel-smoke from outside the source tree)."""

from importlib.metadata import version
from pathlib import Path

import torch

import longshort

assert "site-packages" in longshort.__file__, longshort.__file__
assert longshort.__version__ == version("longshort"), (longshort.__version__, version("longshort"))
assert (Path(longshort.__file__).parent / "py.typed").exists(), "py.typed missing from the wheel"
torch.manual_seed(0)
theirs = torch.nn.LSTM(3, 5, num_layers=2).double()
ours = longshort.LSTM(3, 5, num_layers=2).double()
ours.load_state_dict(theirs.state_dict())
x = torch.randn(7, 2, 3, dtype=torch.double, requires_grad=True)
out_a, out_b = ours(x)[0], theirs(x)[0]
torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-12)
ga = torch.autograd.grad(out_a.sum(), [x, *ours.parameters()])
gb = torch.autograd.grad(out_b.sum(), [x, *theirs.parameters()])
for a, b in zip(ga, gb, strict=True):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
print(f"longshort {longshort.__version__} from {longshort.__file__}: forward and backward match")

# the explorer page's script and style ship as package data
import tempfile  # noqa: E402

from longshort.inspect.explorer import explore  # noqa: E402

with tempfile.TemporaryDirectory() as folder:
    page = explore(ours, torch.randn(9, 1, 3, dtype=torch.double), list("abcdefghi"), f"{folder}/p.html")
    assert "window.explorer" in page.read_text() and "#side{" in page.read_text()
print("explorer page written with its script and style")
