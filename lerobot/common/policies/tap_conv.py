"""Training convolutions on small feature maps: weight gradients as plain matrix products.

On CPU, oneDNN's weight gradient for a wide convolution on a small map is several times slower than its forward
pass: a 512x512x3x3 kernel on 2x2 maps takes 7.5 ms forward and 33 ms for the weight gradient at batch 128, and
1.4 ms against 9 ms at batch 16. The last ResNet stage of a 40x40 crop (2x2 maps) or of a 96x128 image (3x4
maps) is such a layer. Here the weight gradient is one or a few matrix products instead, in one of two ways,
chosen by M = batch x output pixels:

* **Few rows (M < TAP_MIN_ROWS): unfolded.** dW (C_out, C_in*kh*kw) = dY (C_out, M) @ cols (M, C_in*kh*kw),
  with `cols` the unfolded input patches (zero where a patch overlaps the padding). One product, whose result
  is already in the weight's layout: 1.6 ms for the layer above at batch 16.
* **Many rows: kernel tap by kernel tap.** A convolution is a sum over its kernel taps of 1x1 convolutions of
  the shifted input. For tap (ki, kj), the output pixels whose shifted input pixel lies inside the map (the
  others only see zero padding) form a rectangle, and

      dW[:, :, ki, kj] = dY_tap (C_out, M_tap) @ X_tap (M_tap, C_in),   M_tap = batch x the rectangle's pixels,

  with X_tap and dY_tap the input and output gradient restricted to the rectangle. This skips the padding's share
  of the arithmetic (5/9 on a 2x2 map): 4.6 ms for the layer above at batch 128. With few rows the nine small
  products and their strided writes cost more than the unfolded product's extra arithmetic.

On maps of 6x8 and more both ways take about as long as oneDNN, and on larger maps or with fewer channels oneDNN
is faster, so only convolutions with at most MAX_OUTPUT_PIXELS output pixels and at least MIN_IN_CHANNELS input
channels take this path.

The input gradient of a strided convolution is slow in oneDNN in the same way (12 ms against 5 ms tap by tap for
256->512 channels, 3x3 -> 2x2, batch 128) and is computed tap by tap too: dX_tap += dY_tap @ W_tap. For stride
1, oneDNN's input gradient is as fast or faster and is kept. The forward pass is always oneDNN's.

Only training takes this path (autograd recording, weight requiring a gradient, float32 on CPU, no autocast);
the result is the same convolution, to float rounding.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from lerobot.common.policies import onednn
from lerobot.common.utils.utils import cpu_autocast_dtype

MAX_OUTPUT_PIXELS = 16  # output map of at most 4x4 (3x4, 2x2, ...)
MIN_IN_CHANNELS = 256
TAP_MIN_ROWS = 256  # batch x output pixels from which the weight gradient is taken tap by tap (else unfolded)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> Tensor:
    """`F.conv2d` (tuple arguments, as an nn.Conv2d holds them), with matrix-product gradients on small maps
    while training on CPU, and packed weights in float32 CPU inference (onednn.conv2d)."""
    if _small_map_training(x, weight, stride, padding, dilation, groups):
        return _SmallMapConv2d.apply(x, weight, bias, tuple(stride), tuple(padding))
    return onednn.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv_out_len(n: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """The output length of a convolution along one axis of input length `n`."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def is_channels_last(x: Tensor) -> bool:
    """Whether the (B, C, H, W) map is laid out channels-last (and not also plain contiguous, as 1x1 maps are)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _small_map_training(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> bool:
    if not (torch.is_grad_enabled() and weight.requires_grad and x.dim() == 4 and x.numel() > 0):
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if groups != 1 or any(d != 1 for d in dilation) or cpu_autocast_dtype() is not None:
        return False
    if weight.shape[1] < MIN_IN_CHANNELS:
        return False
    out_h, out_w = map(conv_out_len, x.shape[-2:], weight.shape[-2:], stride, padding)
    return out_h * out_w <= MAX_OUTPUT_PIXELS


@functools.lru_cache(maxsize=256)
def _taps(
    in_size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[tuple[int, int, slice, slice, slice, slice], ...]:
    """For every kernel tap (ki, kj) with at least one output pixel inside the map: (ki, kj, output rows,
    output columns, input rows, input columns), as slices of the (B, H, W, C) maps."""

    def ranges(k: int, size: int, n_in: int, s: int, p: int) -> tuple[slice, slice] | None:
        # Tap k of a kernel of `size` along one axis: output o reads input o * s - p + k, inside [0, n_in).
        n_out = conv_out_len(n_in, size, s, p)
        first = max(0, -((k - p) // s))  # ceil((p - k) / s)
        last = min(n_out - 1, (n_in - 1 + p - k) // s)
        if last < first:
            return None
        return slice(first, last + 1), slice(first * s - p + k, last * s - p + k + 1, s)

    taps = []
    for ki in range(kernel[0]):
        rows = ranges(ki, kernel[0], in_size[0], stride[0], padding[0])
        for kj in range(kernel[1]):
            cols = ranges(kj, kernel[1], in_size[1], stride[1], padding[1])
            if rows is not None and cols is not None:
                taps.append((ki, kj, rows[0], cols[0], rows[1], cols[1]))
    return tuple(taps)


class _SmallMapConv2d(torch.autograd.Function):
    """oneDNN's convolution forward; weight gradient unfolded or tap by tap, input gradient of strided convolutions
    tap by tap."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,  # (B, C_in, H, W)
        weight: Tensor,  # (C_out, C_in, kh, kw)
        bias: Tensor | None,  # (C_out,)
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> Tensor:  # (B, C_out, H_out, W_out)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        taps = _taps(tuple(x.shape[-2:]), tuple(weight.shape[-2:]), ctx.stride, ctx.padding)
        by_taps = grad_out.shape[0] * grad_out.shape[2] * grad_out.shape[3] >= TAP_MIN_ROWS
        strided = ctx.stride != (1, 1)
        grad_x = grad_weight = grad_bias = grad_rows = None
        if (ctx.needs_input_grad[1] and by_taps) or (ctx.needs_input_grad[0] and strided):
            grad_rows = grad_out.permute(0, 2, 3, 1).contiguous()  # (B, H_out, W_out, C_out), pixels by rows

        if ctx.needs_input_grad[1]:
            if by_taps:
                grad_weight = _weight_grad_by_taps(x, grad_rows, weight.shape, taps)
            else:
                grad_weight = _weight_grad_unfolded(x, grad_out, weight.shape, ctx.stride, ctx.padding)

        if ctx.needs_input_grad[0]:
            if not strided:
                grad_x = torch.ops.aten.convolution_backward(
                    grad_out, x, weight, None, ctx.stride, ctx.padding, [1, 1], False, [0, 0], 1,
                    [True, False, False],
                )[0]  # fmt: skip
            else:
                grad_x = _input_grad_by_taps(x, grad_rows, weight, taps)

        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None


def _weight_grad_unfolded(
    x: Tensor,  # (B, C_in, H, W)
    grad_out: Tensor,  # (B, C_out, H_out, W_out)
    weight_shape: torch.Size,
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> Tensor:  # (C_out, C_in, kh, kw)
    c_out = weight_shape[0]
    cols = F.unfold(x, weight_shape[-2:], padding=padding, stride=stride)  # (B, C_in*kh*kw, L)
    cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (C_in*kh*kw, B*L)
    dy = grad_out.reshape(grad_out.shape[0], c_out, -1).transpose(0, 1).reshape(c_out, -1)  # (C_out, B*L)
    return torch.mm(dy, cols.t()).view(weight_shape)


def _weight_grad_by_taps(
    x: Tensor,  # (B, C_in, H, W)
    grad_rows: Tensor,  # (B, H_out, W_out, C_out)
    weight_shape: torch.Size,
    taps: tuple[tuple[int, int, slice, slice, slice, slice], ...],
) -> Tensor:  # (C_out, C_in, kh, kw)
    c_out, c_in, kh, kw = weight_shape
    x_rows = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C_in): free if x is channels-last
    per_tap = x.new_empty(kh, kw, c_out, c_in)
    if len(taps) < kh * kw:  # a tap that never meets the map has no gradient
        per_tap.zero_()
    for ki, kj, out_r, out_c, in_r, in_c in taps:
        dy = grad_rows[:, out_r, out_c].reshape(-1, c_out)  # (M_tap, C_out)
        torch.mm(dy.t(), x_rows[:, in_r, in_c].reshape(-1, c_in), out=per_tap[ki, kj])
    # One transposing copy into the weight's layout, which autograd then keeps as `.grad` without another copy
    # (2-3% of a Diffusion tiny training step faster than writing each tap's product into it strided).
    return per_tap.permute(2, 3, 0, 1).contiguous()


def _input_grad_by_taps(
    x: Tensor,  # (B, C_in, H, W)
    grad_rows: Tensor,  # (B, H_out, W_out, C_out)
    weight: Tensor,  # (C_out, C_in, kh, kw)
    taps: tuple[tuple[int, int, slice, slice, slice, slice], ...],
) -> Tensor:  # (B, C_in, H, W), in x's memory layout
    batch, c_in, height, width = x.shape
    c_out = weight.shape[0]
    w_taps = weight.permute(2, 3, 0, 1).contiguous()  # (kh, kw, C_out, C_in)
    dx = x.new_zeros(batch, height, width, c_in)
    for ki, kj, out_r, out_c, in_r, in_c in taps:
        dy = grad_rows[:, out_r, out_c]  # (B, h, w, C_out)
        dx[:, in_r, in_c] += torch.mm(dy.reshape(-1, c_out), w_taps[ki, kj]).view(*dy.shape[:3], c_in)
    layout = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    return dx.permute(0, 3, 1, 2).contiguous(memory_format=layout)
