"""Normalising policy inputs and targets with dataset statistics, and un-normalising policy outputs.

The statistics live in buffers inside the policy, so a saved checkpoint carries them and a policy loaded from
it needs no dataset. Two modes, as in the reference implementation:

* `mean_std`: x -> (x - mean) / (std + 1e-8)
* `min_max`:  x -> (x - min) / (max - min + 1e-8) * 2 - 1, i.e. [min, max] -> [-1, 1]

plus `identity` to leave a key alone. Modes are given per key (`{"observation.state": "mean_std"}`, the
reference's `input_normalization_modes`) or per feature type (`{"STATE": "mean_std", "VISUAL": "mean_std"}`);
an exact key wins over its type. Keys with no mode pass through unchanged.

Vector features have stats of shape (D,); camera features have stats of shape (C, 1, 1), which broadcast over
(..., C, H, W). Buffers start at +inf: a policy built without `dataset_stats` must load a checkpoint before use,
and using it earlier raises `NormalizationStatsError` rather than producing NaNs.

State-dict names follow the reference (`<module>.buffer_observation_state.mean`), so its checkpoints load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

EPS = 1e-8
MODES = ("mean_std", "min_max", "identity")
STATS_FOR_MODE = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "identity": ()}
FEATURE_TYPES = ("VISUAL", "STATE", "ENV", "ACTION")


class NormalizationStatsError(ValueError):
    """Statistics are missing, malformed or were never set (buffers still at +inf)."""


def feature_type(key: str) -> str:
    """The feature type of a batch key: VISUAL (cameras), ENV (environment state), STATE or ACTION."""
    if key.startswith("observation.image"):
        return "VISUAL"
    if key == "observation.environment_state":
        return "ENV"
    if key.startswith("observation."):
        return "STATE"
    return "ACTION"


def resolve_modes(shapes: Mapping[str, Sequence[int]], modes: Mapping[str, str | None]) -> dict[str, str]:
    """The normalisation mode of every key of `shapes` that has one (per-key entries first, then types)."""
    for name, mode in modes.items():
        if name not in shapes and name not in FEATURE_TYPES:
            raise ValueError(
                f"Normalisation mode given for {name!r}, which is neither a feature of this policy "
                f"({sorted(shapes)}) nor a feature type ({list(FEATURE_TYPES)})."
            )
        if mode is not None and str(mode).lower() not in MODES:
            raise ValueError(f"Unknown normalisation mode {mode!r} for {name!r}; choose one of {MODES}.")
    resolved = {}
    for key in shapes:
        mode = modes.get(key, modes.get(feature_type(key)))
        if mode is not None and str(mode).lower() != "identity":
            resolved[key] = str(mode).lower()
    return resolved


def stats_shape(key: str, shape: Sequence[int]) -> tuple[int, ...]:
    """Shape of the stats buffers of a feature: (C, 1, 1) for a (C, H, W) camera, the feature shape otherwise."""
    shape = tuple(int(s) for s in shape)
    if feature_type(key) == "VISUAL":
        if len(shape) != 3:
            raise ValueError(f"Camera feature {key!r} must have shape (C, H, W), got {list(shape)}.")
        return (shape[0], 1, 1)
    return shape


def _as_tensor(value: Any, key: str, stat: str, shape: tuple[int, ...]) -> Tensor:
    value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
    if value.numel() != math.prod(shape):
        raise NormalizationStatsError(
            f"dataset_stats[{key!r}][{stat!r}] has shape {list(value.shape)}, expected {list(shape)} "
            f"(or anything with {math.prod(shape)} elements)."
        )
    return value.reshape(shape).clone()


class _Stats(nn.Module):
    """The stats buffers of one feature (`mean`/`std` or `min`/`max`), +inf until set."""

    def __init__(self, names: Sequence[str], shape: tuple[int, ...]):
        super().__init__()
        for name in names:
            self.register_buffer(name, torch.full(shape, math.inf))


class _Normalization(nn.Module):
    """Shared bookkeeping of `Normalize` and `Unnormalize`: one `_Stats` module per normalised key."""

    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]],
        modes: Mapping[str, str | None],
        stats: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        super().__init__()
        self.modes = resolve_modes(shapes, modes)
        for key, mode in self.modes.items():
            shape = stats_shape(key, shapes[key])
            buffers = _Stats(STATS_FOR_MODE[mode], shape)
            if stats is not None:
                if key not in stats:
                    raise NormalizationStatsError(
                        f"dataset_stats has no entry for {key!r}, which is normalised with {mode!r}; "
                        f"it has {sorted(stats)}."
                    )
                for name in STATS_FOR_MODE[mode]:
                    if name not in stats[key]:
                        raise NormalizationStatsError(
                            f"dataset_stats[{key!r}] has no {name!r}, needed by mode {mode!r}; "
                            f"it has {sorted(stats[key])}."
                        )
                    getattr(buffers, name).copy_(_as_tensor(stats[key][name], key, name, shape))
            setattr(self, _buffer_name(key), buffers)

    def _stats(self, key: str) -> _Stats:
        buffers = getattr(self, _buffer_name(key))
        for name, value in buffers.named_buffers():
            if torch.isinf(value).any():
                raise NormalizationStatsError(
                    f"Normalisation stats {key!r}/{name!r} are not set (still +inf): load a checkpoint "
                    "with `from_pretrained` or pass `dataset_stats` when constructing the policy."
                )
        return buffers

    def extra_repr(self) -> str:
        return f"modes={self.modes}"


def _buffer_name(key: str) -> str:
    return "buffer_" + key.replace(".", "_")


class Normalize(_Normalization):
    """Maps raw features to normalised ones. Returns a new dict; the input batch is left untouched."""

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(batch)
        for key, mode in self.modes.items():
            if key not in batch:
                continue
            s = self._stats(key)
            if mode == "mean_std":
                out[key] = (batch[key] - s.mean) / (s.std + EPS)
            else:  # min_max
                out[key] = (batch[key] - s.min) / (s.max - s.min + EPS) * 2 - 1
        return out


class Unnormalize(_Normalization):
    """Inverse of `Normalize`: maps policy outputs back to the dataset's units."""

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = dict(batch)
        for key, mode in self.modes.items():
            if key not in batch:
                continue
            s = self._stats(key)
            if mode == "mean_std":
                out[key] = batch[key] * (s.std + EPS) + s.mean
            else:  # min_max
                out[key] = (batch[key] + 1) / 2 * (s.max - s.min + EPS) + s.min
        return out
