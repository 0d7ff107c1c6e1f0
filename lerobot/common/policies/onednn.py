"""oneDNN-packed weights for float32 inference on CPU.

oneDNN runs a convolution or a matrix product with the weights in its own blocked layout. Given a plain torch
weight it lays the weight out again at every call, which for a robot's single observation costs as much as
the arithmetic: a 512x512x3x3 convolution on a 3x4 map takes 430 us from a plain weight and 320 us from a
packed one, and a ResNet-18 encoder of two 40x40 images 8.1 ms against 6.5 ms. Packing once, and again only
when the weight changes (its version counter moves with every in-place update), removes that cost.

`conv2d` is `F.conv2d` with that cache when autograd is off. It runs through the custom operator
`lerobot::packed_conv2d`, whose weight argument is the live weight tensor: a TorchScript recording of a model
(see inference_trace.py) keeps calling it, where it could not hold a packed weight itself. The packed copies
live beside the weight tensors, in a table keyed weakly by them, so they go when the weights go.

`linear` does the same for matrix products (`lerobot::packed_linear`). There the gain is memory bandwidth: with
4-16 rows (a U-Net layer at batch 1), MKL's product reads the weights at about half the bandwidth that
oneDNN's reaches from a packed weight. The ResNet backbones use `conv2d` (backbone.py), Diffusion Policy's U-Net
`linear` for its wide layers (unet.py). `LEROBOT_ONEDNN_PACKING=0` makes both run torch's own operators.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.weak import WeakIdKeyDictionary

from lerobot.common.utils.utils import env_flag

# "0" runs torch's own operators (to rule this module out when debugging).
ENV_SWITCH = "LEROBOT_ONEDNN_PACKING"
MAX_PACKINGS_PER_WEIGHT = 4  # input shapes per weight; more start that weight's table over

# weight tensor -> {(input shape, stride, padding, dilation, groups): (weight version, packed weight)}
_PACKED_CONV: WeakIdKeyDictionary = WeakIdKeyDictionary()
# weight tensor -> ((weight version, transposed), packed (N, K) weight)
_PACKED_LINEAR: WeakIdKeyDictionary = WeakIdKeyDictionary()


@functools.cache
def packed_conv_available() -> bool:
    """Whether this torch has what `conv2d` needs: oneDNN's packed convolution."""
    try:
        weight = torch.ones(2, 3, 1, 1)
        out = torch.ops.lerobot.packed_conv2d(torch.ones(1, 3, 2, 2), weight, None, [1, 1], [0, 0], [1, 1], 1)
        return bool(torch.equal(out, torch.full((1, 2, 2, 2), 3.0)))
    except (AttributeError, RuntimeError):  # built without oneDNN, or the private ops changed
        return False


@functools.cache
def packed_linear_available() -> bool:
    """Whether this torch has what `linear` needs: oneDNN's packed matrix product (`mkldnn::_linear_pointwise`)."""
    try:
        out = torch.ops.lerobot.packed_linear(torch.ones(1, 3), torch.ones(2, 3), None, False)
        return bool(torch.equal(out, torch.full((1, 2), 3.0)))
    except (AttributeError, RuntimeError):
        return False


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, transposed: bool = False) -> Tensor:
    """`x @ W.T + bias` for x (M, K), where W (N, K) is `weight.reshape(N, -1)`, or with `transposed`
    `weight.reshape(K, -1).T` (a transposed convolution's (C_in, C_out, k) weight); from a packed weight in
    float32 CPU inference. Pass the weight tensor itself (a parameter), not a view made per call: packings are
    kept per tensor object."""
    if not (_packable(x, weight) and packed_linear_available()):
        return F.linear(x, _as_rows(weight, transposed), bias)
    return torch.ops.lerobot.packed_linear(x, weight, bias, transposed)


def _packable(x: Tensor, weight: Tensor) -> bool:
    """Float32 CPU inference on a weight with a version counter (inference tensors have none, so nothing could
    tell when to pack again), with packing not switched off."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not weight.is_inference()
        and env_flag(ENV_SWITCH, default=True)
    )


def _as_rows(weight: Tensor, transposed: bool) -> Tensor:  # (N, K): one row per output feature
    return weight.reshape(weight.shape[0], -1).t() if transposed else weight.reshape(weight.shape[0], -1)


def release(weight: Tensor) -> None:
    """Drop the packed copies of `weight` now (e.g. when its module goes back to training: they are stale after
    the next optimiser step, and for a large model they are as big as its weights)."""
    _PACKED_CONV.pop(weight, None)
    _PACKED_LINEAR.pop(weight, None)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Tensor:
    """`F.conv2d` (tuple arguments, as an nn.Conv2d holds them); from a packed weight in float32 CPU inference."""
    if not (_packable(x, weight) and packed_conv_available()):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return torch.ops.lerobot.packed_conv2d(
        x, weight, bias, list(stride), list(padding), list(dilation), groups
    )


def _packed_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> Tensor:
    packings = _PACKED_CONV.get(weight)
    if packings is None or len(packings) > MAX_PACKINGS_PER_WEIGHT:
        packings = _PACKED_CONV[weight] = {}
    key = (tuple(x.shape), tuple(stride), tuple(padding), tuple(dilation), groups)
    entry = packings.get(key)
    if entry is None or entry[0] != weight._version:
        plain = weight.detach().contiguous().to_mkldnn()
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            plain, padding, stride, dilation, groups, list(x.shape)
        )
        entry = packings[key] = (weight._version, packed)
    return torch.ops.mkldnn._convolution_pointwise(
        x, entry[1], bias, padding, stride, dilation, groups, "none", [], ""
    )


def _packed_linear(x: Tensor, weight: Tensor, bias: Tensor | None, transposed: bool) -> Tensor:
    entry = _PACKED_LINEAR.get(weight)
    if entry is None or entry[0] != (weight._version, transposed):
        plain = _as_rows(weight.detach(), transposed).contiguous()
        packed = torch.ops.mkldnn._reorder_linear_weight(plain, 16)  # 16: a hint of the rows to come
        entry = _PACKED_LINEAR[weight] = ((weight._version, transposed), packed)
    return torch.ops.mkldnn._linear_pointwise(x, entry[1], bias, "none", [], "")


# A plain operator library (a CPU kernel, no autograd formula: only inference calls it). Its dispatch costs about
# 2 us a call, against about 12 us for `torch.library.custom_op`'s.
def _register() -> torch.library.Library | None:
    if hasattr(torch.ops.lerobot, "packed_conv2d"):  # registered by an earlier import (importlib.reload)
        return None
    library = torch.library.Library("lerobot", "FRAGMENT")
    library.define(
        "packed_conv2d(Tensor x, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> Tensor"
    )
    library.impl("packed_conv2d", _packed_conv2d, "CPU")
    library.define("packed_linear(Tensor x, Tensor weight, Tensor? bias, bool transposed) -> Tensor")
    library.impl("packed_linear", _packed_linear, "CPU")
    return library


# Kept referenced: the registration lasts as long as this object (on importlib.reload, the existing one is kept).
_LIBRARY = globals().get("_LIBRARY") or _register()
