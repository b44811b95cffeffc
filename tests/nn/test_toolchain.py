"""longshort inside the PyTorch toolchain: torch.compile, ONNX, optimizers, clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import longshort


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = longshort.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, x, lengths):
        out, _ = self.rnn(x, lengths=lengths)
        return self.head(out).sum(1)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph_same_results(backend):
    torch.manual_seed(0)
    net = Net()
    x, lengths = torch.randn(4, 10, 3), torch.tensor([10, 3, 7, 1])
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True, backend=backend)  # fails on any graph break
    y = compiled(x, lengths)
    y.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    y_eager = net(x, lengths)
    y_eager.sum().backward()
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-6)
    for a, p in zip(grads, net.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-6)


def test_no_graph_break_unlike_torch():
    torch.manual_seed(0)
    x = torch.randn(4, 10, 3)
    torch._dynamo.reset()
    ours = torch._dynamo.explain(longshort.LSTM(3, 8, batch_first=True))(x)
    assert ours.graph_count == 1 and ours.graph_break_count == 0


def test_onnx_export_of_to_torch_runs_like_ours():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    ours = longshort.LSTM(3, 6, num_layers=2, bidirectional=True).eval()
    x = torch.randn(5, 2, 3)
    program = torch.onnx.export(ours.to_torch(), (x,), dynamo=True, verbose=False)
    model = program.model_proto
    onnx.checker.check_model(model)
    feeds = {model.graph.input[0].name: x.numpy()}
    got = ReferenceEvaluator(model).run(None, feeds)[0]
    want = ours(x)[0].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_trains_with_optimizer_and_clipping():
    torch.manual_seed(0)
    model = longshort.LSTM(2, 16, batch_first=True, forget_bias=1.0)
    head = nn.Linear(16, 1)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    x = torch.randn(64, 12, 2)
    y = x[:, 0, :1] * x[:, -1, 1:]  # needs the first and last step
    losses = []
    for _ in range(150):
        out, _ = model(x)
        loss = nn.functional.mse_loss(head(out[:, -1]), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        assert torch.isfinite(norm)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("segment", [None, 3])
def test_torch_compile_fullgraph_traces_the_variants(segment):
    """The variants are custom operators too: no graph break, same outputs and gradients."""
    torch.manual_seed(0)
    kw = {"peephole": True, "layer_norm": True, "coupled_gates": True, "zoneout": 0.2}
    rnn = longshort.LSTM(3, 8, batch_first=True, recompute_segment=segment, **kw).eval()
    x = torch.randn(4, 10, 3, requires_grad=True)
    lengths = torch.tensor([10, 3, 7, 1])
    torch._dynamo.reset()
    compiled = torch.compile(rnn, fullgraph=True, backend="aot_eager")
    rnn.train(bool(segment))  # recomputation runs in training; zoneout masks drawn there
    torch.manual_seed(1)
    y = compiled(x, lengths=lengths)[0]
    (gx,) = torch.autograd.grad((y * y).sum(), [x])
    grads = [p.grad for p in rnn.parameters()]
    torch.manual_seed(1)
    y_eager = rnn(x, lengths=lengths)[0]
    (gx_eager,) = torch.autograd.grad((y_eager * y_eager).sum(), [x])
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx_eager, rtol=1e-4, atol=1e-6)
    assert grads is not None
