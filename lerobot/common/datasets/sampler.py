"""A sampler that knows where episodes start and end.

Policies that predict a chunk of future actions (ACT, diffusion) learn little from the last frames of an
episode, whose future is mostly padding, and some setups want to skip the settling frames at the start.
`EpisodeAwareSampler` yields the dataset indices of the selected episodes with the first / last frames of
each episode dropped, so a DataLoader never asks for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def _as_index_array(value: Any, name: str) -> np.ndarray:
    """Turn a 1-D tensor / array / list of integers into an int64 numpy array, or explain what is wrong."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"episode_data_index[{name!r}] must be 1-D, got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"episode_data_index[{name!r}] must hold integers, got dtype {arr.dtype}.")
    return arr.astype(np.int64)


def _check_non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    return int(value)


class EpisodeAwareSampler(Sampler[int]):
    """Yield the frame indices of chosen episodes, minus the first/last few frames of every episode.

    Args:
        episode_data_index: {"from": starts, "to": exclusive ends}, 1-D integer tensors of global frame indices,
            one entry per episode.
        episode_indices_to_use: positions in `episode_data_index` (0..num_episodes-1) to sample from; all
            episodes when None. Order and duplicates do not matter: indices come out in dataset order.
        drop_n_first_frames: frames skipped at the start of every episode.
        drop_n_last_frames: frames skipped at the end of every episode. An episode shorter than the frames
            dropped simply contributes nothing.
        shuffle: yield a fresh random permutation on every pass instead of dataset order.
        generator: torch.Generator driving the shuffle; mutually exclusive with `seed`.
        seed: seed a private generator, so the sequence of epochs is reproducible (each epoch still differs).
            With neither, torch's global RNG is used, which `torch.manual_seed` controls.
    """

    def __init__(
        self,
        episode_data_index: Mapping[str, Any],
        episode_indices_to_use: Sequence[int] | None = None,
        drop_n_first_frames: int = 0,
        drop_n_last_frames: int = 0,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ):
        if not isinstance(episode_data_index, Mapping) or not {"from", "to"} <= set(episode_data_index):
            raise TypeError(
                "episode_data_index must be a mapping with 'from' and 'to' tensors, got "
                f"{type(episode_data_index).__name__}"
                + (
                    f" with keys {sorted(episode_data_index)}"
                    if isinstance(episode_data_index, Mapping)
                    else ""
                )
                + "."
            )
        starts = _as_index_array(episode_data_index["from"], "from")
        ends = _as_index_array(episode_data_index["to"], "to")
        if starts.shape != ends.shape:
            raise ValueError(
                f"episode_data_index['from'] and ['to'] must have the same length, got {starts.size} and "
                f"{ends.size}."
            )
        bad = np.flatnonzero((starts < 0) | (ends < starts))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"Episode {i} has from={starts[i]} and to={ends[i]}; expected 0 <= from <= to (to is exclusive)."
            )
        drop_first = _check_non_negative_int(drop_n_first_frames, "drop_n_first_frames")
        drop_last = _check_non_negative_int(drop_n_last_frames, "drop_n_last_frames")
        if generator is not None and seed is not None:
            raise ValueError("Pass either generator or seed to EpisodeAwareSampler, not both.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")

        num_episodes = starts.size
        if episode_indices_to_use is None:
            selected = np.arange(num_episodes)
        else:
            if isinstance(episode_indices_to_use, (str, bytes)) or not isinstance(
                episode_indices_to_use, (Sequence, np.ndarray, torch.Tensor)
            ):
                raise TypeError(
                    f"episode_indices_to_use must be a list of ints or None, got {episode_indices_to_use!r}."
                )
            selected = np.asarray(
                episode_indices_to_use.tolist()
                if isinstance(episode_indices_to_use, torch.Tensor)
                else list(episode_indices_to_use)
            )
            if selected.size and not np.issubdtype(selected.dtype, np.integer):
                raise TypeError(
                    f"episode_indices_to_use must hold ints, got {list(episode_indices_to_use)!r}."
                )
            selected = selected.astype(np.int64).reshape(-1)
            out_of_range = selected[(selected < 0) | (selected >= num_episodes)]
            if out_of_range.size:
                raise ValueError(
                    f"episode_indices_to_use contains {out_of_range.tolist()}, outside [0, {num_episodes - 1}]: "
                    "they are positions in episode_data_index, not episode ids stored in the data."
                )
            selected = np.unique(selected)

        lo = starts[selected] + drop_first
        hi = ends[selected] - drop_last
        lengths = np.clip(hi - lo, 0, None)
        # Concatenate the ranges [lo, hi) without a Python loop: offsets within each range plus its start.
        total = int(lengths.sum())
        range_starts = np.repeat(lo, lengths)
        offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.indices = torch.from_numpy(range_starts + offsets)
        self.shuffle = bool(shuffle)
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(len(self.indices), generator=self.generator)
            yield from self.indices[order].tolist()
        else:
            yield from self.indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)
