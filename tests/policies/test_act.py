import json
import math
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import save_file

from lerobot.common.policies.act.configuration_act import ACTConfig
from lerobot.common.policies.act.modeling_act import (
    ACTPolicy,
    SinusoidalPositionEmbedding2d,
    TemporalEnsembler,
    sinusoidal_positions,
)
from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import CheckpointMismatchError, PolicyConfigError
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation
from tests.policies.test_backbone import torchvision_resnet18_state_dict

# Inputs of the tiny configs: env-state only (as in the quickstart), one camera + state, two cameras.
INPUTS = {
    "env_state": {"observation.environment_state": [6], "observation.state": [4]},
    "camera": {"observation.images.top": [3, 32, 32], "observation.state": [4]},
    "two_cameras": {"observation.images.top": [3, 32, 32], "observation.images.wrist": [3, 32, 64]},
}


def tiny_config(inputs: str = "env_state", **overrides) -> ACTConfig:
    fields = {**TINY_CONFIGS["act"], "input_shapes": INPUTS[inputs]}
    fields["input_normalization_modes"] = {"VISUAL": "mean_std", "STATE": "mean_std", "ENV": "min_max"}
    return ACTConfig(**{**fields, **overrides})


def tiny_policy(inputs: str = "env_state", seed: int = 0, **overrides) -> ACTPolicy:
    config = tiny_config(inputs, **overrides)
    torch.manual_seed(seed)
    return ACTPolicy(config, make_stats({**config.input_shapes, **config.output_shapes}))


def test_defaults_match_the_reference():
    c = ACTConfig()
    assert (c.n_obs_steps, c.chunk_size, c.n_action_steps) == (1, 100, 100)
    assert (c.dim_model, c.n_heads, c.dim_feedforward, c.feedforward_activation) == (512, 8, 3200, "relu")
    assert (c.n_encoder_layers, c.n_decoder_layers, c.n_vae_encoder_layers) == (4, 1, 4)
    assert (c.use_vae, c.latent_dim, c.kl_weight, c.dropout) == (True, 32, 10.0, 0.1)
    assert (c.vision_backbone, c.pretrained_backbone_weights) == (
        "resnet18",
        "ResNet18_Weights.IMAGENET1K_V1",
    )
    assert (c.replace_final_stride_with_dilation, c.pre_norm, c.temporal_ensemble_coeff) == (
        False,
        False,
        None,
    )
    assert (c.optimizer_lr, c.optimizer_lr_backbone, c.optimizer_weight_decay) == (1e-5, 1e-5, 1e-4)
    assert c.input_normalization_modes == {
        "observation.images.top": "mean_std",
        "observation.state": "mean_std",
    }
    assert c.output_normalization_modes == {"action": "mean_std"}
    assert c.delta_timestamps(50) == {"action": [i / 50 for i in range(100)]}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"n_action_steps": 11}, "between 1 and chunk_size"),
        ({"temporal_ensemble_coeff": 0.01}, "n_action_steps=1"),
        ({"n_obs_steps": 2}, "n_obs_steps must be 1"),
        ({"input_shapes": {"observation.state": [4]}}, "at least one camera"),
        ({"input_shapes": {"observation.environment_state": [2], "observation.velocity": [3]}}, "velocity"),
        ({"output_shapes": {"motor": [3]}}, "'action'"),
        (
            {"input_shapes": {"observation.images.a": [3, 32, 32], "observation.images.b": [3, 64, 32]}},
            "height",
        ),
        ({"n_heads": 3}, "divisible by n_heads"),
        ({"vision_backbone": "resnet50"}, "resnet18"),
        ({"feedforward_activation": "swish"}, "relu"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


@pytest.mark.parametrize("inputs", ["env_state", "camera", "two_cameras"])
def test_forward_backward(inputs):
    policy = tiny_policy(inputs)
    policy.train()
    batch = make_batch(policy.config)
    out = policy(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["kld_loss"] >= 0
    torch.testing.assert_close(
        out["loss"].item(), out["l1_loss"] + 10 * out["kld_loss"], rtol=1e-4, atol=1e-5
    )
    out["loss"].backward()
    no_grad = [n for n, p in policy.named_parameters() if p.grad is None]
    assert no_grad == []
    policy.eval()
    assert "kld_loss" not in policy(batch)  # no posterior outside training: latent = 0


def test_padded_actions_do_not_change_the_loss():
    policy = tiny_policy(dropout=0.0)
    batch = make_batch(policy.config)
    batch["action_is_pad"][:, 6:] = True
    changed = dict(batch, action=batch["action"].clone())
    changed["action"][:, 6:] = 1000.0
    torch.manual_seed(1)  # the same latent sample for both
    loss = policy(batch)["loss"]
    torch.manual_seed(1)
    torch.testing.assert_close(policy(changed)["loss"], loss)
    torch.manual_seed(1)
    assert not torch.allclose(
        policy(dict(changed, action_is_pad=torch.zeros_like(batch["action_is_pad"])))["loss"], loss
    )


@pytest.mark.parametrize("inputs", ["env_state", "camera"])
def test_batch_is_not_mutated(inputs):
    policy = tiny_policy(inputs)
    batch = make_batch(policy.config)
    before = {k: v.clone() for k, v in batch.items()}
    policy(batch)
    policy.eval()
    policy.select_action(observation(batch, policy.config))
    assert batch.keys() == before.keys()
    assert all(torch.equal(batch[k], before[k]) for k in batch)


def test_select_action_runs_the_model_once_per_n_action_steps(monkeypatch):
    policy = tiny_policy().eval()
    obs = observation(make_batch(policy.config, batch_size=3), policy.config)
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (3, 10, 3)
    calls = []
    predict = policy.predict_action_chunk
    monkeypatch.setattr(policy, "predict_action_chunk", lambda *a, **k: calls.append(1) or predict(*a, **k))
    actions = [policy.select_action(obs) for _ in range(12)]
    assert all(a.shape == (3, 3) for a in actions)
    assert len(calls) == 3  # steps 0, 5 and 10
    for i in range(5):  # the queue hands out the first n_action_steps actions of each chunk, in order
        torch.testing.assert_close(actions[i], chunk[:, i])
        torch.testing.assert_close(actions[5 + i], chunk[:, i])
    policy.reset()
    policy.select_action(obs)
    assert len(calls) == 4  # reset empties the queue


def test_actions_are_unnormalised():
    policy = tiny_policy().eval()
    obs = observation(make_batch(policy.config), policy.config)
    normalised, _ = policy.model(policy.normalize_inputs(obs))
    stats = policy.unnormalize_outputs.buffer_action
    torch.testing.assert_close(policy.predict_action_chunk(obs), normalised * (stats.std + 1e-8) + stats.mean)


def test_bad_batches():
    policy = tiny_policy()
    batch = make_batch(policy.config)
    with pytest.raises(ValueError, match="delta_timestamps"):
        policy(dict(batch, action=batch["action"][:, :1]))
    with pytest.raises(KeyError, match="observation.environment_state"):
        policy.select_action({"observation.state": batch["observation.state"]})


def test_same_seed_same_result():
    a, b = tiny_policy("camera", seed=3), tiny_policy("camera", seed=3)
    batch = make_batch(a.config)
    torch.manual_seed(0)
    loss_a = a(batch)["loss"]
    torch.manual_seed(0)
    loss_b = b(batch)["loss"]
    assert torch.equal(loss_a, loss_b)
    assert not torch.equal(tiny_policy("camera", seed=4)(batch)["loss"], loss_a)


def test_overfits_a_fixed_batch():
    policy = tiny_policy(dropout=0.0)
    policy.train()
    batch = make_batch(policy.config, batch_size=4)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=3e-3, foreach=True)
    losses = []
    for _ in range(150):
        out = policy(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["l1_loss"])
    assert losses[-1] < 0.3 * losses[0], losses[::20]


def test_optimizer_groups():
    policy = tiny_policy("camera", optimizer_lr_backbone=1e-6)
    rest, backbone = policy.get_optim_params()
    assert backbone["lr"] == 1e-6 and "lr" not in rest
    backbone_ids = {id(p) for p in policy.model.backbone.parameters()}
    assert {id(p) for p in backbone["params"]} == backbone_ids
    assert len(rest["params"]) + len(backbone["params"]) == len(list(policy.parameters()))
    optimizer = policy.make_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["lr"] for g in optimizer.param_groups] == [policy.config.optimizer_lr, 1e-6]


def test_state_dict_uses_reference_names():
    names = set(tiny_policy("camera").state_dict())
    for name in [
        "normalize_inputs.buffer_observation_images_top.mean",
        "normalize_targets.buffer_action.std",
        "unnormalize_outputs.buffer_action.mean",
        "model.backbone.layer2.0.downsample.1.running_var",
        "model.vae_encoder.layers.0.self_attn.in_proj_weight",
        "model.vae_encoder_pos_enc",
        "model.vae_encoder_cls_embed.weight",
        "model.encoder.layers.0.linear1.weight",
        "model.decoder.layers.0.multihead_attn.out_proj.weight",
        "model.decoder.layers.0.norm3.weight",
        "model.decoder.norm.weight",
        "model.encoder_img_feat_input_proj.weight",
        "model.encoder_1d_feature_pos_embed.weight",
        "model.decoder_pos_embed.weight",
        "model.action_head.weight",
    ]:
        assert name in names, name


def test_save_and_load_round_trip(tmp_path):
    policy = tiny_policy("camera").eval()
    obs = observation(make_batch(policy.config), policy.config)
    policy.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "act" and saved["chunk_size"] == 10
    assert saved["input_shapes"]["observation.images.top"] == [3, 32, 32]
    assert "library_name: lerobot" in (tmp_path / "README.md").read_text()

    loaded = ACTPolicy.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == policy.config
    assert torch.equal(loaded.select_action(obs), policy.select_action(obs))
    assert torch.equal(load_policy(tmp_path).predict_action_chunk(obs), policy.predict_action_chunk(obs))


def test_checkpoint_with_torchvision_enum_loads_without_the_weights_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_hub"))
    policy = tiny_policy("camera")
    policy.config.pretrained_backbone_weights = "ResNet18_Weights.IMAGENET1K_V1"
    policy.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match="does not download"):
        ACTPolicy(policy.config)  # a fresh policy would need the ImageNet weights
    loaded = ACTPolicy.from_pretrained(tmp_path / "ckpt")  # the checkpoint holds the backbone
    assert loaded.config.pretrained_backbone_weights == "ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(loaded.model.backbone.conv1.weight, policy.model.backbone.conv1.weight)


def test_pretrained_backbone_weights_from_a_file(tmp_path):
    sd = torchvision_resnet18_state_dict()
    save_file(sd, tmp_path / "resnet18.safetensors")
    policy = tiny_policy("camera", pretrained_backbone_weights=str(tmp_path / "resnet18.safetensors"))
    assert torch.equal(policy.model.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_loads_reference_style_config(tmp_path):
    policy = tiny_policy()
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["type"], config["optimizer_lr"]  # reference checkpoints have neither
    config["temporal_ensemble_momentum"] = None  # a key of the reference's real-robot configs
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert ACTPolicy.from_pretrained(tmp_path).config == policy.config
    with pytest.raises(ValueError, match="policy_type"):
        load_policy(tmp_path)
    assert isinstance(load_policy(tmp_path, policy_type="act"), ACTPolicy)
    with pytest.raises(PolicyConfigError, match="obsolete"):
        ACTConfig.from_dict({**config, "temporal_ensemble_momentum": 0.9})
    config["chunk_sise"] = 10
    with pytest.raises(PolicyConfigError, match="did you mean 'chunk_size'"):
        ACTConfig.from_dict(config)


def test_loading_checks_weights_against_config(tmp_path):
    tiny_policy().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["dim_feedforward"] = 48
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="linear1.weight"):
        ACTPolicy.from_pretrained(tmp_path)


def test_sinusoidal_embeddings():
    pe = sinusoidal_positions(7, 6)
    assert pe.shape == (7, 6)
    assert math.isclose(pe[3, 2].item(), math.sin(3 / 10000 ** (2 / 6)), rel_tol=1e-6)
    assert math.isclose(pe[3, 3].item(), math.cos(3 / 10000 ** (2 / 6)), rel_tol=1e-6)
    pe2d = SinusoidalPositionEmbedding2d(4)(torch.zeros(2, 5, 3, 2))
    assert pe2d.shape == (1, 8, 3, 2)
    y, x = 2, 1  # row 3 of 3 and column 2 of 2, scaled to 2 pi * coordinate / size
    assert math.isclose(pe2d[0, 0, y, x].item(), math.sin(2 * math.pi * 3 / 3), abs_tol=1e-5)
    assert math.isclose(pe2d[0, 3, y, x].item(), math.cos(2 * math.pi / 10000**0.5), abs_tol=1e-5)
    assert math.isclose(pe2d[0, 4, y, x].item(), math.sin(2 * math.pi * 2 / 2), abs_tol=1e-5)
    assert torch.equal(pe2d[0, :4, y, 0], pe2d[0, :4, y, 1])  # row channels ignore the column


def offline_ensemble(chunks: list[torch.Tensor], coeff: float) -> list[torch.Tensor]:
    """For every step t: sum_i w_i * chunks[s_i][:, t - s_i] / sum_i w_i over the chunks s_0 < s_1 < ...
    that cover t, with w_i = exp(-coeff * i) (i = 0 the oldest)."""
    chunk_size = chunks[0].shape[1]
    out = []
    for t in range(len(chunks)):
        sources = [s for s in range(len(chunks)) if s <= t < s + chunk_size]
        weights = [math.exp(-coeff * i) for i in range(len(sources))]
        total = sum(w * chunks[s][:, t - s] for w, s in zip(weights, sources))
        out.append(total / sum(weights))
    return out


def test_temporal_ensembler_matches_offline_average():
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(2, 4, 3, generator=g) for _ in range(9)]
    ensembler = TemporalEnsembler(coeff=0.5, chunk_size=4)
    online = [ensembler.update(c) for c in chunks]
    for a, b in zip(online, offline_ensemble(chunks, 0.5)):
        torch.testing.assert_close(a, b)


def test_policy_temporal_ensembling(monkeypatch):
    policy = tiny_policy(n_action_steps=1, temporal_ensemble_coeff=0.01).eval()
    observations = [observation(make_batch(policy.config, seed=s), policy.config) for s in range(14)]
    chunks = [policy.predict_action_chunk(obs) for obs in observations]
    policy.reset()
    actions = [policy.select_action(obs) for obs in observations]
    for a, b in zip(actions, offline_ensemble(chunks, 0.01)):
        torch.testing.assert_close(a, b)
    policy.reset()  # a new episode starts from scratch
    torch.testing.assert_close(policy.select_action(observations[5]), chunks[5][:, 0])


def test_asdict_is_json_serialisable():
    json.dumps(asdict(ACTConfig()))
