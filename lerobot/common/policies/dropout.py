"""Dropout whose random mask is cheap to draw on CPU.

`torch.nn.Dropout` draws its mask with `bernoulli_`, which on CPU costs about 7 ns per element: for ACT at its
default size that is a tenth of a training step (the feed-forward activations alone are B x 302 x 3200).
Here the mask comes from raw random bits instead: one 64-bit draw of torch's generator gives four 16-bit
lanes, and an element is kept when its lane's low 15 bits fall below round(keep * 2^15). Kept elements are
scaled by 1 / (the exact keep probability), so the output stays unbiased; the keep probability differs from
1 - p by at most 2^-16 (6e-6 for p = 0.1). The draws come from torch's default generator, so
`torch.manual_seed` makes them reproducible. Other devices use `torch.nn.functional.dropout` (CUDA's
generator is already fast).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

LANE_BITS = 15  # per 16-bit lane; the lane's sign bit is dropped, so every compared value is uniform
LANES = 1 << LANE_BITS


def keep_threshold(p: float) -> int:
    """Lanes below this value are kept; keep probability = threshold / 2^15."""
    return round((1.0 - p) * LANES)


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> Tensor:
    """A bool mask of `shape`, each element True with probability keep_threshold(p) / 2^15, independently."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # 63 uniform bits per word
    lanes = words.view(torch.int16)[:n]  # every lane's low 15 bits are uniform and independent
    return (lanes & (LANES - 1) < keep_threshold(p)).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x -> where(keep, x, 0) * scale. Saves the bool mask (a byte per element, not a float mask) and makes
    one new tensor each way: on CPU a fresh large tensor costs page faults as much as the arithmetic."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """`F.dropout(x, p, training)`, with a cheaper mask on CPU (see the module docstring)."""
    if not training or p == 0.0:
        return x
    threshold = keep_threshold(p)
    if x.device.type != "cpu" or p >= 1.0 or threshold == 0:
        return F.dropout(x, p, training)
    if threshold >= LANES:  # p below 2^-16: nothing is dropped
        return x
    return _MaskedScale.apply(x, keep_mask(x.shape, p), LANES / threshold)


class Dropout(nn.Dropout):
    """`nn.Dropout` (same arguments, no state), drawing its mask with `dropout` above."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
