import pytest
import torch
from torch import nn

from lerobot.common.policies.pretrained import make_adam


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_make_adam_is_fused_on_cpu_and_takes_the_same_steps(cls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    twin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    twin.load_state_dict(model.state_dict())
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters()), "lr": 1e-3}]
    fused = make_adam(cls, groups, lr=1e-2, betas=(0.95, 0.999), weight_decay=1e-4)
    plain = cls(
        [{"params": list(twin[0].parameters())}, {"params": list(twin[2].parameters()), "lr": 1e-3}],
        lr=1e-2,
        betas=(0.95, 0.999),
        weight_decay=1e-4,
    )
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    x = torch.randn(32, 8)
    for _ in range(5):
        for net, opt in ((model, fused), (twin, plain)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert fused.state_dict()["state"].keys() == plain.state_dict()["state"].keys()
