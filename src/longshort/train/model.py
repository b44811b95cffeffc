"""A recurrent layer with an input embedding and a readout head: the model tasks train."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from longshort.nn import GRU, LSTM, RNN

LSTM_VARIANTS: dict[str, dict[str, Any]] = {
    "lstm": {},
    "lstm-no-forget": {"forget_gate": False},  # the 1997 LSTM: f = 1
    "lstm-peephole": {"peephole": True},
    "lstm-coupled": {"coupled_gates": True},
    "lstm-ln": {"layer_norm": True},
}
CELLS = (*LSTM_VARIANTS, "gru", "rnn")


class SequenceModel(nn.Module):
    """Embedding (token tasks) -> LSTM (or one of its variants in :data:`LSTM_VARIANTS`), GRU
    or RNN -> linear head at the last step or every step. A variant without the gate a bias
    starts (no forget gate; no input gate when coupled) ignores that bias. ``dropout``
    applies to the recurrent layer's input and output (and between layers) in training.

    forward(x (B, T) int64 or (B, T, F) float, lengths (B,) or None) returns (B, out) for
    readout "last" (each sequence's own last step) or (B, T, out) for "all".
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        tokens: bool = False,
        readout: str = "last",
        num_layers: int = 1,
        forget_bias: float | None = 1.0,
        embedding_size: int = 32,
        dropout: float = 0.0,
        input_bias: float | None = None,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"SequenceModel: cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if readout not in ("last", "all"):
            raise ValueError(f"SequenceModel: readout must be 'last' or 'all', got {readout!r}")
        self.config: dict[str, Any] = {
            "cell": cell,
            "input_size": input_size,
            "hidden_size": hidden_size,
            "output_size": output_size,
            "tokens": tokens,
            "readout": readout,
            "num_layers": num_layers,
            "forget_bias": forget_bias,
            "embedding_size": embedding_size,
        }
        for key, value in (("dropout", dropout), ("input_bias", input_bias)):
            if value:  # only when used, so older checkpoints keep their exact config
                self.config[key] = value
        self.drop = nn.Dropout(dropout)
        between = {"dropout": dropout} if num_layers > 1 else {}
        self.embed = nn.Embedding(input_size, embedding_size) if tokens else None
        features = embedding_size if tokens else input_size
        if cell in LSTM_VARIANTS:
            options = LSTM_VARIANTS[cell]
            self.rnn = LSTM(
                features,
                hidden_size,
                num_layers,
                batch_first=True,
                forget_bias=forget_bias if options.get("forget_gate", True) else None,
                input_bias=None if options.get("coupled_gates") else input_bias,
                **options,
                **between,
            )
        elif cell == "gru":
            self.rnn = GRU(features, hidden_size, num_layers, batch_first=True, **between)
        else:
            self.rnn = RNN(features, hidden_size, num_layers, batch_first=True, **between)
        self.head = nn.Linear(hidden_size, output_size)
        self.readout = readout

    def features(self, x: Tensor) -> Tensor:
        return self.embed(x) if self.embed is not None else x

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        state: Any = None,
        return_state: bool = False,
    ) -> Tensor | tuple[Tensor, Any]:
        """With return_state, also the final recurrent state, to carry into the next chunk
        (truncated BPTT); `state` starts from it."""
        out, last = self.rnn(self.drop(self.features(x)), state, lengths=lengths)
        out = self.drop(out)
        if return_state:
            return self.head(out), last
        if self.readout == "all":
            return self.head(out)
        if lengths is None:
            return self.head(out[:, -1])
        last = (lengths.to(out.device) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return self.head(out.gather(1, last).squeeze(1))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceModel:
        return cls(**config)


def model_for_task(task, cell: str, hidden_size: int, **kwargs) -> SequenceModel:
    return SequenceModel(
        cell, task.input_size, hidden_size, task.output_size, task.tokens, task.readout, **kwargs
    )
