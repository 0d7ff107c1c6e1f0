"""Inference through TorchScript recordings: same outputs as the modules, recorded only when it is safe."""

import copy
import gc
import logging
import weakref

import pytest
import torch
from torch import nn

from lerobot.common.policies import inference_trace
from lerobot.common.policies.factory import make_policy, make_policy_config
from lerobot.common.policies.inference_trace import inference_runner
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation


def traces_of(module: nn.Module) -> dict:
    recordings = inference_trace._RECORDINGS.get(module)
    return {} if recordings is None else recordings.traces


def tiny_policy(name: str) -> nn.Module:
    torch.manual_seed(0)
    config = make_policy_config(name, **TINY_CONFIGS[name])
    policy = make_policy(config, dataset_stats=make_stats({**config.input_shapes, **config.output_shapes}))
    return policy.eval()


def traced_module(policy: nn.Module) -> nn.Module:
    return policy.model if policy.name == "act" else policy.diffusion.unet


@pytest.mark.parametrize("inference_mode", [False, True])  # control_robot.py runs policies in inference mode
@pytest.mark.parametrize("name", ["act", "diffusion"])
def test_policies_replay_recordings_with_the_modules_outputs(name, inference_mode, monkeypatch):
    policy = tiny_policy(name)
    observations = [observation(make_batch(policy.config, seed=i), policy.config) for i in range(4)]

    def chunks() -> list[torch.Tensor]:
        out = []
        for obs in observations:
            policy.reset()
            torch.manual_seed(1)  # Diffusion's initial noise
            with torch.inference_mode(inference_mode):
                out.append(policy.select_action(obs))
        return out

    monkeypatch.setenv(inference_trace.ENV_SWITCH, "0")
    eager = chunks()
    assert traces_of(traced_module(policy)) == {}
    monkeypatch.delenv(inference_trace.ENV_SWITCH)
    replayed = chunks()
    traces = traces_of(traced_module(policy))
    assert len(traces) == 1 and None not in traces.values()  # recorded on the second call, then replayed
    for a, b in zip(eager, replayed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class Affine(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x)) * 2


def run(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return inference_runner(module, (x,))(x)


def test_a_signature_is_recorded_on_its_second_call_and_replayed_after():
    module, x = Affine().eval(), torch.randn(2, 4)
    run(module, x)
    assert traces_of(module) == {}  # the first call runs the module (and is never recorded)
    run(module, x)
    (trace,) = traces_of(module).values()
    assert trace is not None and trace != module.forward
    with torch.no_grad():
        assert inference_runner(module, (x,)) is trace
        assert inference_runner(module, (torch.randn(5, 4),)) == module.forward  # a new shape: first call
    torch.testing.assert_close(run(module, torch.ones(2, 4)), module(torch.ones(2, 4)), rtol=0, atol=0)


def test_an_in_place_weight_update_starts_over():
    module, x = Affine().eval(), torch.randn(2, 4)
    for _ in range(3):
        run(module, x)
    assert len(traces_of(module)) == 1
    with torch.no_grad():
        module.linear.weight.add_(1.0)  # as an optimiser step or load_state_dict would
    out = run(module, x)
    assert traces_of(module) == {}
    torch.testing.assert_close(out, module(x), rtol=0, atol=0)
    run(module, x)
    torch.testing.assert_close(run(module, x), module(x), rtol=0, atol=0)  # recorded again, with new weights


@pytest.mark.parametrize("mode", ["training", "grad", "autocast", "switch_off"])
def test_modes_where_a_recording_could_differ_run_the_module(mode, monkeypatch):
    module, x = Affine().eval(), torch.randn(2, 4)
    if mode == "training":
        module.linear.train()  # one submodule in training mode is enough
    if mode == "switch_off":
        monkeypatch.setenv(inference_trace.ENV_SWITCH, "0")
    for _ in range(3):
        if mode == "grad":
            runner = inference_runner(module, (x,))
        elif mode == "autocast":
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                runner = inference_runner(module, (x,))
        else:
            with torch.no_grad():
                runner = inference_runner(module, (x,))
        assert runner == module.forward
    assert traces_of(module) == {}


class Noisy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)  # a replay draws new numbers: never equal to the module's run


class NotTraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return x * 2, None  # tracing cannot return None


@pytest.mark.parametrize("module_class", [Noisy, NotTraceable])
def test_recordings_that_differ_or_fail_fall_back_to_the_module_with_a_warning(module_class, caplog):
    module, x = module_class().eval(), torch.randn(3)
    with caplog.at_level(logging.WARNING):
        for _ in range(4):
            with torch.no_grad():
                assert inference_runner(module, (x,)) == module.forward
    assert list(traces_of(module).values()) == [None]
    warnings = [r for r in caplog.records if module_class.__name__ in r.getMessage()]
    assert len(warnings) == 1  # once per signature, not at every call


def test_inputs_a_trace_cannot_take_run_the_module():
    module = Affine().eval()
    with torch.no_grad():
        for _ in range(3):
            assert inference_runner(module, (torch.randn(2, 4), "a string")) == module.forward
    assert traces_of(module) == {}


def test_recordings_do_not_keep_modules_alive_or_follow_copies():
    policy = tiny_policy("act")
    obs = observation(make_batch(policy.config), policy.config)
    for _ in range(2):
        policy.reset()
        policy.select_action(obs)
    assert len(traces_of(policy.model)) == 1
    twin = copy.deepcopy(policy)  # a copy has its own parameters, so its own recordings
    assert traces_of(twin.model) == {}
    twin.reset()
    policy.reset()
    torch.testing.assert_close(twin.select_action(obs), policy.select_action(obs), rtol=0, atol=0)
    model = weakref.ref(policy.model)
    del policy, twin
    gc.collect()
    assert model() is None  # so the weak-keyed entry of its recordings is gone too


def test_a_unet_with_packed_layers_is_recorded_with_the_packing_operator():
    """Large U-Net layers run from oneDNN-packed weights (onednn.py) through an operator that takes the live
    weight, so the U-Net is recorded too, and replays with the module's outputs."""
    from lerobot.common.policies import onednn
    from lerobot.common.policies.diffusion.unet import DiffusionConditionalUnet1d

    if not onednn.packed_linear_available():
        pytest.skip("this torch has no oneDNN packed matrix product")
    torch.manual_seed(0)
    unet = DiffusionConditionalUnet1d(2, 6, (128, 256), 5, 8, 16, True).eval()  # 256x256x5: packed
    x, steps, cond = torch.randn(1, 8, 2), torch.tensor([7]), torch.randn(1, 6)
    with torch.no_grad():
        expected = unet(x, steps, cond)
        for _ in range(3):
            out = inference_runner(unet, (x, steps, cond))(x, steps, cond)
        (trace,) = traces_of(unet).values()
        assert "lerobot::packed_linear" in str(trace.inlined_graph)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
