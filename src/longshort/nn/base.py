"""What LSTM and RNN share: torch.nn's constructor, parameters and the forward's plumbing.

Parameters are created in torch.nn.RNNBase's order with its names and its initialisation
(uniform in ±1/sqrt(hidden_size)), so ``state_dict`` files move both ways and the same seed gives
the same weights. The forward validates, lays the input out time-major and runs the engine layer
by layer and direction by direction; the per-step loop lives in the engine.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import torch
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from longshort.engine import dispatch
from longshort.nn import checks, onnx, sequence


class LayerTrace(NamedTuple):
    """What the engine computed in one layer and direction, time-major, in input order.

    gates: (T, B, G), for the LSTM [i, f, g, o] with G = 4H, for the GRU
    [r, z, n, W_hn h_{t-1} + b_hn] (G = 4H), for the RNN h_t (G = H);
    cells: (T, B, H) the cell states C_1 .. C_T (LSTM), None for the others;
    states: (T, B, H) the hidden states h_1 .. h_T (GRU), None for the others.
    extras: for the LSTM's variants, "c_new" C'_t before zoneout, "h_new" o_t ⊙ tanh(·)
    before projection and zoneout, "c_norm" LN(C'_t) with layer norm.
    Steps past a sequence's length hold what the engine computed there (masked by callers).
    """

    gates: Tensor
    cells: Tensor | None
    states: Tensor | None = None
    extras: dict[str, Tensor] | None = None  # a variant's own quantities, (T, B, H) each
    variant: tuple | None = None  # (weights, LSTMVariant) until the trace is finished


class Prepared(NamedTuple):
    x: Tensor  # (T, B, I), time-major
    lengths: Tensor | None  # (B,) int64 on x's device
    packed: PackedSequence | None
    unbatched: bool


class RecurrentBase(nn.RNNBase):
    """Base of :class:`longshort.LSTM` and :class:`longshort.RNN` (not used directly).

    A subclass of ``torch.nn.RNNBase``: torch.nn's constructor creates the parameters,
    ``_flat_weights``, ``all_weights``, ``flatten_parameters``, ``check_forward_args`` and the
    rest of the public surface, so code and libraries written against torch.nn find them;
    ``forward`` is longshort's. Not a subclass of ``torch.nn.LSTM``/``nn.RNN`` themselves:
    ``torch.compile`` refuses to trace instances of those (``torch._dynamo.config.allow_rnn``).
    """

    gate_multiplier: int
    state_count: int  # 2 for (h, c), 1 for h
    torch_class: type[nn.RNNBase]  # the torch.nn module this one replaces
    allows_projection = False  # proj_size (the LSTM's, as in torch.nn)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        recompute_segment: int | None = None,
        check_finite: bool = False,
    ) -> None:
        checks.check_layer_args(
            type(self).__name__,
            self.allows_projection,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            recompute_segment,
        )
        self.check_finite = check_finite
        self.recompute_segment = recompute_segment
        with warnings.catch_warnings():  # torch.nn's own dropout warning repeats ours
            warnings.simplefilter("ignore", UserWarning)
            nn.RNNBase.__init__(
                self,
                self._mode(),
                input_size,
                hidden_size,
                num_layers,
                bias,
                batch_first,
                float(dropout),
                bidirectional,
                proj_size,
                device,
                dtype,
            )

    def _mode(self) -> str:
        """torch.nn.RNNBase's mode string: "LSTM", "RNN_TANH" or "RNN_RELU"."""
        raise NotImplementedError

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Size of h: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @staticmethod
    def _param_name(kind: str, layer: int, direction: int) -> str:
        return f"{kind}_l{layer}{'_reverse' if direction else ''}"

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter uniform in ±1/sqrt(hidden_size)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def layer_weights(self, layer: int, direction: int) -> tuple[Tensor | None, ...]:
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction; absent ones are None.
        Read from the parameter dict (a module attribute costs 1-2 us, an absent one more,
        five a layer and call), else as attributes: a parametrization (weight norm) makes
        them properties of the module's class."""
        params, attrs, cls = self._parameters, self.__dict__, type(self)
        found = []
        for name in _weight_names(layer, direction):
            t = params.get(name)
            if t is None and (name in attrs or hasattr(cls, name)):  # a plain tensor, a property
                t = getattr(self, name)
            found.append(t)
        return tuple(found)

    # forward plumbing -------------------------------------------------------------------

    def _prepare(self, input: object, lengths: object) -> Prepared:
        name = type(self).__name__
        weight = self.layer_weights(0, 0)[0]  # the dtype and device every input must share
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError(f"{name}: pass lengths or a PackedSequence, not both")
            checks.check_like(
                name, "input (PackedSequence data)", input.data, weight.dtype, weight.device
            )
            checks.check_shape(
                name,
                "input.data",
                input.data,
                (input.data.shape[0], self.input_size),
                "(total_steps, input_size)",
            )
            if self.check_finite:
                checks.check_finite(name, "input", input.data)
            x, lens = sequence.unpack(input)
            return Prepared(x, lens, input, False)
        x = checks.check_tensor(name, "input", input)
        if x.dim() not in (2, 3):
            layout = "batch, seq_len" if self.batch_first else "seq_len, batch"
            noun = " tensor" if self.mode.startswith("RNN") else ""  # torch.nn.RNN's wording
            raise checks.InputError(
                f"{name}: Expected input to be 2D or 3D, got {x.dim()}D{noun} instead: input "
                f"must be 3-D ({layout}, input_size), or 2-D (seq_len, input_size) for one "
                f"unbatched sequence; got shape {checks.shape_str(x)}"
            )
        if x.shape[-1] != self.input_size:
            raise checks.InputError(
                f"{name}: input.size(-1) must be equal to input_size. Expected "
                f"{self.input_size}, got {x.shape[-1]} (input of shape {checks.shape_str(x)})"
            )
        checks.check_like(name, "input", x, weight.dtype, weight.device)
        unbatched = x.dim() == 2
        if unbatched:
            if lengths is not None:
                raise checks.InputError(f"{name}: lengths needs batched 3-D input; got 2-D input")
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if steps == 0:
            raise checks.InputError(
                f"{name}: input is an empty sequence (seq_len 0), shape "
                f"{checks.shape_str(input)}; each sequence needs at least one step"
            )
        if self.check_finite:  # torch.nn lets NaN through; a scan is asked for, not imposed
            checks.check_finite(name, "input", x)
        if lengths is not None:
            lengths = checks.check_lengths(name, lengths, batch, steps, x.device)
        return Prepared(x, lengths, None, unbatched)

    def _prepare_states(self, hx: object, prep: Prepared) -> tuple[Tensor, ...]:
        """Initial states as (L*D, B, size) tensors, zeros where hx is None. Each message
        contains torch.nn's sentence for the same mistake."""
        name = type(self).__name__
        batch, x = prep.x.shape[1], prep.x
        count = self.num_layers * self.num_directions
        sizes = (self.output_size, self.hidden_size)[: self.state_count]
        if hx is None:
            return tuple(x.new_zeros(count, batch, s) for s in sizes)
        if self.state_count == 2:
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            states = tuple(
                checks.check_tensor(name, n, s) for n, s in zip(("h_0", "c_0"), hx, strict=True)
            )
        else:
            states = (checks.check_tensor(name, "h_0", hx),)
        self._check_state_dims(states, prep.unbatched)
        weight = self.layer_weights(0, 0)[0]
        out = []
        for k, (size, state) in enumerate(zip(sizes, states, strict=True)):
            state = state.unsqueeze(1) if prep.unbatched else state
            label = ("h_0", "c_0")[k]
            if tuple(state.shape) != (count, batch, size):
                torch_label = f"hidden[{k}]" if self.state_count == 2 else "hidden"
                raise checks.InputError(
                    f"{name}: Expected {torch_label} size {(count, batch, size)}, got "
                    f"{list(state.shape)}: {label} must have shape (num_layers * "
                    f"num_directions, batch, {('output', 'hidden')[k]} size)"
                    + (", without the batch for unbatched input" if prep.unbatched else "")
                )
            checks.check_like(name, label, state, weight.dtype, weight.device)
            if self.check_finite:
                checks.check_finite(name, label, state)
            out.append(state)
        return tuple(out)

    def _check_state_dims(self, states: tuple[Tensor, ...], unbatched: bool) -> None:
        """3-D states for batched input, 2-D for unbatched, in torch.nn's words."""
        want = 2 if unbatched else 3
        if all(s.dim() == want for s in states):
            return
        kind = "unbatched 2-D" if unbatched else "batched 3-D"
        if len(states) == 2:
            dims = f"({states[0].dim()}-D, {states[1].dim()}-D) tensors"
            sentence = f"For {kind} input, hx and cx should also be {want}-D but got {dims}"
        else:
            sentence = (
                f"For {kind} input, hx should also be {want}-D but got {states[0].dim()}-D tensor"
            )
        shapes = ", ".join(checks.shape_str(s) for s in states)
        raise checks.InputError(f"{type(self).__name__}: {sentence} (shapes {shapes})")

    def _run_layer(
        self,
        x: Tensor,
        states: tuple[Tensor, ...],
        layer: int,
        direction: int,
        lengths: Tensor | None,
        segment: int = 0,
        trace: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, ...], LayerTrace]:
        raise NotImplementedError

    def _runs_variant(self) -> bool:
        """Whether this module runs one of the LSTM's variants (see :class:`longshort.LSTM`)."""
        return False

    def _call(self, prep: Prepared, want_trace: bool) -> dispatch.LayerCall:
        """What this call asks of the layers, for :func:`dispatch.layers_on_native`."""
        return dispatch.LayerCall(
            lengths=prep.lengths is not None,
            variant=self._runs_variant(),
            segment=bool(self.recompute_segment),
            check_finite=self.check_finite,
            trace=want_trace,
        )

    def _run_native(
        self, x: Tensor, states: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...], list[LayerTrace]]:
        """All layers through PyTorch's fused recurrent op (cuDNN on CUDA), time-major."""
        op = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
        hx = states if self.state_count == 2 else states[0]
        res = op[self.mode](
            x, hx, self._flat_weights, self.bias, self.num_layers, float(self.dropout),
            self.training, self.bidirectional, False,
        )  # fmt: skip
        return res[0], tuple(res[1:]), []

    def _stacks(self, prep: Prepared, want_trace: bool) -> bool:
        """Whether this call runs the whole stack in one engine call (:meth:`_run_stack`)
        rather than layer by layer."""
        return False

    def _run_stack(
        self, x: Tensor, states: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...], list[LayerTrace]]:
        """All layers in one engine call, where :meth:`_stacks` says so."""
        raise NotImplementedError

    def _finish_trace(self, trace: LayerTrace) -> LayerTrace:
        """The trace a user sees, from what the engine saved (subclasses may override)."""
        return trace

    def _run(
        self, prep: Prepared, states: tuple[Tensor, ...], want_trace: bool = False
    ) -> tuple[Tensor, tuple[Tensor, ...], list[LayerTrace]]:
        """All layers and directions; returns output (T, B, D*P), final states and, if
        want_trace, a trace per layer and direction."""
        x, lengths = prep.x, prep.lengths
        native = dispatch.native_device(x.device)
        if native and dispatch.layers_on_native(x.device, self._call(prep, want_trace)):
            return self._run_native(x, states)
        if self._stacks(prep, want_trace):
            return self._run_stack(x, states)
        rev = sequence.reverse_index(lengths, x.shape[0]) if self.bidirectional else None
        finals: list[list[Tensor]] = [[] for _ in states]
        traces: list[LayerTrace] = []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                xin = sequence.reverse(x, rev) if direction else x
                segment = self.recompute_segment
                if not segment or want_trace or not torch.is_grad_enabled():
                    segment = 0
                layer_states = tuple(s[k] for s in states)
                out, last, trace = self._run_layer(
                    xin, layer_states, layer, direction, lengths, segment, trace=want_trace
                )
                if self.check_finite:
                    _check_layer_finite(type(self).__name__, out, layer, direction)
                if direction:
                    out = sequence.reverse(out, rev)
                if want_trace:
                    trace = self._finish_trace(trace)
                if direction and want_trace:
                    trace = _reverse_trace(trace, rev)
                outs.append(out)
                if want_trace:
                    traces.append(trace)
                for acc, s in zip(finals, last, strict=True):
                    acc.append(s)
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = nn.functional.dropout(x, self.dropout, training=True)
        return x, tuple(torch.stack(f) for f in finals), traces

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | tuple[Tensor, Tensor] | None = None,
        lengths: Tensor | None = None,
        return_trace: bool = False,
    ):
        """output and the final state (h_n, or (h_n, c_n) for the LSTM), as torch.nn returns
        them; with return_trace=True, a third value: a :class:`LayerTrace` per layer and
        direction. lengths: (B,) integer tensor, in any order, instead of packing."""
        if onnx.exporting():
            return self._export_forward(input, hx, lengths, return_trace)
        output, finals, traces = self._forward(input, hx, lengths, return_trace)
        state = finals if self.state_count == 2 else finals[0]
        return (output, state, traces) if return_trace else (output, state)

    def _export_forward(self, input: object, hx: object, lengths: object, return_trace: bool):
        """The forward that torch.onnx.export records (:mod:`longshort.nn.onnx`): one ONNX
        recurrent node a layer, or torch.nn's own forward (the TorchScript exporter,
        projections, packed input), which exports as the same operators."""
        onnx.check_layer_call(type(self).__name__, lengths, return_trace)
        if onnx.builds_nodes() and not self.proj_size and not isinstance(input, PackedSequence):
            return onnx.layer_stack(self, input, hx)
        return self.torch_class.forward(self, input, hx)

    def _onnx_node(self, x: Tensor, states: list[Tensor], layer: int) -> list[Tensor]:
        """One layer, both directions, as an ONNX node: x (T, B, I), states (D, B, H) each;
        returns Y (T, D, B, H) and the final states (:mod:`longshort.nn.onnx`)."""
        raise NotImplementedError

    @classmethod
    def from_torch(cls, module: nn.RNNBase):
        """A longshort module with the configuration and weights of its torch.nn counterpart."""
        return _convert(module, cls.torch_class, cls)

    def to_torch(self) -> nn.RNNBase:
        """The torch.nn module with this one's configuration and weights (e.g. for ONNX)."""
        return _convert(self, type(self), self.torch_class)

    def _forward(
        self, input: object, hx: object, lengths: object, want_trace: bool = False
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...], list[LayerTrace]]:
        prep = self._prepare(input, lengths)
        states = self._prepare_states(hx, prep)
        out, finals, traces = self._run(prep, states, want_trace)
        if prep.packed is not None:
            return sequence.repack(out, prep.lengths, prep.packed), finals, traces
        if prep.unbatched:
            return out.squeeze(1), tuple(f.squeeze(1) for f in finals), traces
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, finals, traces


@functools.lru_cache(maxsize=256)
def _weight_names(layer: int, direction: int) -> tuple[str, ...]:
    """The names of :meth:`RecurrentBase.layer_weights`' five tensors, made once."""
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    return tuple(RecurrentBase._param_name(kind, layer, direction) for kind in kinds)


def _reverse_trace(trace: LayerTrace, rev: Tensor) -> LayerTrace:
    """A reverse direction's trace in input order."""
    flip = lambda t: None if t is None else sequence.reverse(t, rev)  # noqa: E731
    extras = None if trace.extras is None else {k: flip(t) for k, t in trace.extras.items()}
    return LayerTrace(flip(trace.gates), flip(trace.cells), flip(trace.states), extras)


def _check_layer_finite(owner: str, out: Tensor, layer: int, direction: int) -> None:
    """Name the first step of a layer whose output is NaN or inf (``check_finite=True``)."""
    if torch.compiler.is_compiling():
        return
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        step = int(bad.flatten(1).any(dim=1).nonzero()[0])
        which = "reverse" if direction else "forward"
        raise FloatingPointError(
            f"{owner}: layer {layer} ({which} direction) produced a non-finite value first at "
            f"step {step} (time-major index; check the inputs and weights feeding it)"
        )


def _convert(module: nn.Module, source: type, target: type) -> nn.Module:
    if not isinstance(module, source):
        raise TypeError(
            f"expected a {source.__module__}.{source.__name__}, got {type(module).__name__}"
        )
    weight = module.weight_ih_l0
    kwargs = {
        k: getattr(module, k)
        for k in (
            "input_size",
            "hidden_size",
            "num_layers",
            "bias",
            "batch_first",
            "dropout",
            "bidirectional",
        )
    }
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    elif module.mode.startswith("RNN"):
        kwargs["nonlinearity"] = module.nonlinearity
    new = target(**kwargs, device=weight.device, dtype=weight.dtype)
    new.load_state_dict(module.state_dict())
    new.train(module.training)
    return new
