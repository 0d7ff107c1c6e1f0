"""oneDNN-packed convolution weights for float32 CPU inference (lerobot/common/policies/onednn.py)."""

import gc
import subprocess
import sys
import weakref

import pytest
import torch
from torch.nn import functional as F

from lerobot.common.policies import onednn

pytestmark = pytest.mark.skipif(not onednn.packed_conv_available(), reason="this torch has no oneDNN")


def packings(weight: torch.Tensor) -> dict:
    return onednn._PACKED_CONV.get(weight, {})


@pytest.mark.parametrize(
    "shape, kernel, stride, padding, layout",
    [
        ((1, 512, 3, 4), 3, 1, 1, torch.contiguous_format),
        ((2, 64, 20, 20), 3, 2, 1, torch.contiguous_format),
        ((1, 64, 24, 32), 1, 2, 0, torch.channels_last),
        ((2, 3, 40, 40), 7, 2, 3, torch.contiguous_format),
    ],
)
def test_conv2d_equals_torch_and_packs_each_weight_once(shape, kernel, stride, padding, layout):
    torch.manual_seed(0)
    x = torch.randn(shape).contiguous(memory_format=layout)
    weight, bias = torch.randn(32, shape[1], kernel, kernel) / kernel, torch.randn(32)
    args = ((stride, stride), (padding, padding), (1, 1), 1)
    with torch.no_grad():
        out = onednn.conv2d(x, weight, bias, *args)
        torch.testing.assert_close(out, F.conv2d(x, weight, bias, *args), rtol=1e-4, atol=1e-4)
        (entry,) = packings(weight).values()
        onednn.conv2d(x, weight, None, *args)
        assert list(packings(weight).values()) == [entry]  # reused, bias or not
        weight.mul_(-1)  # an in-place update (optimiser step, load_state_dict): packed again
        torch.testing.assert_close(
            onednn.conv2d(x, weight, bias, *args), F.conv2d(x, weight, bias, *args), rtol=1e-4, atol=1e-4
        )
        assert list(packings(weight).values()) != [entry]


def test_autograd_and_other_dtypes_use_torch_and_pack_nothing():
    x, weight = torch.randn(1, 4, 6, 6), torch.randn(8, 4, 3, 3, requires_grad=True)
    args = ((1, 1), (1, 1), (1, 1), 1)
    onednn.conv2d(x, weight, None, *args).sum().backward()
    assert weight.grad is not None and packings(weight) == {}
    with torch.no_grad():
        double = weight.detach().double()
        torch.testing.assert_close(
            onednn.conv2d(x.double(), double, None, *args), F.conv2d(x.double(), double, None, *args)
        )
        assert packings(double) == {}


def test_packed_weights_go_with_their_weights():
    weight = torch.randn(8, 4, 3, 3)
    with torch.no_grad():
        onednn.conv2d(torch.randn(1, 4, 6, 6), weight, None, (1, 1), (1, 1), (1, 1), 1)
    ((_, packed),) = packings(weight).values()
    packed = weakref.ref(packed)
    del weight
    gc.collect()
    assert packed() is None


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # torch 2.13 deprecates tracing (see inference_trace.py)
def test_a_trace_calls_the_operator_with_the_live_weight():
    """TorchScript records `lerobot::packed_conv2d` with the weight as an input, not a packed constant."""
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = self.conv
            return torch.relu(onednn.conv2d(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups))

    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        traced = torch.jit.trace(Net(), (x,), check_trace=False)
        assert "lerobot::packed_conv2d" in str(traced.graph)
        conv.weight.mul_(2)
        torch.testing.assert_close(traced(x), torch.relu(conv(x)), rtol=1e-4, atol=1e-4)


def test_inference_mode_weights_are_not_packed():
    """Tensors made in inference mode have no version counter, so nothing could tell a packing is stale."""
    with torch.inference_mode():
        x, weight, rows = torch.randn(1, 4, 6, 6), torch.randn(8, 4, 3, 3), torch.randn(5, 144)
        expected = F.conv2d(x, weight, None, 1, 1)
        torch.testing.assert_close(onednn.conv2d(x, weight, None, (1, 1), (1, 1), (1, 1), 1), expected)
        torch.testing.assert_close(onednn.linear(x.flatten(1), rows, None), x.flatten(1) @ rows.t())
    assert packings(weight) == {} and rows not in onednn._PACKED_LINEAR


def test_reloading_the_module_keeps_its_operators():
    """Operator namespaces register once per process; a reload (as notebooks do) must neither fail nor drop them."""
    code = (
        "import gc, importlib; from lerobot.common.policies import onednn as o\n"
        "for _ in range(2): importlib.reload(o); gc.collect()\n"
        "assert o.packed_conv_available() and o.packed_linear_available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_switch_turns_packing_off(monkeypatch):
    monkeypatch.setenv(onednn.ENV_SWITCH, "0")
    x, weight, rows = torch.randn(1, 4, 6, 6), torch.randn(8, 4, 3, 3), torch.randn(5, 144)
    with torch.no_grad():
        torch.testing.assert_close(
            onednn.conv2d(x, weight, None, (1, 1), (1, 1), (1, 1), 1), F.conv2d(x, weight, None, 1, 1)
        )
        torch.testing.assert_close(onednn.linear(x.flatten(1), rows, None), x.flatten(1) @ rows.t())
    assert packings(weight) == {} and rows not in onednn._PACKED_LINEAR
