import json
import math
from dataclasses import asdict

import pytest
import torch
from torch.utils.data import default_collate

from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import PolicyConfigError
from lerobot.common.policies.tdmpc.configuration_tdmpc import TDMPCConfig
from lerobot.common.policies.tdmpc.modeling_tdmpc import TDMPCPolicy, min_of_two, random_shift
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation

INPUTS = {
    "image_state": {"observation.image": [3, 40, 40], "observation.state": [4]},
    "env_state": {"observation.environment_state": [6], "observation.state": [4]},
    "state": {"observation.state": [4]},
}
LOSSES = ["consistency_loss", "reward_loss", "Q_value_loss", "V_value_loss", "pi_loss"]


def tiny_config(inputs: str = "image_state", **overrides) -> TDMPCConfig:
    return TDMPCConfig(**{**TINY_CONFIGS["tdmpc"], "input_shapes": INPUTS[inputs], **overrides})


def tiny_policy(inputs: str = "image_state", seed: int = 0, **overrides) -> TDMPCPolicy:
    config = tiny_config(inputs, **overrides)
    torch.manual_seed(seed)
    return TDMPCPolicy(config, make_stats({**config.input_shapes, **config.output_shapes}))


def test_defaults_match_the_reference():
    c = TDMPCConfig()
    assert (c.n_action_repeats, c.horizon, c.n_action_steps) == (2, 5, 1)
    assert c.input_shapes == {"observation.image": [3, 84, 84], "observation.state": [4]}
    assert c.output_shapes == {"action": [4]}
    assert c.input_normalization_modes == {} and c.output_normalization_modes == {"action": "min_max"}
    assert (c.image_encoder_hidden_dim, c.state_encoder_hidden_dim, c.latent_dim) == (32, 256, 50)
    assert (c.q_ensemble_size, c.mlp_dim, c.discount) == (5, 512, 0.9)
    assert (c.use_mpc, c.cem_iterations, c.max_std, c.min_std) == (True, 6, 2.0, 0.05)
    assert (c.n_gaussian_samples, c.n_pi_samples, c.uncertainty_regularizer_coeff) == (512, 51, 1.0)
    assert (c.n_elites, c.elite_weighting_temperature, c.gaussian_mean_momentum) == (50, 0.5, 0.1)
    assert c.max_random_shift_ratio == 0.0476
    assert (c.reward_coeff, c.expectile_weight, c.value_coeff, c.consistency_coeff) == (0.5, 0.9, 0.1, 20.0)
    assert (c.advantage_scaling, c.pi_coeff, c.temporal_decay_coeff) == (3.0, 0.5, 0.5)
    assert (c.target_model_momentum, c.optimizer_lr) == (0.995, 3e-4)


def test_delta_timestamps():
    deltas = TDMPCConfig().delta_timestamps(15)
    assert deltas == {
        "observation.image": [i / 15 for i in range(6)],
        "observation.state": [i / 15 for i in range(6)],
        "action": [i / 15 for i in range(5)],
        "next.reward": [i / 15 for i in range(5)],
    }


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"input_shapes": {"observation.images.a": [3, 40, 40], "observation.images.b": [3, 40, 40]}},
            "at most one camera",
        ),
        ({"input_shapes": {"observation.image": [3, 40, 48]}}, "square"),
        ({"input_shapes": {"observation.image": [3, 32, 32]}}, "at least 39x39"),
        ({"input_shapes": {"observation.velocity": [3]}}, "observation.velocity"),
        ({"input_shapes": {}}, "takes 'observation.state'"),
        ({"output_normalization_modes": {"action": "mean_std"}}, "min_max"),
        ({"output_normalization_modes": {}}, "min_max"),
        ({"output_shapes": {"motor": [3]}}, "'action'"),
        ({"n_action_steps": 2}, "n_action_repeats=1"),
        ({"n_action_steps": 2, "n_action_repeats": 1, "use_mpc": False}, "use_mpc=True"),
        ({"n_action_steps": 4, "n_action_repeats": 1}, "<= horizon"),
        ({"n_gaussian_samples": 0}, "n_gaussian_samples"),
        ({"n_elites": 21}, "n_elites"),
        ({"q_ensemble_size": 1}, "q_ensemble_size"),
        ({"min_std": 3.0}, "min_std"),
        ({"expectile_weight": 1.5}, "expectile_weight"),
        ({"horizon": 0}, "horizon"),
        ({"max_random_shift_ratio": 0.5}, "max_random_shift_ratio"),
        ({"input_normalization_modes": {"observation.image": "zscore"}}, "zscore"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


def test_config_accepts_the_reference_forms():
    # The reference's config.json has `input_normalization_modes: null`; train.py passes modes by type.
    config = TDMPCConfig.from_dict({**asdict(TDMPCConfig()), "input_normalization_modes": None})
    assert config == TDMPCConfig()
    assert TDMPCConfig(output_normalization_modes={"ACTION": "min_max"}).output_normalization_modes
    with pytest.raises(PolicyConfigError, match="did you mean 'horizon'"):
        TDMPCConfig.from_dict({"horizn": 3})


def test_state_dict_names_follow_the_reference():
    inputs = {
        "observation.image": [3, 84, 84],
        "observation.state": [4],
        "observation.environment_state": [6],
    }
    policy = TDMPCPolicy(TDMPCConfig(input_shapes=inputs))
    shapes = {k: list(v.shape) for k, v in policy.state_dict().items()}
    # Names and shapes as in the reference lerobot (model._*, model_target._*).
    assert shapes["model._encoder.image_enc_layers.0.weight"] == [32, 3, 7, 7]
    assert shapes["model._encoder.image_enc_layers.9.weight"] == [50, 288]
    assert shapes["model._encoder.state_enc_layers.2.weight"] == [50, 256]
    assert shapes["model._encoder.env_state_enc_layers.0.weight"] == [256, 6]
    assert shapes["model._dynamics.7.weight"] == [50]
    assert shapes["model._reward.6.weight"] == [1, 512]
    assert shapes["model._pi.6.weight"] == [4, 512]
    assert shapes["model._Qs.4.5.weight"] == [1, 512]
    assert shapes["model._V.3.weight"] == [512, 512]
    assert shapes["normalize_targets.buffer_action.min"] == [4]
    model_keys = [k for k in shapes if k.startswith("model.")]
    assert [
        k.replace("model_target.", "model.") for k in shapes if k.startswith("model_target.")
    ] == model_keys
    # 104 tensors and 2,749,315 numbers per copy, as counted on the reference 0.6.1 with these inputs.
    assert len(model_keys) == 104
    assert sum(math.prod(shapes[k]) for k in model_keys) == 2_749_315


def _reference_weights_and_batch(policy: TDMPCPolicy) -> dict[str, torch.Tensor]:
    """Deterministic weights (by sorted name) and a batch, as used to record the reference numbers below."""
    g = torch.Generator().manual_seed(0)
    state = policy.state_dict()
    with torch.no_grad():
        for name in sorted(k for k in state if k.startswith("model")):
            state[name].copy_(0.3 * torch.randn(state[name].shape, generator=g))
    b, h = 2, 3
    batch = {
        "observation.image": torch.rand(b, h + 1, 3, 40, 40, generator=g),
        "observation.state": torch.randn(b, h + 1, 4, generator=g),
        "action": torch.rand(b, h, 3, generator=g) * 2 - 1,
        "next.reward": torch.randn(b, h, generator=g),
    }
    obs_pad = torch.tensor([[False] * 4, [False, False, True, True]])
    batch["observation.state_is_pad"] = obs_pad
    # As a dataset pads: o_1 is the episode's last frame, so a_1 and r_1 are real, o_2 is not.
    batch["action_is_pad"] = obs_pad[:, :-1].clone()
    batch["next.reward_is_pad"] = obs_pad[:, :-1].clone()
    return batch


def test_losses_and_plan_match_the_reference_implementation():
    """Numbers recorded with the reference lerobot 0.6.1 TDMPCPolicy given the same weights and batch (two
    Q functions, no augmentation and min_std=0, so that no random draw differs between the two)."""
    config = tiny_config(q_ensemble_size=2, max_random_shift_ratio=0.0, min_std=0.0)
    identity = {"action": {"min": -torch.ones(3), "max": torch.ones(3)}}
    policy = TDMPCPolicy(config, identity).train()
    batch = _reference_weights_and_batch(policy)
    out = policy(batch)
    expected = [0.016636217013001442, 2.1082661151885986, 7.422760009765625, 0.2208678126335144]
    expected.append(0.0171531792730093)
    torch.testing.assert_close([out[k] for k in LOSSES], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"].item(), 2.159796953201294, rtol=1e-5, atol=1e-6)

    policy.eval()
    z = policy.model.encode({k: batch[k][:, 0] for k in config.input_shapes})
    torch.manual_seed(0)
    plan = policy.plan(z)
    expected_first_action = torch.tensor([[-0.55922639, -0.80395615, -0.94508928], [-1.0, -0.62474614, -1.0]])
    torch.testing.assert_close(plan[0], expected_first_action, rtol=1e-4, atol=1e-4)
    expected_mean_last = torch.tensor(
        [[-0.44801238, -0.11735061, -0.44783053], [-0.31833038, -0.4025906, -0.47668198]]
    )
    torch.testing.assert_close(policy._prev_mean[-1], expected_mean_last, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inputs", list(INPUTS))
def test_forward_backward(inputs):
    policy = tiny_policy(inputs).train()
    batch = make_batch(policy.config, batch_size=3)
    before = {k: v.clone() for k, v in batch.items()}
    out = policy(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert all(math.isfinite(out[k]) and out[k] >= 0 for k in LOSSES)
    c = policy.config
    total = (
        c.consistency_coeff * out["consistency_loss"]
        + c.reward_coeff * out["reward_loss"]
        + c.value_coeff * (out["Q_value_loss"] + out["V_value_loss"])
        + c.pi_coeff * out["pi_loss"]
    )
    torch.testing.assert_close(out["loss"].item(), total, rtol=1e-5, atol=1e-6)
    out["loss"].backward()
    assert [n for n, p in policy.model.named_parameters() if p.grad is None] == []
    assert all(p.grad is None and not p.requires_grad for p in policy.model_target.parameters())
    assert batch.keys() == before.keys() and all(torch.equal(batch[k], before[k]) for k in batch)


def test_padded_steps_do_not_change_the_loss():
    policy = tiny_policy()
    batch = make_batch(policy.config, batch_size=3)
    # Sample 0's episode ends at o_1 (as a dataset pads it): a_1 and r_1 are its last action and reward;
    # a_2, r_2, o_2 and o_3 are padding (copies of the edge frame).
    batch["action_is_pad"][0, 2:] = True
    batch["next.reward_is_pad"][0, 2:] = True
    for key in policy.config.input_shapes:
        batch[f"{key}_is_pad"][0, 2:] = True
    # Sample 2 has no real frame at all (its current observation is padding): it adds nothing.
    for key in policy.config.input_shapes:
        batch[f"{key}_is_pad"][2] = True
    changed = {k: v.clone() for k, v in batch.items()}
    for key in ["action", "next.reward", *policy.config.input_shapes]:
        changed[key][2] = torch.rand_like(changed[key][2])
    changed["action"][0, 2:] = 0.7
    changed["next.reward"][0, 2:] = 100.0
    changed["observation.state"][0, 2:] = -50.0
    changed["observation.image"][0, 2:] = 0.0

    def loss(b):
        torch.manual_seed(1)  # the same augmentation and Q pairs
        return policy(b)

    reference = loss(batch)
    got = loss(changed)
    for key in ["loss", *LOSSES]:
        torch.testing.assert_close(got[key], reference[key])
    unmasked = {k: v for k, v in changed.items() if not k.endswith("_is_pad")}
    assert loss(unmasked)["reward_loss"] > reference["reward_loss"] + 100
    # Batches without masks (e.g. from an env that does not pad) count every step.
    no_masks = {k: v for k, v in batch.items() if not k.endswith("_is_pad")}
    all_real = {**no_masks, **{k: torch.zeros_like(v) for k, v in batch.items() if k.endswith("_is_pad")}}
    torch.testing.assert_close(loss(no_masks)["loss"], loss(all_real)["loss"])


def test_training_batch_errors():
    policy = tiny_policy()
    batch = make_batch(policy.config)
    with pytest.raises(KeyError, match="next.reward"):
        policy({k: v for k, v in batch.items() if k != "next.reward"})
    with pytest.raises(ValueError, match="delta_timestamps"):
        policy({**batch, "action": batch["action"][:, :2]})
    with pytest.raises(ValueError, match=r"'observation.state' has shape \[2, 4\]"):
        policy({**batch, "observation.state": batch["observation.state"][:, 0]})
    with pytest.raises(KeyError, match="observation.image"):
        policy.select_action({"observation.state": batch["observation.state"][:, 0]})


def _count_plans(policy: TDMPCPolicy) -> list:
    chunks = []
    predict = policy.predict_action_chunk

    def counted(batch):
        chunks.append(predict(batch))
        return chunks[-1]

    policy.predict_action_chunk = counted
    return chunks


@pytest.mark.parametrize("use_mpc", [True, False])
def test_action_repeats(use_mpc):
    policy = tiny_policy(use_mpc=use_mpc, n_action_repeats=2).eval()
    obs = observation(make_batch(policy.config), policy.config)
    chunks = _count_plans(policy)
    actions = [policy.select_action(obs) for _ in range(5)]
    assert len(chunks) == 3  # calls 0, 2 and 4 plan
    assert chunks[0].shape == (2, policy.config.horizon if use_mpc else 1, 3)
    assert all(a.shape == (2, 3) for a in actions)
    assert torch.equal(actions[0], actions[1]) and torch.equal(actions[0], chunks[0][:, 0])
    stats = make_stats({**policy.config.input_shapes, **policy.config.output_shapes})["action"]
    for a in actions:  # clamped to [-1, 1] before un-normalising
        assert (a >= stats["min"] - 1e-5).all() and (a <= stats["max"] + 1e-5).all()


def test_several_action_steps_per_plan():
    policy = tiny_policy(n_action_repeats=1, n_action_steps=2).eval()
    obs = observation(make_batch(policy.config), policy.config)
    chunks = _count_plans(policy)
    actions = [policy.select_action(obs) for _ in range(4)]
    assert len(chunks) == 2
    assert torch.equal(torch.stack(actions[:2], 1), chunks[0][:, :2])
    assert torch.equal(torch.stack(actions[2:], 1), chunks[1][:, :2])


def test_without_mpc_the_policy_prior_acts():
    policy = tiny_policy(use_mpc=False, n_action_repeats=1).eval()
    obs = observation(make_batch(policy.config), policy.config)
    action = policy.select_action(obs)
    expected = torch.tanh(policy.model._pi(policy.model.encode(obs)))
    expected = policy.unnormalize_outputs({"action": expected})["action"]
    torch.testing.assert_close(action, expected)
    policy.reset()
    assert torch.equal(policy.select_action(obs), action)  # no sampling without MPC


def test_plan_warm_starts_from_the_previous_mean_and_reset_forgets_it():
    # With momentum 1 the Gaussian's mean never moves, so the kept mean shows where planning started.
    policy = tiny_policy(gaussian_mean_momentum=1.0).eval()
    obs = observation(make_batch(policy.config), policy.config)
    z = policy.model.encode(obs)
    policy.plan(z)
    torch.testing.assert_close(policy._prev_mean, torch.zeros(3, 2, 3))  # cold start: zeros
    previous = torch.rand(3, 2, 3) * 2 - 1
    policy._prev_mean = previous
    policy.plan(z)
    torch.testing.assert_close(policy._prev_mean, torch.cat([previous[1:], torch.zeros(1, 2, 3)]))
    policy.select_action(obs)
    assert policy._prev_mean is not None and policy._action_queue
    policy.reset()
    assert policy._prev_mean is None and not policy._action_queue


def test_cem_finds_the_best_action_sequence(monkeypatch):
    """With a known value function, MPPI/CEM concentrates on its maximum."""
    policy = tiny_policy(n_gaussian_samples=64, n_pi_samples=0, n_elites=8, cem_iterations=6).eval()
    target = torch.tensor([0.5, -0.3, 0.2])

    def value(z, actions):  # actions (H, N, B, A) -> (N, B): best at `target` for every step
        return -((actions - target) ** 2).sum((0, -1))

    monkeypatch.setattr(policy, "estimate_value", value)
    torch.manual_seed(0)
    plan = policy.plan(torch.zeros(2, policy.config.latent_dim))
    assert plan.shape == (3, 2, 3)
    assert (plan - target).abs().max() < 0.2
    assert (policy._prev_mean - target).abs().max() < 0.1


def test_estimate_value_formula():
    policy = tiny_policy(q_ensemble_size=2, min_std=0.0).eval()
    with torch.no_grad():
        for p in policy.model.parameters():  # the reward and Q heads start at zero
            p.add_(0.3 * torch.randn_like(p))
    m, c = policy.model, policy.config
    z = torch.rand(5, 2, c.latent_dim)
    actions = torch.rand(c.horizon, 5, 2, 3) * 2 - 1
    expected, zt = torch.zeros(5, 2), z
    for t in range(c.horizon):
        qs = m.Qs(zt, actions[t])
        expected += c.discount**t * (m.latent_dynamics_and_reward(zt, actions[t])[1] - qs.std(0))
        zt = m.latent_dynamics(zt, actions[t])
    qs = m.Qs(zt, m.pi(zt))
    expected += c.discount**c.horizon * (qs.min(0).values - qs.std(0))
    torch.testing.assert_close(policy.estimate_value(z, actions), expected)


def test_min_of_two_picks_two_distinct_members():
    qs = torch.tensor([[3.0], [1.0], [2.0]])
    seen = {min_of_two(qs).item() for _ in range(50)}
    assert seen == {1.0, 2.0}  # never 3 (it would need the same member twice)


def test_ema_update_moves_the_target_by_the_momentum():
    policy = tiny_policy(target_model_momentum=0.9)
    online, target = dict(policy.model.named_parameters()), dict(policy.model_target.named_parameters())
    assert all(torch.equal(online[k], target[k]) for k in online)  # the target starts as a copy
    with torch.no_grad():
        for p in online.values():
            p.add_(torch.randn_like(p))
    old_target = {k: v.clone() for k, v in target.items()}
    policy.update()
    for k in online:
        torch.testing.assert_close(target[k], 0.9 * old_target[k] + 0.1 * online[k])


def test_same_seed_same_result():
    a, b, c = tiny_policy(seed=0).eval(), tiny_policy(seed=0).eval(), tiny_policy(seed=1).eval()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.model._pi[0].weight, c.model._pi[0].weight)
    batch = make_batch(a.config)
    obs = observation(batch, a.config)
    results = []
    for policy in (a, b):
        torch.manual_seed(3)
        results.append((policy.train()(batch)["loss"], policy.eval().select_action(obs)))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_overfits_a_small_batch():
    policy = tiny_policy("env_state", optimizer_lr=3e-3).train()
    batch = make_batch(policy.config, batch_size=8)
    stats = make_stats({**policy.config.input_shapes, **policy.config.output_shapes})["action"]
    batch["action"] = stats["min"] + (stats["max"] - stats["min"]) * torch.rand(batch["action"].shape)
    optimizer = policy.make_optimizer()
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {
        id(p) for p in policy.model.parameters()
    }
    losses = []
    for _ in range(150):
        out = policy(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        policy.update()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.15 * losses[0], (losses[0], losses[-1])


def test_save_and_load_give_identical_actions(tmp_path):
    policy = tiny_policy().eval()
    obs = observation(make_batch(policy.config), policy.config)
    policy.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "tdmpc" and saved["horizon"] == 3
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, TDMPCPolicy) and loaded.config == policy.config
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in policy.state_dict().items())
    for _ in range(2):
        torch.manual_seed(0)
        expected = [policy.select_action(obs) for _ in range(3)]
        torch.manual_seed(0)
        assert all(torch.equal(loaded.select_action(obs), e) for e in expected)
        policy.reset()
        loaded.reset()


def test_random_shift_is_a_whole_pixel_translation():
    images = torch.rand(6, 2, 10, 10)
    assert random_shift(images, 0.0) is images
    shifted = random_shift(images, 0.2)  # pad 2 pixels: offsets 0..4
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for i in range(6):
        crops = [padded[i, :, dy : dy + 10, dx : dx + 10] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(shifted[i], crop) for crop in crops)
    torch.manual_seed(0)
    assert not torch.equal(random_shift(images, 0.2), images)


def test_online_rollouts_and_offline_samples_mix_in_one_batch():
    """Batches of train.py's online phase: OnlineBuffer items (same keys as dataset items) mixed with offline."""
    from lerobot.common.training.online import OnlineBuffer

    policy = tiny_policy("env_state").train()
    config, fps = policy.config, 10
    buffer = OnlineBuffer({k: [round(t * fps) for t in v] for k, v in config.delta_timestamps(fps).items()})
    n = 5  # shorter than horizon + 1 at the end: padded steps
    buffer.add_episode(
        {
            "observation.state": torch.randn(n, 4),
            "observation.environment_state": torch.randn(n, 6),
            "action": torch.rand(n, 3),
            "next.reward": torch.rand(n),
            "next.done": torch.arange(n) == n - 1,
        }
    )
    offline = make_batch(config, batch_size=2)
    offline_items = [{k: v[i] for k, v in offline.items()} for i in range(2)]
    online_items = [{k: v for k, v in buffer[i].items() if k in offline} for i in (0, 3)]
    batch = default_collate(offline_items + online_items)
    assert batch["action_is_pad"][3].tolist() == [False, False, True]
    out = policy(batch)
    assert torch.isfinite(out["loss"]) and all(math.isfinite(out[k]) for k in LOSSES)


def test_real_xarm_batch():
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
    from tests.conftest import require_shared_data

    root = require_shared_data("lerobot_v1.3", "datasets", "xarm_lift_medium")
    inputs = {"observation.image": [3, 84, 84], "observation.state": [4]}
    config = tiny_config(input_shapes=inputs, output_shapes={"action": [4]})
    dataset = LeRobotDataset(
        "lerobot/xarm_lift_medium",
        root=root,
        delta_timestamps=config.delta_timestamps(15),
        decoded_frame_cache=False,
    )
    policy = TDMPCPolicy(config, dataset.stats)
    batch = default_collate(
        [dataset[i] for i in (0, 12, 22)]
    )  # frame 22: the episode ends within the horizon
    assert batch["observation.state_is_pad"][2].any()
    out = policy.train()(batch)
    assert torch.isfinite(out["loss"])
    action = policy.eval().select_action({k: batch[k][:, 0] for k in config.input_shapes})
    low, high = dataset.stats["action"]["min"], dataset.stats["action"]["max"]
    assert action.shape == (3, 4) and ((action >= low - 1e-5) & (action <= high + 1e-5)).all()
