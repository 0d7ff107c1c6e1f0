import json

import pytest
import torch

from lerobot.common.policies.backbone import SpatialSoftmax, SpatialSoftmaxEncoder, center_crop
from lerobot.common.policies.diffusion.configuration_diffusion import LR_SCHEDULERS, DiffusionConfig
from lerobot.common.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import PolicyConfigError
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation

MODES = {"VISUAL": "mean_std", "STATE": "min_max", "ENV": "min_max"}
# Inputs of the tiny configs: one camera + state (PushT), keypoints + state (no camera), two cameras + both.
INPUTS = {
    "camera": {"observation.image": [3, 48, 48], "observation.state": [4]},
    "keypoints": {"observation.environment_state": [6], "observation.state": [4]},
    "two_cameras": {
        "observation.images.top": [3, 48, 48],
        "observation.images.wrist": [3, 48, 48],
        "observation.state": [4],
        "observation.environment_state": [6],
    },
}


def tiny_config(inputs: str = "camera", **overrides) -> DiffusionConfig:
    fields = {**TINY_CONFIGS["diffusion"], "input_shapes": INPUTS[inputs], "input_normalization_modes": MODES}
    return DiffusionConfig(**{**fields, **overrides})


def tiny_policy(inputs: str = "camera", seed: int = 0, **overrides) -> DiffusionPolicy:
    config = tiny_config(inputs, **overrides)
    torch.manual_seed(seed)
    return DiffusionPolicy(config, make_stats({**config.input_shapes, **config.output_shapes}))


def test_defaults_match_the_reference():
    c = DiffusionConfig()
    assert (c.n_obs_steps, c.horizon, c.n_action_steps, c.drop_n_last_frames) == (2, 16, 8, 7)
    assert c.input_shapes == {"observation.image": [3, 96, 96], "observation.state": [2]}
    assert c.output_shapes == {"action": [2]}
    assert c.input_normalization_modes == {"observation.image": "mean_std", "observation.state": "min_max"}
    assert c.output_normalization_modes == {"action": "min_max"}
    assert (c.vision_backbone, c.pretrained_backbone_weights, c.use_group_norm) == ("resnet18", None, True)
    assert (c.crop_shape, c.crop_is_random, c.spatial_softmax_num_keypoints) == ((84, 84), True, 32)
    assert c.use_separate_rgb_encoder_per_camera is False
    assert (c.down_dims, c.kernel_size, c.n_groups) == ((512, 1024, 2048), 5, 8)
    assert (c.diffusion_step_embed_dim, c.use_film_scale_modulation) == (128, True)
    assert (c.noise_scheduler_type, c.num_train_timesteps, c.beta_schedule) == (
        "DDPM",
        100,
        "squaredcos_cap_v2",
    )
    assert (c.beta_start, c.beta_end, c.prediction_type) == (0.0001, 0.02, "epsilon")
    assert (c.clip_sample, c.clip_sample_range, c.num_inference_steps) == (True, 1.0, None)
    assert c.do_mask_loss_for_padding is False
    assert (c.optimizer_lr, c.optimizer_betas, c.optimizer_eps, c.optimizer_weight_decay) == (
        1e-4,
        (0.95, 0.999),
        1e-8,
        1e-6,
    )
    assert (c.scheduler_name, c.scheduler_warmup_steps) == ("cosine", 500)
    assert c.observation_delta_indices == [-1, 0]
    assert c.action_delta_indices == list(range(-1, 15))
    assert c.delta_timestamps(10) == {
        "observation.image": [-0.1, 0.0],
        "observation.state": [-0.1, 0.0],
        "action": [i / 10 for i in range(-1, 15)],
    }


def test_keypoints_variant_config():
    """The reference's diffusion_pusht_keypoints: environment state + state, no camera, DDIM with 10 steps."""
    c = DiffusionConfig(
        input_shapes={"observation.environment_state": [16], "observation.state": [2]},
        input_normalization_modes={
            "observation.environment_state": "min_max",
            "observation.state": "min_max",
        },
        down_dims=(256, 512, 1024),
        noise_scheduler_type="DDIM",
        num_inference_steps=10,
    )
    assert c.image_keys == [] and c.delta_timestamps(10)["observation.environment_state"] == [-0.1, 0.0]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"horizon": 10}, r"divisible by 2 \*\* len\(down_dims\) = 4"),
        ({"n_action_steps": 8}, "past the horizon"),
        ({"n_obs_steps": 0}, "n_obs_steps must be >= 1"),
        ({"crop_shape": (50, 40)}, r"crop_shape \[50, 40\] is larger than camera 'observation.image'"),
        ({"noise_scheduler_type": "DPM"}, "Unknown noise_scheduler_type 'DPM'"),
        ({"prediction_type": "v_prediction"}, "Unknown prediction_type"),
        ({"beta_schedule": "cosine"}, "Unknown beta_schedule"),
        ({"scheduler_name": "cosine_annealing"}, "Unknown scheduler_name 'cosine_annealing'"),
        ({"num_inference_steps": 11}, "between 1 and num_train_timesteps"),
        ({"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}, "use_group_norm=False"),
        ({"vision_backbone": "resnet50"}, "vision_backbone must be one of"),
        ({"down_dims": (16, 30)}, "divisible by n_groups"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"input_shapes": {"observation.velocity": [3]}}, "observation.velocity"),
        ({"input_shapes": {}}, "input_shapes has"),
        ({"output_shapes": {"motor": [3]}}, "output_shapes must be"),
        ({"input_normalization_modes": {"observation.images.top": "mean_std"}}, "neither a feature"),
        ({"drop_n_last_frames": -1}, "drop_n_last_frames must be >= 0"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


def test_cameras_of_different_sizes_need_separate_encoders():
    shapes = {**INPUTS["two_cameras"], "observation.images.wrist": [3, 40, 56]}
    with pytest.raises(ValueError, match="cannot share one encoder"):
        tiny_config("two_cameras", input_shapes=shapes)
    tiny_config("two_cameras", input_shapes=shapes, use_separate_rgb_encoder_per_camera=True)


def test_config_json_round_trip():
    config = tiny_config(optimizer_betas=(0.9, 0.99))
    data = json.loads(json.dumps(config.to_dict()))  # tuples come back as lists
    assert data["type"] == "diffusion" and data["crop_shape"] == [40, 40]
    loaded = DiffusionConfig.from_dict(data)
    assert loaded == config
    assert isinstance(loaded.crop_shape, tuple) and isinstance(loaded.down_dims, tuple)


def test_lr_scheduler_names_are_those_of_diffusers():
    from diffusers.optimization import SchedulerType

    assert set(LR_SCHEDULERS) == {s.value for s in SchedulerType}


@pytest.mark.parametrize(
    "inputs, overrides",
    [
        ("camera", {}),
        ("keypoints", {}),
        ("two_cameras", {}),
        ("two_cameras", {"use_separate_rgb_encoder_per_camera": True}),
        ("two_cameras", {"use_separate_rgb_encoder_per_camera": True, "crop_shape": None}),
        ("camera", {"prediction_type": "sample", "use_film_scale_modulation": False, "down_dims": (16,)}),
    ],
)
def test_forward_backward(inputs, overrides):
    policy = tiny_policy(inputs, **overrides)
    policy.train()
    batch = make_batch(policy.config)
    out = policy(batch)
    assert set(out) == {"loss"} and out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    no_grad = [n for n, p in policy.named_parameters() if p.grad is None]
    assert no_grad == []
    # The spatial softmax sees a 2x2 map, so the backbone really learns (a 1x1 map would give it no gradient).
    backbone_grads = [p.grad.abs().sum() for n, p in policy.named_parameters() if ".backbone." in n]
    assert all(g > 0 for g in backbone_grads)


def test_keypoints_variant_has_no_image_encoder():
    policy = tiny_policy("keypoints").eval()
    assert not hasattr(policy.diffusion, "rgb_encoder")
    # Per observation step: state (4) + environment state (6), for 2 steps.
    assert policy.diffusion.unet.down_modules[0][0].cond_encoder[1].in_features == 8 + 2 * 10
    obs = observation(make_batch(policy.config), policy.config)
    assert policy.select_action(obs).shape == (2, 3)


def test_separate_encoders_per_camera():
    shared = tiny_policy("two_cameras")
    wrist = {**INPUTS["two_cameras"], "observation.images.wrist": [3, 40, 56]}  # another size: own encoder
    separate = tiny_policy("two_cameras", use_separate_rgb_encoder_per_camera=True, input_shapes=wrist)
    assert isinstance(shared.diffusion.rgb_encoder, SpatialSoftmaxEncoder)
    assert len(separate.diffusion.rgb_encoder) == 2
    assert "diffusion.rgb_encoder.1.backbone.0.weight" in separate.state_dict()
    # Two cameras of 2 * 4 keypoint coordinates each, state 4, environment state 6; two steps.
    for policy in (shared, separate):
        assert policy.diffusion.unet.mid_modules[0].cond_encoder[1].in_features == 8 + 2 * (16 + 4 + 6)


@pytest.mark.parametrize("mask", [True, False])
def test_padding_mask(mask):
    """With the mask, padded actions are left out of the mean squared error (they still enter the U-Net, whose
    convolutions mix neighbouring steps, so only the loss terms are masked)."""
    policy = tiny_policy(prediction_type="sample", do_mask_loss_for_padding=mask)
    batch = make_batch(policy.config, seed=1)
    batch["action_is_pad"][0, 5:] = True
    batch["action_is_pad"][1, 7:] = True
    outputs = []
    policy.diffusion.unet.register_forward_hook(lambda module, args, out: outputs.append(out))
    loss = policy(batch)["loss"]
    error = (outputs[0] - policy.normalize_targets(batch)["action"]) ** 2  # the target of "sample" (B, T, A)
    if mask:
        error = error * ~batch["action_is_pad"].unsqueeze(-1)
    torch.testing.assert_close(loss, error.mean())
    if mask:
        all_padded = dict(batch, action_is_pad=torch.ones_like(batch["action_is_pad"]))
        assert policy(all_padded)["loss"] == 0
        with pytest.raises(KeyError, match="action_is_pad"):
            policy({k: v for k, v in batch.items() if k != "action_is_pad"})


def test_select_action_queues(monkeypatch):
    policy = tiny_policy("keypoints").eval()  # n_obs_steps 2, horizon 8, n_action_steps 4
    observations = [observation(make_batch(policy.config, seed=s), policy.config) for s in range(9)]
    histories = []
    chunks = []
    generate = policy.diffusion.generate_actions

    def spy(batch, generator=None):
        histories.append(batch)
        chunks.append(generate(batch, generator))
        return chunks[-1]

    monkeypatch.setattr(policy.diffusion, "generate_actions", spy)
    actions = [policy.select_action(obs) for obs in observations]
    assert len(histories) == 3  # steps 0, 4 and 8
    assert all(a.shape == (2, 3) for a in actions)
    state = policy.normalize_inputs(observations[0])["observation.state"]
    assert histories[0]["observation.state"].shape == (2, 2, 4)
    torch.testing.assert_close(histories[0]["observation.state"], torch.stack([state, state], dim=1))
    for step in (4, 8):  # later calls see the previous and the current observation
        key = "observation.environment_state"
        expected = torch.stack([policy.normalize_inputs(observations[i])[key] for i in (step - 1, step)], 1)
        torch.testing.assert_close(histories[step // 4][key], expected)
    executed = policy.unnormalize_outputs({"action": torch.cat(chunks, dim=1)})["action"]
    for i, action in enumerate(actions):
        torch.testing.assert_close(action, executed[:, i])
    policy.reset()
    policy.select_action(observations[5])
    assert len(histories) == 4  # reset empties both queues
    state = policy.normalize_inputs(observations[5])["observation.state"]
    torch.testing.assert_close(histories[3]["observation.state"], torch.stack([state, state], dim=1))


def test_executed_actions_start_at_the_current_frame(monkeypatch):
    policy = tiny_policy("keypoints", n_obs_steps=3, n_action_steps=2).eval()
    sequence = torch.arange(8.0)[None, :, None].expand(2, 8, 3)  # action i of the sequence = i
    monkeypatch.setattr(policy.diffusion, "conditional_sample", lambda cond, generator=None: sequence)
    history = make_batch(policy.config)
    actions = policy.diffusion.generate_actions(policy.normalize_inputs(history))
    assert actions[0, :, 0].tolist() == [2.0, 3.0]  # indices n_obs_steps - 1 .. + n_action_steps


def oracle_denoiser(policy: DiffusionPolicy, target: torch.Tensor):
    """A U-Net stand-in that predicts exactly what brings every noisy sample back to `target`."""
    scheduler = policy.diffusion.noise_scheduler
    calls = []

    def predict(x, t, global_cond):
        calls.append(int(t[0]))
        if policy.config.prediction_type == "sample":
            return target
        alpha_bar = scheduler.alphas_cumprod[t].to(x)[:, None, None]
        return (x - alpha_bar.sqrt() * target) / (1 - alpha_bar).sqrt()

    return predict, calls


@pytest.mark.parametrize(
    "overrides, expected_steps",
    [
        ({}, list(range(99, -1, -1))),  # DDPM: every training step
        ({"noise_scheduler_type": "DDIM", "num_inference_steps": 10}, list(range(90, -1, -10))),
        (
            {"noise_scheduler_type": "DDIM", "num_inference_steps": 10, "prediction_type": "sample"},
            list(range(90, -1, -10)),
        ),
    ],
)
def test_samplers_recover_what_the_denoiser_predicts(overrides, expected_steps):
    policy = tiny_policy("keypoints", num_train_timesteps=100, **overrides).eval()
    target = torch.rand(2, 8, 3) * 1.6 - 0.8
    predict, calls = oracle_denoiser(policy, target)
    policy.diffusion.denoiser = lambda cond: lambda x, t: predict(x, torch.full((2,), t), cond)
    sample = policy.diffusion.conditional_sample(torch.zeros(2, 20))
    torch.testing.assert_close(sample, target, atol=1e-4, rtol=0)
    assert calls == expected_steps


def test_ddim_with_10_steps_vs_ddpm():
    ddpm = tiny_policy("keypoints", num_train_timesteps=100, seed=0).eval()
    ddim = tiny_policy(
        "keypoints", num_train_timesteps=100, seed=0, noise_scheduler_type="DDIM", num_inference_steps=10
    )
    ddim.eval()
    obs = observation(make_batch(ddpm.config), ddpm.config)
    counts = {}
    for name, policy in (("ddpm", ddpm), ("ddim", ddim)):
        calls = []
        denoiser = policy.diffusion.denoiser

        def counting(cond, _denoiser=denoiser, _calls=calls):
            denoise = _denoiser(cond)
            return lambda x, t: _calls.append(t) or denoise(x, t)

        policy.diffusion.denoiser = counting
        action = policy.select_action(obs)
        counts[name] = len(calls)
        # Clipping keeps the denoised actions in [-1, 1] before unnormalising, i.e. within the action stats.
        stats = policy.unnormalize_outputs.buffer_action
        assert torch.all(action >= stats.min - 1e-5) and torch.all(action <= stats.max + 1e-5)
    assert counts == {"ddpm": 100, "ddim": 10}


def test_random_crop_in_training_center_crop_in_eval():
    encoder = tiny_policy().diffusion.rgb_encoder
    seen = []
    encoder.backbone = torch.nn.Sequential(torch.nn.Identity())
    encoder.backbone.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    encoder.pool = torch.nn.Module()
    encoder.pool.forward = lambda x: x.new_zeros(x.shape[0], 4, 2)  # (N, K, 2) keypoints
    images = torch.rand(6, 3, 48, 48)
    encoder.eval()
    encoder(images)
    encoder(images)
    assert seen[0].shape == (6, 3, 40, 40)
    assert torch.equal(seen[0], center_crop(images, (40, 40))) and torch.equal(seen[1], seen[0])
    encoder.train()
    torch.manual_seed(0)
    encoder(images)
    assert seen[2].shape == (6, 3, 40, 40) and not torch.equal(seen[2], seen[0])
    assert not all(torch.equal(seen[2][0], seen[2][i]) for i in range(1, 6))  # a window per image
    encoder.crop_is_random = False
    encoder(images)
    assert torch.equal(seen[3], seen[0])


def test_spatial_softmax_finds_the_peak():
    pool = SpatialSoftmax(in_channels=1, map_size=(3, 5), num_keypoints=1)
    torch.nn.init.ones_(pool.nets.weight)
    torch.nn.init.zeros_(pool.nets.bias)
    features = torch.zeros(1, 1, 3, 5)
    features[0, 0, 2, 1] = 100.0  # bottom row, second column
    torch.testing.assert_close(pool(features), torch.tensor([[[-0.5, 1.0]]]))  # (x, y) in [-1, 1]
    assert pool.pos_grid.shape == (15, 2)


def test_same_seed_same_result():
    a, b = tiny_policy(seed=3), tiny_policy(seed=3)
    batch = make_batch(a.config)
    torch.manual_seed(0)
    loss_a = a(batch)["loss"]
    torch.manual_seed(0)
    assert torch.equal(b(batch)["loss"], loss_a)
    a.eval(), b.eval()
    obs = observation(batch, a.config)
    torch.manual_seed(1)
    action = a.select_action(obs)
    torch.manual_seed(1)
    assert torch.equal(b.select_action(obs), action)
    assert not torch.equal(tiny_policy(seed=4)(batch)["loss"], loss_a)


def test_overfits_a_fixed_batch():
    policy = tiny_policy("keypoints", prediction_type="sample", down_dims=(32, 64), num_train_timesteps=20)
    policy.train()
    batch = make_batch(policy.config, batch_size=4)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(150):
        loss = policy(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.02 * first, losses[::15]


def test_optimizer_and_lr_schedule():
    policy = tiny_policy(scheduler_warmup_steps=10)
    optimizer = policy.make_optimizer()
    assert isinstance(optimizer, torch.optim.Adam)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        1e-4,
        (0.95, 0.999),
        1e-8,
        1e-6,
    )
    assert len(group["params"]) == len(list(policy.parameters()))
    scheduler = policy.make_lr_scheduler(optimizer, num_training_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(0.5e-4) and lrs[10] == pytest.approx(1e-4)
    assert lrs[60] == pytest.approx(0.5e-4) and lrs[-1] < 1e-7  # cosine decay to 0 after warm-up
    assert tiny_policy(scheduler_name=None).make_lr_scheduler(optimizer, 10) is None


def test_state_dict_uses_reference_names():
    policy = tiny_policy()
    shapes = {k: list(v.shape) for k, v in policy.state_dict().items()}
    for name, shape in {
        "normalize_inputs.buffer_observation_image.mean": [3, 1, 1],
        "normalize_inputs.buffer_observation_state.min": [4],
        "normalize_targets.buffer_action.max": [3],
        "unnormalize_outputs.buffer_action.min": [3],
        "diffusion.rgb_encoder.backbone.0.weight": [64, 3, 7, 7],
        "diffusion.rgb_encoder.backbone.1.weight": [64],  # group norm: no running statistics
        "diffusion.rgb_encoder.backbone.4.0.conv1.weight": [64, 64, 3, 3],
        "diffusion.rgb_encoder.backbone.7.1.bn2.bias": [512],
        "diffusion.rgb_encoder.backbone.5.0.downsample.1.weight": [128],
        "diffusion.rgb_encoder.pool.pos_grid": [4, 2],
        "diffusion.rgb_encoder.pool.nets.weight": [4, 512, 1, 1],
        "diffusion.rgb_encoder.out.weight": [8, 8],
        "diffusion.unet.diffusion_step_encoder.1.weight": [32, 8],
        "diffusion.unet.diffusion_step_encoder.3.weight": [8, 32],
        "diffusion.unet.down_modules.0.0.conv1.block.0.weight": [16, 3, 3],
        "diffusion.unet.down_modules.0.0.conv1.block.1.weight": [16],
        "diffusion.unet.down_modules.0.0.cond_encoder.1.weight": [32, 8 + 2 * (4 + 8)],
        "diffusion.unet.down_modules.0.0.residual_conv.weight": [16, 3, 1],
        "diffusion.unet.down_modules.0.2.weight": [16, 16, 3],
        "diffusion.unet.mid_modules.1.conv2.block.0.weight": [32, 32, 3],
        "diffusion.unet.up_modules.0.0.conv1.block.0.weight": [16, 64, 3],
        "diffusion.unet.up_modules.0.2.weight": [16, 16, 4],
        "diffusion.unet.final_conv.0.block.0.weight": [16, 16, 3],
        "diffusion.unet.final_conv.1.weight": [3, 16, 1],
    }.items():
        assert shapes.get(name) == shape, name
    assert not any("running_mean" in k for k in shapes)
    batch_norm = tiny_policy(use_group_norm=False).state_dict()
    assert "diffusion.rgb_encoder.backbone.1.running_mean" in batch_norm


def test_save_and_load_round_trip(tmp_path):
    policy = tiny_policy().eval()
    obs = observation(make_batch(policy.config), policy.config)
    policy.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "diffusion" and saved["down_dims"] == [16, 32] and saved["horizon"] == 8
    loaded = DiffusionPolicy.from_pretrained(tmp_path)
    assert not loaded.training and loaded.config == policy.config
    for p in (policy, loaded):
        torch.manual_seed(0)
        p.reset()
        p.actions = [p.select_action(obs) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(policy.actions, loaded.actions))
    assert isinstance(load_policy(tmp_path), DiffusionPolicy)


def test_loads_reference_style_config(tmp_path):
    """A seed-era config.json: no type, no optimiser/scheduler fields, no drop_n_last_frames, no
    use_separate_rgb_encoder_per_camera (added later), lists for tuples."""
    policy = tiny_policy()
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ["type", "drop_n_last_frames", "use_separate_rgb_encoder_per_camera", "scheduler_name"]:
        del config[key]
    for key in [k for k in config if k.startswith("optimizer_")]:
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert DiffusionPolicy.from_pretrained(tmp_path).config == policy.config
    with pytest.raises(ValueError, match="policy_type"):
        load_policy(tmp_path)
    assert isinstance(load_policy(tmp_path, policy_type="diffusion"), DiffusionPolicy)
    config["num_inference_step"] = 10
    with pytest.raises(PolicyConfigError, match="did you mean 'num_inference_steps'"):
        DiffusionConfig.from_dict(config)


def test_bad_batches():
    policy = tiny_policy()
    batch = make_batch(policy.config)
    with pytest.raises(ValueError, match=r"\['action'\] has shape \[2, 7, 3\].*horizon=8"):
        policy(dict(batch, action=batch["action"][:, :7]))
    with pytest.raises(ValueError, match=r"'observation.state' has shape \[2, 1, 4\].*delta_timestamps"):
        policy(dict(batch, **{"observation.state": batch["observation.state"][:, :1]}))
    with pytest.raises(KeyError, match="observation.image"):
        policy.select_action({"observation.state": batch["observation.state"][:, -1]})
    policy.eval()
    with pytest.raises(ValueError, match="no time axis"):
        policy.select_action({k: batch[k] for k in policy.config.input_shapes})


@pytest.mark.parametrize("batch, channels, kernel", [(1, 64, 5), (8, 512, 5), (4, 1024, 3), (8, 512, 1)])
def test_unet_conv1d_equals_torch_conv1d(batch, channels, kernel):
    """The U-Net's Conv1d (a matrix product on CPU above a size, see unet.py) against nn.Conv1d, values and
    gradients, on both sides of the size threshold."""
    from torch import nn

    from lerobot.common.policies.diffusion.unet import Conv1d

    torch.manual_seed(0)
    ours = Conv1d(channels, 48, kernel)
    theirs = nn.Conv1d(channels, 48, kernel, padding=kernel // 2)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(batch, channels, 6, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, ref = ours(x), theirs(x_ref)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    (ref * torch.linspace(-1, 1, ref.numel()).reshape(ref.shape)).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="odd kernel"):
        Conv1d(4, 4, 4)


def test_unet_conv1d_under_autocast_caches_its_low_precision_weight():
    """Inference under CPU autocast (use_amp): bf16 products within bf16 rounding of float32, with the weight
    cast once and cast again after the weight changes."""
    from lerobot.common.policies.diffusion.unet import Conv1d

    torch.manual_seed(0)
    conv = Conv1d(64, 32, 5)
    x = torch.randn(1, 64, 8)
    with torch.no_grad():
        expected = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
            cached = conv._cast_weight(torch.bfloat16)
            assert out.dtype == torch.bfloat16 and cached.dtype == torch.bfloat16
            conv(x)
            assert conv._cast_weight(torch.bfloat16) is cached  # reused, not cast again
        torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
        conv.weight.mul_(2)  # an optimiser step or load_state_dict changes the weight in place
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(
                conv(x).float(), conv.bias[:, None] + 2 * (expected - conv.bias[:, None]), rtol=0.05, atol=0.1
            )
    with torch.autocast("cpu", dtype=torch.bfloat16):  # with autograd: autocast's own casts, gradients flow
        conv(x.requires_grad_(True)).float().sum().backward()
    assert conv.weight.grad is not None


def test_unet_conv1d_inference_packs_large_weights_for_onednn():
    """Float32 CPU inference of a layer of at least PACKED_MIN_WEIGHTS weights: oneDNN's product with the weight
    packed once, packed again after the weight changes, dropped in training mode; values as nn.Conv1d's."""
    from torch.nn import functional as F

    from lerobot.common.policies import onednn
    from lerobot.common.policies.diffusion.unet import PACKED_MIN_WEIGHTS, Conv1d

    if not onednn.packed_linear_available():
        pytest.skip("this torch has no oneDNN packed matrix product")
    torch.manual_seed(0)
    conv = Conv1d(512, 128, 5)
    assert conv.weight.numel() >= PACKED_MIN_WEIGHTS
    x = torch.randn(1, 512, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            conv(x), F.conv1d(x, conv.weight, conv.bias, padding=2), rtol=1e-4, atol=1e-4
        )
        packed = onednn._PACKED_LINEAR[conv.weight]
        conv(torch.randn(3, 512, 8))  # another batch size and length: the same packed weight
        assert onednn._PACKED_LINEAR[conv.weight] is packed
        conv.weight.mul_(2)
        torch.testing.assert_close(
            conv(x), F.conv1d(x, conv.weight, conv.bias, padding=2), rtol=1e-4, atol=1e-4
        )
        assert onednn._PACKED_LINEAR[conv.weight] is not packed
    conv.train()
    assert conv.weight not in onednn._PACKED_LINEAR
    conv(x).sum().backward()  # training: autograd through the plain weight
    assert conv.weight.grad is not None


@pytest.mark.parametrize("length", [1, 4, 7])
@pytest.mark.parametrize("batch", [1, 3])
def test_unet_resampling_layers_equal_torch_in_inference(batch, length):
    """Large down- and up-sampling layers run from packed weights in CPU inference (a matrix product, and an
    overlap-add for the transposed convolution): same shapes and values as torch's layers, odd lengths too."""
    from torch import nn

    from lerobot.common.policies.diffusion.unet import PACKED_MIN_WEIGHTS, Downsample1d, Upsample1d

    torch.manual_seed(0)
    down, up = Downsample1d(512), Upsample1d(512)
    assert min(down.weight.numel(), up.weight.numel()) >= PACKED_MIN_WEIGHTS
    torch_down = nn.Conv1d(512, 512, 3, stride=2, padding=1)
    torch_up = nn.ConvTranspose1d(512, 512, 4, stride=2, padding=1)
    torch_down.load_state_dict(down.state_dict())
    torch_up.load_state_dict(up.state_dict())
    x = torch.randn(batch, 512, length)
    with torch.no_grad():
        torch.testing.assert_close(down(x), torch_down(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(up(x), torch_up(x), rtol=1e-4, atol=1e-5)
    assert down(x).grad_fn is not None  # with autograd: torch's own layers


def test_unet_sampling_film_equals_film_and_follows_weight_changes():
    """`sampling_film` splits each block's FiLM Linear into a per-run and a per-step part and keeps the
    gathered weights and the per-step parts: same values as `film`, recomputed once a weight changes in place,
    dropped in training mode."""
    from lerobot.common.policies.diffusion.unet import _FilmTable

    unet = tiny_policy("keypoints").diffusion.unet.eval()
    step_dim = unet.diffusion_step_encoder[1].in_features
    global_cond = torch.randn(2, unet.res_blocks()[0].cond_encoder[1].in_features - step_dim)
    with torch.no_grad():
        film = unet.sampling_film(global_cond)
        for t in (0, 37, 99, 37):
            torch.testing.assert_close(
                film(t), unet.film(torch.full((2,), t), global_cond), rtol=1e-5, atol=1e-6
            )
        table = unet.__dict__[_FilmTable.ATTRIBUTE]
        assert sorted(table.steps) == [0, 37, 99]
        unet.sampling_film(global_cond)
        assert unet.__dict__[_FilmTable.ATTRIBUTE] is table  # unchanged weights: kept
        for weight in (unet.mid_modules[0].cond_encoder[1].weight, unet.diffusion_step_encoder[1].weight):
            weight.mul_(1.5)
            film = unet.sampling_film(global_cond)
            assert unet.__dict__[_FilmTable.ATTRIBUTE] is not table
            table = unet.__dict__[_FilmTable.ATTRIBUTE]
            torch.testing.assert_close(
                film(5), unet.film(torch.full((2,), 5), global_cond), rtol=1e-5, atol=1e-6
            )
    unet.train()
    assert _FilmTable.ATTRIBUTE not in unet.__dict__


def test_sampling_equals_running_the_unet_step_by_step():
    """`conditional_sample` (FiLM table, recording) against the plain loop over `unet(x, t, global_cond)`."""
    policy = tiny_policy("keypoints", num_train_timesteps=100).eval()
    model = policy.diffusion
    step_dim = model.unet.diffusion_step_encoder[1].in_features
    global_cond = torch.randn(2, model.unet.res_blocks()[0].cond_encoder[1].in_features - step_dim)
    for _ in range(2):  # the second run replays a recording
        sample = model.conditional_sample(global_cond, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    expected = torch.randn(sample.shape, generator=generator)
    with torch.no_grad():
        for t in model.noise_scheduler.timesteps:
            pred = model.unet(expected, torch.full((2,), int(t)), global_cond)
            expected = model.noise_scheduler.step(pred, t, expected, generator=generator).prev_sample
    torch.testing.assert_close(sample, expected, rtol=1e-4, atol=1e-5)
