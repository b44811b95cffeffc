"""Time-major sequence helpers: reversing within lengths and PackedSequence round trips."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils import rnn as rnn_utils


def reverse_index(lengths: Tensor | None, steps: int) -> Tensor | None:
    """(T, B) index that reverses each sequence within its own length (padding stays put)."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=lengths.device)[:, None]
    return torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def reverse(x: Tensor, index: Tensor | None) -> Tensor:
    """Reverse time-major x (T, B, F) within lengths; its own inverse."""
    if index is None:
        return x.flip(0)
    return x.gather(0, index[:, :, None].expand_as(x))


def unpack(packed: rnn_utils.PackedSequence) -> tuple[Tensor, Tensor]:
    """Padded time-major data in the batch's original order, and lengths (int64, data's device)."""
    padded, lengths = rnn_utils.pad_packed_sequence(packed)
    return padded, lengths.to(padded.device)


def repack(
    padded: Tensor, lengths: Tensor, like: rnn_utils.PackedSequence
) -> rnn_utils.PackedSequence:
    """Pack time-major output with the same batch order as the input ``like``."""
    if like.sorted_indices is None:
        return rnn_utils.pack_padded_sequence(padded, lengths.cpu(), enforce_sorted=True)
    order = like.sorted_indices
    packed = rnn_utils.pack_padded_sequence(
        padded.index_select(1, order), lengths.index_select(0, order).cpu(), enforce_sorted=True
    )
    return rnn_utils.PackedSequence(packed.data, packed.batch_sizes, order, like.unsorted_indices)


def pack_padded_sequence(
    input: Tensor,
    lengths: Tensor | list[int],
    batch_first: bool = False,
    enforce_sorted: bool = True,
) -> rnn_utils.PackedSequence:
    """``torch.nn.utils.rnn.pack_padded_sequence`` with errors that say what is wrong."""
    lengths_t = torch.as_tensor(lengths)
    if lengths_t.dim() != 1:
        raise ValueError(f"pack_padded_sequence: lengths must be 1-D, got {tuple(lengths_t.shape)}")
    batch = input.shape[0 if batch_first else 1] if input.dim() >= 2 else -1
    if lengths_t.shape[0] != batch:
        raise ValueError(
            f"pack_padded_sequence: lengths has {lengths_t.shape[0]} entries, expected {batch} "
            f"(the batch size of input with shape {tuple(input.shape)})"
        )
    if enforce_sorted and lengths_t.numel() > 1:
        rises = (lengths_t[1:] > lengths_t[:-1]).nonzero()
        if rises.numel():
            k = int(rises[0])
            raise ValueError(
                "pack_padded_sequence: with enforce_sorted=True, lengths must be in decreasing "
                f"order, got lengths[{k}]={int(lengths_t[k])} < lengths[{k + 1}]="
                f"{int(lengths_t[k + 1])}; pass enforce_sorted=False to let it sort"
            )
    return rnn_utils.pack_padded_sequence(input, lengths_t.cpu(), batch_first, enforce_sorted)
