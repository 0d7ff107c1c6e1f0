import pytest
import torch
from torch import nn

from lerobot.common.policies.act.modeling_act import MultiheadAttention
from lerobot.common.policies.dropout import LANES, Dropout, dropout, keep_mask, keep_threshold


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_rate_and_lane_independence(p):
    torch.manual_seed(0)
    keep = keep_mask((1000, 4000), p)
    rate = keep_threshold(p) / LANES
    assert keep.dtype == torch.bool and keep.shape == (1000, 4000)
    assert abs(rate - (1 - p)) <= 2**-16
    sigma = (rate * (1 - rate) / keep.numel()) ** 0.5
    assert abs(keep.float().mean().item() - rate) < 6 * sigma
    # The four 16-bit lanes of each 64-bit draw: each kept at the same rate, and uncorrelated with each other.
    lanes = keep.flatten().view(-1, 4).float()
    assert (lanes.mean(0) - rate).abs().max().item() < 6 * sigma * 2
    corr = torch.corrcoef(lanes.T)
    assert (corr - torch.eye(4)).abs().max().item() < 0.01


def test_dropout_is_unbiased_reproducible_and_backpropagates():
    x = torch.ones(500_000, requires_grad=True)
    torch.manual_seed(1)
    y = dropout(x, 0.2, True)
    torch.manual_seed(1)
    assert torch.equal(y, dropout(x, 0.2, True))  # torch.manual_seed reproduces the mask
    kept = y != 0
    scale = LANES / keep_threshold(0.2)
    assert torch.allclose(y[kept], torch.tensor(scale))
    assert abs(y.mean().item() - 1) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d/dx of x * mask * scale, with x = 1
    assert dropout(x, 0.2, False) is x and dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))


def test_dropout_module_matches_nn_dropout_interface():
    module = Dropout(0.3)
    assert isinstance(module, nn.Dropout) and module.state_dict() == {}
    x = torch.randn(64, 64)
    assert torch.equal(module.eval()(x), x)
    out = module.train()(x)
    assert ((out == 0) | torch.isclose(out, x * LANES / keep_threshold(0.3))).all()


def test_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(64, 4, dropout=0.1, batch_first=True).eval()
    ours = MultiheadAttention(64, 4, dropout=0.1).eval()
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    q, kv = torch.randn(3, 7, 64), torch.randn(3, 11, 64)
    pad = torch.zeros(3, 11, dtype=torch.bool)
    pad[:, -3:] = True
    expected = theirs(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
    torch.testing.assert_close(ours(q, kv, kv, key_padding_mask=pad), expected)
    torch.testing.assert_close(ours(q, q, q), theirs(q, q, q, need_weights=False)[0])
    # Training with dropout: the explicit path gives the same result as torch's when nothing is dropped.
    ours.train().dropout = theirs.dropout = 1e-9
    torch.testing.assert_close(
        ours(q, kv, kv, key_padding_mask=pad), theirs.train()(q, kv, kv, key_padding_mask=pad)[0]
    )
