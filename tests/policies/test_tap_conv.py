import pytest
import torch
from torch.nn import functional as F

from lerobot.common.policies import tap_conv
from lerobot.common.policies.backbone import ResNet

# (batch, C_in, H, W, C_out, kernel, stride, padding)
GEOMETRIES = [
    (3, 5, 2, 2, 4, (3, 3), (1, 1), (1, 1)),  # the last ResNet stage of a 40x40 crop
    (3, 5, 3, 3, 4, (3, 3), (2, 2), (1, 1)),  # its strided first convolution
    (2, 5, 6, 8, 4, (3, 3), (2, 2), (1, 1)),  # 6x8 -> 3x4 (a 96x128 image)
    (2, 5, 3, 4, 4, (3, 3), (1, 1), (1, 1)),
    (2, 5, 1, 1, 4, (3, 3), (1, 1), (1, 1)),  # most taps never meet the 1x1 map
    (2, 5, 5, 7, 4, (1, 1), (2, 2), (0, 0)),  # a downsampling 1x1 convolution
    (2, 5, 6, 5, 4, (3, 2), (2, 1), (0, 1)),  # rectangular kernel, mixed strides and padding
    (1, 5, 4, 4, 6, (3, 3), (3, 2), (2, 1)),
    (2, 3, 6, 8, 4, (7, 7), (2, 2), (3, 3)),  # stem-like
]


@pytest.mark.parametrize("weight_grad", ["unfolded", "by_taps"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_gradients_equal_the_convolution_gradients(
    geometry, with_bias, channels_last, weight_grad, monkeypatch
):
    monkeypatch.setattr(tap_conv, "TAP_MIN_ROWS", 0 if weight_grad == "by_taps" else 10**9)
    batch, c_in, h, w, c_out, kernel, stride, padding = geometry
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, h, w, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    weight = torch.randn(c_out, c_in, *kernel, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(c_out, generator=g, dtype=torch.float64, requires_grad=True) if with_bias else None
    inputs = [t for t in (x, weight, bias) if t is not None]

    expected = F.conv2d(x, weight, bias, stride, padding)
    grad_out = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    out = tap_conv._SmallMapConv2d.apply(x, weight, bias, stride, padding)
    grads = torch.autograd.grad(out, inputs, grad_out)

    torch.testing.assert_close(out, expected)
    for name, got, want in zip(("input", "weight", "bias"), grads, expected_grads):
        torch.testing.assert_close(got, want, msg=f"{name} gradient differs")
    # The weight gradient comes in the weight's layout (autograd then keeps it as .grad without a copy).
    assert grads[1].is_contiguous()


def _grad_fn_name(x: torch.Tensor, weight: torch.Tensor, stride=(1, 1)) -> str:
    out = tap_conv.conv2d(x, weight, None, stride, (1, 1), (1, 1), 1)
    return type(out.grad_fn).__name__ if out.grad_fn is not None else "none"


def test_only_training_convolutions_on_small_wide_maps_take_this_path():
    weight = torch.randn(8, 256, 3, 3, requires_grad=True)
    small = torch.randn(64, 256, 2, 2)  # 64 x 4 = 256 rows of the per-tap products
    assert _grad_fn_name(small, weight) == "_SmallMapConv2dBackward"
    assert _grad_fn_name(torch.randn(64, 256, 8, 8), weight) != "_SmallMapConv2dBackward"  # large map
    assert _grad_fn_name(torch.randn(2, 256, 2, 2), weight) == "_SmallMapConv2dBackward"  # any batch
    narrow = torch.randn(8, 128, 3, 3, requires_grad=True)
    assert _grad_fn_name(torch.randn(64, 128, 2, 2), narrow) != "_SmallMapConv2dBackward"  # few channels
    assert _grad_fn_name(small, weight.detach()) == "none"  # frozen weights: nothing to compute by taps
    empty = torch.randn(0, 256, 2, 2, requires_grad=True)  # an empty batch stays with oneDNN, and trains
    assert _grad_fn_name(empty, weight) != "_SmallMapConv2dBackward"
    tap_conv.conv2d(empty, weight, None, (1, 1), (1, 1), (1, 1), 1).sum().backward()
    assert weight.grad is not None and not weight.grad.any()
    with torch.no_grad():
        assert _grad_fn_name(small, weight) == "none"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _grad_fn_name(small, weight) != "_SmallMapConv2dBackward"


@pytest.mark.parametrize("batch", [4, 64])  # weight gradients unfolded / by taps in layer4
@pytest.mark.parametrize("norm", ["group_norm", "frozen_batch_norm"])
def test_resnet_trains_the_same_with_small_map_gradients(norm, batch, monkeypatch):
    # 40x40 images: layer3 ends on 3x3 maps and layer4 on 2x2 maps, which take this module's path.
    torch.manual_seed(0)
    model = ResNet("resnet18", norm=norm).train()
    images = torch.rand(batch, 3, 40, 40)

    def gradients():
        model.zero_grad(set_to_none=True)
        model(images).square().mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    calls = []
    apply = tap_conv._SmallMapConv2d.apply
    monkeypatch.setattr(tap_conv._SmallMapConv2d, "apply", lambda *args: calls.append(1) or apply(*args))
    with_taps = gradients()
    assert len(calls) == 8  # layer3's three 256-channel convolutions on 3x3 maps, all five of layer4
    monkeypatch.setattr(tap_conv, "MAX_OUTPUT_PIXELS", 0)
    without = gradients()
    for name, grad in without.items():
        torch.testing.assert_close(
            with_taps[name], grad, rtol=1e-4, atol=1e-6, msg=f"{name} gradient differs"
        )
