import json
import math

import pytest
import torch
from torch.nn import functional as F

from lerobot.common.policies.backbone import SpatialSoftmax
from lerobot.common.policies.factory import load_policy
from lerobot.common.policies.pretrained import PolicyConfigError
from lerobot.common.policies.vqbet.configuration_vqbet import VQBeTConfig
from lerobot.common.policies.vqbet.modeling_vqbet import VQBeTPolicy, focal_loss
from lerobot.common.policies.vqbet.vqvae import EMACodebook, ResidualVQ
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation

VQVAE = "vqbet.action_head.vqvae_model."
# Parameter counts of the reference's default (PushT) model, measured on lerobot 0.6.1.
REFERENCE_RGB_ENCODER_PARAMS = 11_197_088
REFERENCE_TOTAL_PARAMS = 37_515_530

pytestmark = pytest.mark.filterwarnings("ignore:VQ-BeT is predicting actions before its VQ-VAE is trained")


def tiny_config(**overrides) -> VQBeTConfig:
    return VQBeTConfig(**{**TINY_CONFIGS["vqbet"], **overrides})


def tiny_policy(seed: int = 0, **overrides) -> VQBeTPolicy:
    config = tiny_config(**overrides)
    torch.manual_seed(seed)
    return VQBeTPolicy(config, make_stats({**config.input_shapes, **config.output_shapes}))


def finish_phase_1(policy: VQBeTPolicy, batch: dict) -> None:
    policy.train()
    while not policy.vqvae_trained:
        policy(batch)


def test_defaults_match_the_reference():
    c = VQBeTConfig()
    assert (c.n_obs_steps, c.n_action_pred_token, c.action_chunk_size) == (5, 3, 5)
    assert c.input_shapes == {"observation.image": [3, 96, 96], "observation.state": [2]}
    assert c.output_shapes == {"action": [2]}
    assert c.input_normalization_modes == {"observation.image": "mean_std", "observation.state": "min_max"}
    assert c.output_normalization_modes == {"action": "min_max"}
    assert (c.vision_backbone, c.crop_shape, c.crop_is_random) == ("resnet18", (84, 84), True)
    assert (c.pretrained_backbone_weights, c.use_group_norm, c.spatial_softmax_num_keypoints) == (
        None,
        True,
        32,
    )
    assert (c.n_vqvae_training_steps, c.vqvae_n_embed, c.vqvae_embedding_dim, c.vqvae_enc_hidden_dim) == (
        20000,
        16,
        256,
        128,
    )
    assert (c.gpt_block_size, c.gpt_input_dim, c.gpt_output_dim) == (500, 512, 512)
    assert (c.gpt_n_layer, c.gpt_n_head, c.gpt_hidden_dim, c.dropout) == (8, 8, 512, 0.1)
    assert (c.offset_loss_weight, c.primary_code_loss_weight, c.secondary_code_loss_weight) == (
        10000.0,
        5.0,
        0.5,
    )
    assert (c.bet_softmax_temperature, c.sequentially_select) == (0.1, False)
    assert (c.optimizer_lr, c.optimizer_betas, c.optimizer_eps, c.optimizer_weight_decay) == (
        1e-4,
        (0.95, 0.999),
        1e-8,
        1e-6,
    )
    assert (c.optimizer_vqvae_lr, c.optimizer_vqvae_weight_decay) == (1e-3, 1e-4)
    assert (c.optimizer_bet_lr, c.optimizer_bet_weight_decay, c.optimizer_bet_betas) == (
        5.5e-5,
        2e-4,
        (0.9, 0.999),
    )
    assert c.scheduler_warmup_steps == 500
    obs = [i / 10 for i in range(-4, 1)]
    assert c.delta_timestamps(10) == {
        "observation.image": obs,
        "observation.state": obs,
        "action": [i / 10 for i in range(-4, 7)],
    }
    # The reference's PushT yaml predicts 7 tokens: actions from t-4 to t+10.
    assert VQBeTConfig(n_action_pred_token=7).action_delta_indices == list(range(-4, 11))


def test_default_model_size_matches_the_reference():
    policy = VQBeTPolicy(VQBeTConfig())
    assert sum(p.numel() for p in policy.vqbet.rgb_encoder.parameters()) == REFERENCE_RGB_ENCODER_PARAMS
    assert sum(p.numel() for p in policy.parameters()) == REFERENCE_TOTAL_PARAMS
    shapes = {k: list(v.shape) for k, v in policy.state_dict().items()}
    for name, shape in {
        "vqbet.action_token": [1, 1, 512],
        "vqbet.select_target_actions_indices": [7, 5],
        "vqbet.rgb_encoder.backbone.0.weight": [64, 3, 7, 7],
        "vqbet.rgb_encoder.backbone.4.0.bn1.weight": [64],
        "vqbet.rgb_encoder.backbone.7.1.conv2.weight": [512, 512, 3, 3],
        "vqbet.rgb_encoder.pool.pos_grid": [9, 2],
        "vqbet.rgb_encoder.pool.nets.weight": [32, 512, 1, 1],
        "vqbet.rgb_encoder.out.weight": [64, 64],
        "vqbet.state_projector.0.weight": [512, 2],
        "vqbet.rgb_feature_projector.0.weight": [512, 64],
        "vqbet.policy.transformer.wte.weight": [512, 512],
        "vqbet.policy.transformer.wpe.weight": [500, 512],
        "vqbet.policy.transformer.h.7.attn.bias": [1, 1, 500, 500],
        "vqbet.policy.transformer.h.0.attn.c_attn.weight": [1536, 512],
        "vqbet.policy.transformer.h.0.mlp.2.weight": [512, 2048],
        "vqbet.policy.transformer.ln_f.bias": [512],
        "vqbet.policy.lm_head.weight": [512, 512],
        VQVAE + "discretized": [],
        VQVAE + "optimized_steps": [],
        VQVAE + "vq_layer.freeze_codebook": [],
        VQVAE + "vq_layer.layers.1._codebook.initted": [1],
        VQVAE + "vq_layer.layers.1._codebook.cluster_size": [1, 16],
        VQVAE + "vq_layer.layers.0._codebook.embed_avg": [1, 16, 256],
        VQVAE + "vq_layer.layers.0._codebook.embed": [1, 16, 256],
        VQVAE + "encoder.4.weight": [256, 128],
        VQVAE + "decoder.4.weight": [10, 128],
        "vqbet.action_head.map_to_cbet_preds_bin.0.weight": [32, 512],
        "vqbet.action_head.map_to_cbet_preds_offset.0.weight": [320, 512],
        "normalize_inputs.buffer_observation_state.min": [2],
        "unnormalize_outputs.buffer_action.max": [2],
    }.items():
        assert shapes.get(name) == shape, name


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"input_shapes": {"observation.image": [3, 40, 40]}}, "needs 'observation.state'"),
        ({"input_shapes": {"observation.state": [4]}}, "at least one camera"),
        (
            {
                "input_shapes": {
                    "observation.image": [3, 40, 40],
                    "observation.state": [4],
                    "observation.env": [2],
                }
            },
            "does not know",
        ),
        (
            {
                "input_shapes": {
                    "observation.images.a": [3, 40, 40],
                    "observation.images.b": [3, 48, 40],
                    "observation.state": [4],
                },
                "input_normalization_modes": {},
            },
            "same shape",
        ),
        ({"input_shapes": {"observation.image": [1, 40, 40], "observation.state": [4]}}, "RGB"),
        ({"crop_shape": (48, 36)}, "does not fit"),
        ({"crop_shape": (36,)}, "height, width"),
        ({"output_shapes": {"motor": [3]}}, "'action'"),
        ({"vision_backbone": "resnet50"}, "resnet18"),
        ({"pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1"}, "use_group_norm"),
        ({"gpt_n_head": 3}, "divisible by gpt_n_head"),
        ({"gpt_block_size": 6}, "sees 7 tokens"),
        ({"n_obs_steps": 0}, "positive integer"),
        ({"n_vqvae_training_steps": 0}, "positive integer"),
        ({"bet_softmax_temperature": 0.0}, "> 0"),
        ({"dropout": 1.0}, "dropout"),
        ({"optimizer_betas": (0.9,)}, "optimizer_betas"),
        ({"input_normalization_modes": {"observation.images.top": "mean_std"}}, "observation.images.top"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**fields)


def test_config_json_round_trip(tmp_path):
    config = tiny_config(crop_shape=[36, 32], optimizer_betas=[0.9, 0.99])
    assert config.crop_shape == (36, 32) and config.optimizer_betas == (0.9, 0.99)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert VQBeTConfig.from_json(path) == config

    # A reference config.json: no "type" nor optimiser fields, and the inert `mlp_hidden_dim` key.
    saved = json.loads(path.read_text())
    del saved["type"], saved["optimizer_bet_lr"]
    saved["mlp_hidden_dim"] = 1024
    assert VQBeTConfig.from_dict(saved).optimizer_bet_lr == 5.5e-5
    with pytest.raises(PolicyConfigError, match="did you mean 'action_chunk_size'"):
        VQBeTConfig.from_dict({**saved, "action_chunk_sise": 3})


def test_phase_1_trains_only_the_vqvae():
    policy = tiny_policy()
    policy.train()
    batch = make_batch(policy.config)
    codebook = policy.vqvae.vq_layer.layers[0]._codebook.embed.clone()
    out = policy(batch)
    out["loss"].backward()
    assert {"recon_l1_error", "commitment_loss", "n_different_codes", "n_different_combinations"} <= set(out)
    assert out["vqvae_steps_done"] == 1 and not policy.vqvae_trained
    with_grad = {n for n, p in policy.named_parameters() if p.grad is not None}
    assert with_grad == {n for n, _ in policy.named_parameters() if n.startswith(VQVAE)}
    assert not torch.equal(policy.vqvae.vq_layer.layers[0]._codebook.embed, codebook)  # EMA update

    # The loss covers every window of action_chunk_size actions; evaluation neither counts nor updates.
    policy.eval()
    codebook = policy.vqvae.vq_layer.layers[0]._codebook.embed.clone()
    actions = policy.normalize_targets(batch)["action"]  # (B, 4, A)
    windows = torch.cat([actions[:, j : j + 2] for j in range(3)])
    expected, _ = policy.vqvae.loss(windows)
    torch.testing.assert_close(policy(batch)["loss"], expected)
    assert int(policy.vqvae.optimized_steps) == 1
    assert torch.equal(policy.vqvae.vq_layer.layers[0]._codebook.embed, codebook)


def test_phase_2_freezes_the_vqvae():
    policy = tiny_policy()
    batch = make_batch(policy.config)
    for step in range(3):
        assert not policy.vqvae_trained
        policy.train()
        assert policy(batch)["vqvae_steps_done"] == step + 1
    assert policy.vqvae_trained and bool(policy.vqvae.vq_layer.freeze_codebook)

    vqvae_state = {k: v.clone() for k, v in policy.vqvae.state_dict().items()}
    policy.zero_grad(set_to_none=True)
    out = policy(batch)
    out["loss"].backward()
    assert all(not p.requires_grad and p.grad is None for p in policy.vqvae.parameters())
    others = [(n, p) for n, p in policy.named_parameters() if not n.startswith(VQVAE)]
    assert [n for n, p in others if p.grad is None] == []
    assert all(torch.equal(v, policy.vqvae.state_dict()[k]) for k, v in vqvae_state.items())
    assert math.isclose(
        out["loss"].item(), out["classification_loss"] + 1e4 * out["offset_loss"], rel_tol=1e-5
    )
    assert math.isclose(
        out["classification_loss"],
        5 * out["primary_code_loss"] + 0.5 * out["secondary_code_loss"],
        rel_tol=1e-5,
    )
    assert 0 <= out["equal_primary_code_rate"] <= 1 and out["action_error_max"] >= out["offset_action_error"]


def test_phase_counter_survives_save_and_load(tmp_path):
    policy = tiny_policy()
    batch = make_batch(policy.config)
    policy.train()
    policy(batch)
    policy(batch)  # 2 of the 3 VQ-VAE steps
    policy.save_pretrained(tmp_path / "phase1")
    loaded = VQBeTPolicy.from_pretrained(tmp_path / "phase1")
    assert int(loaded.vqvae.optimized_steps) == 2 and not loaded.vqvae_trained
    assert all(p.requires_grad for p in loaded.vqvae.parameters())
    loaded.train()
    assert "recon_l1_error" in loaded(batch)  # the last VQ-VAE step
    assert loaded.vqvae_trained and "offset_loss" in loaded(batch)

    loaded.save_pretrained(tmp_path / "phase2")
    resumed = load_policy(tmp_path / "phase2")
    assert resumed.vqvae_trained and not any(p.requires_grad for p in resumed.vqvae.parameters())
    fresh = tiny_policy()
    fresh.load_state_dict(resumed.state_dict())  # loading into a phase-1 policy switches it to phase 2
    assert fresh.vqvae_trained and not any(p.requires_grad for p in fresh.vqvae.parameters())


def test_reference_checkpoints_without_a_step_counter_load():
    trained = tiny_policy()
    finish_phase_1(trained, make_batch(trained.config))
    for source, expected_steps in ((trained, 3), (tiny_policy(), 0)):
        state = {k: v for k, v in source.state_dict().items() if not k.endswith("optimized_steps")}
        policy = tiny_policy(seed=1)
        policy.load_state_dict(state)
        assert int(policy.vqvae.optimized_steps) == expected_steps
        assert policy.vqvae_trained == (expected_steps == 3)


def test_select_action_keeps_observation_and_action_queues(monkeypatch):
    policy = tiny_policy()
    config = policy.config
    finish_phase_1(policy, make_batch(config))
    policy.eval()
    frames = [observation(make_batch(config, seed=s), config) for s in range(5)]
    seen = []
    forward = policy.vqbet.forward
    monkeypatch.setattr(policy.vqbet, "forward", lambda obs: seen.append(obs) or forward(obs))
    actions = [policy.select_action(frame) for frame in frames]
    assert all(a.shape == (2, 3) and torch.isfinite(a).all() for a in actions)
    assert len(seen) == 3  # steps 0, 2 and 4: one prediction per action_chunk_size steps

    def history(*indices):  # the model's normalised input for these frames, (B, n_obs_steps, ...)
        return {
            k: torch.stack([policy.normalize_inputs(frames[i])[k] for i in indices], 1) for k in frames[0]
        }

    for got, indices in zip(seen, [(0, 0), (1, 2), (3, 4)]):  # the first frame is repeated at the start
        for key, value in history(*indices).items():
            torch.testing.assert_close(got[key], value)

    policy.reset()  # a new episode: empty queues, so the model runs at once
    torch.manual_seed(0)
    first, second = policy.select_action(frames[3]), policy.select_action(frames[1])
    assert len(seen) == 4
    torch.manual_seed(0)
    chunk = policy.predict_action_chunk({k: torch.stack([v, v], 1) for k, v in frames[3].items()})
    assert chunk.shape == (2, 2, 3)
    assert torch.equal(first, chunk[:, 0]) and torch.equal(second, chunk[:, 1])


def test_actions_are_unnormalised_predictions_of_the_current_step():
    policy = tiny_policy()
    finish_phase_1(policy, make_batch(policy.config))
    policy.eval()
    obs = {k: v for k, v in make_batch(policy.config).items() if k in policy.config.input_shapes}
    torch.manual_seed(0)
    chunk = policy.predict_action_chunk(obs)
    torch.manual_seed(0)
    normalised = policy.vqbet(policy.normalize_inputs(obs))["predicted_action"][:, 1]  # query of step t
    stats = policy.unnormalize_outputs.buffer_action
    torch.testing.assert_close(chunk, (normalised + 1) / 2 * (stats.max - stats.min + 1e-8) + stats.min)


def test_acting_before_the_vqvae_is_trained_warns():
    policy = tiny_policy().eval()
    with pytest.warns(UserWarning, match="0/3 steps done"):
        action = policy.select_action(observation(make_batch(policy.config), policy.config))
    assert action.shape == (2, 3)


def test_two_cameras_and_sequential_code_selection():
    cameras = {"observation.images.top": [3, 40, 40], "observation.images.wrist": [3, 40, 40]}
    policy = tiny_policy(
        input_shapes={**cameras, "observation.state": [4]},
        input_normalization_modes={"VISUAL": "mean_std", "STATE": "min_max"},
        sequentially_select=True,
    )
    head = policy.vqbet.action_head
    assert head.map_to_cbet_preds_primary_bin[0].weight.shape == (4, 16)
    assert head.map_to_cbet_preds_secondary_bin[0].weight.shape == (4, 16 + 4)
    assert not hasattr(head, "map_to_cbet_preds_bin")
    batch = make_batch(policy.config)
    finish_phase_1(policy, batch)
    out = policy(batch)
    out["loss"].backward()
    assert head.map_to_cbet_preds_secondary_bin[0].weight.grad is not None
    policy.eval()
    assert policy.select_action(observation(batch, policy.config)).shape == (2, 3)


def test_bad_batches():
    policy = tiny_policy()
    batch = make_batch(policy.config)
    with pytest.raises(ValueError, match="delta_timestamps"):
        policy(dict(batch, action=batch["action"][:, :3]))
    with pytest.raises(KeyError, match="batch\\['action'\\]"):
        policy({k: v for k, v in batch.items() if k != "action"})
    finish_phase_1(policy, batch)
    with pytest.raises(ValueError, match="delta_timestamps"):
        policy(dict(batch, **{"observation.state": batch["observation.state"][:, :1]}))
    policy.eval()
    with pytest.raises(KeyError, match="observation.image"):
        policy.select_action({"observation.state": batch["observation.state"][:, -1]})
    with pytest.raises(ValueError, match="without a time axis"):
        policy.select_action({k: batch[k] for k in policy.config.input_shapes})


def test_same_seed_same_result():
    a, b, c = tiny_policy(seed=3), tiny_policy(seed=3), tiny_policy(seed=4)
    batch = make_batch(a.config)
    loss_a = a(batch)["loss"]
    assert torch.equal(b(batch)["loss"], loss_a)
    assert not torch.equal(c(batch)["loss"], loss_a)
    finish_phase_1(a, batch)
    finish_phase_1(b, batch)
    torch.manual_seed(0)
    loss_a = a(batch)["loss"]
    torch.manual_seed(0)
    assert torch.equal(b(batch)["loss"], loss_a)


def train(policy: VQBeTPolicy, batch: dict, steps: int) -> list[float]:
    optimizer = policy.make_optimizer()
    policy.train()
    losses = []
    for _ in range(steps):
        loss = policy(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_overfits_a_fixed_batch_in_phase_1():
    policy = tiny_policy(n_vqvae_training_steps=200, vqvae_n_embed=8, optimizer_vqvae_lr=1e-2)
    losses = train(policy, make_batch(policy.config), 200)
    assert policy.vqvae_trained  # the 200th step ended phase 1
    assert losses[-1] < 0.5 * losses[0], losses[::20]


def test_overfits_a_fixed_batch_in_phase_2():
    # L1 losses under Adam shrink by about lr per step: large learning rates make this test short.
    policy = tiny_policy(
        n_vqvae_training_steps=50,
        vqvae_n_embed=8,
        optimizer_vqvae_lr=1e-2,
        optimizer_lr=1e-2,
        optimizer_bet_lr=3e-3,
        dropout=0.0,
        crop_is_random=False,
    )
    policy.vqbet.rgb_encoder.backbone.requires_grad_(False)  # speed: the ResNet is not needed to overfit
    batch = make_batch(policy.config)
    train(policy, batch, 50)
    assert policy.vqvae_trained
    losses = train(policy, batch, 100)
    assert losses[-1] < 0.4 * losses[0], losses[::10]


def test_optimizer_groups_do_not_depend_on_the_phase():
    policy = tiny_policy()
    optimizer = policy.make_optimizer()
    assert isinstance(optimizer, torch.optim.Adam)
    groups = [{id(p) for p in g["params"]} for g in optimizer.param_groups]
    assert sum(len(g) for g in groups) == len(set().union(*groups)) == len(list(policy.parameters()))
    assert groups[1] == {id(p) for p in policy.vqvae.parameters()}
    assert groups[2] | groups[3] == {id(p) for p in policy.vqbet.policy.parameters()}
    gpt_linear_weights = {
        id(m.weight) for m in policy.vqbet.policy.modules() if isinstance(m, torch.nn.Linear)
    }
    assert groups[2] == gpt_linear_weights
    settings = [(g["lr"], g["weight_decay"], g["betas"]) for g in optimizer.param_groups]
    assert settings == [
        (1e-4, 1e-6, (0.95, 0.999)),
        (1e-3, 1e-4, (0.95, 0.999)),
        (5.5e-5, 2e-4, (0.9, 0.999)),
        (5.5e-5, 0.0, (0.9, 0.999)),
    ]
    batch = make_batch(policy.config)
    train(policy, batch, 1)
    saved = optimizer.state_dict()
    finish_phase_1(policy, batch)
    policy.make_optimizer().load_state_dict(saved)  # a phase-1 optimiser state resumes in phase 2


def test_lr_schedule_is_constant_during_phase_1_then_warmup_and_cosine():
    policy = tiny_policy(n_vqvae_training_steps=4, scheduler_warmup_steps=2)
    optimizer = policy.make_optimizer()
    scheduler = policy.make_lr_scheduler(optimizer, num_training_steps=10)
    factors = []  # per step, the lr of every parameter group over its configured lr
    for _ in range(11):
        factors.append([g["lr"] / g["initial_lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    cosine = [0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(5)]  # 4 decay steps after the warm-up
    expected = [1.0] * 4 + [0.0, 0.5] + cosine
    torch.testing.assert_close(factors, [[f] * 4 for f in expected], atol=1e-9, rtol=0)


def test_save_and_load_round_trip_gives_identical_actions(tmp_path):
    policy = tiny_policy()
    batch = make_batch(policy.config)
    finish_phase_1(policy, batch)
    train(policy, batch, 2)
    policy.eval()
    policy.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["type"] == "vqbet" and saved["crop_shape"] == [36, 36]
    loaded = VQBeTPolicy.from_pretrained(tmp_path)
    assert not loaded.training and loaded.config == policy.config
    obs = observation(batch, policy.config)
    for _ in range(3):
        torch.manual_seed(0)
        expected = policy.select_action(obs)
        torch.manual_seed(0)
        assert torch.equal(loaded.select_action(obs), expected)


def test_residual_quantiser_picks_nearest_codes_of_the_residuals():
    torch.manual_seed(0)
    rvq = ResidualVQ(n_embed=5, dim=3).eval()
    x = torch.randn(7, 3)
    quantized, codes, _ = rvq(x)
    first = rvq.layers[0]._codebook.embed[0]
    second = rvq.layers[1]._codebook.embed[0]
    expected_first = torch.cdist(x, first).argmin(-1)
    expected_second = torch.cdist(x - first[expected_first], second).argmin(-1)
    assert torch.equal(codes, torch.stack([expected_first, expected_second], -1))
    torch.testing.assert_close(quantized, first[expected_first] + second[expected_second])
    torch.testing.assert_close(rvq.codes_to_latent(codes), quantized)


def test_codebook_codes_become_the_mean_of_their_latents():
    torch.manual_seed(0)
    codebook = EMACodebook(n_embed=4, dim=3)
    untouched = codebook.embed[0, 1:].clone()
    latents = torch.randn(6, 3) * 0.1 + 2.0
    assigned = torch.zeros(6, dtype=torch.long)
    for _ in range(10):
        codebook.ema_update(latents, assigned)
    # Codes that receive no latent keep their value for a while (the reference's, which start with a cluster
    # size of 0, are divided by ~1e-5 at the first update instead).
    torch.testing.assert_close(codebook.embed[0, 1:], untouched, atol=1e-4, rtol=1e-3)
    for _ in range(50):
        codebook.ema_update(latents, assigned)
    torch.testing.assert_close(codebook.embed[0, 0], latents.mean(0), atol=1e-4, rtol=0)


def test_focal_loss():
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target))
    p = F.softmax(logits, -1)[torch.arange(6), target]
    torch.testing.assert_close(focal_loss(logits, target), (-((1 - p) ** 2) * p.log()).mean())


def test_spatial_softmax_finds_the_peak():
    pool = SpatialSoftmax(in_channels=1, map_size=(3, 5), num_keypoints=1)
    with torch.no_grad():
        pool.nets.weight.fill_(1.0)
        pool.nets.bias.zero_()
    heat = torch.zeros(1, 1, 3, 5)
    heat[0, 0, 2, 1] = 100.0  # row 2 of 3 (y = 1), column 1 of 5 (x = -0.5)
    torch.testing.assert_close(pool(heat), torch.tensor([[[-0.5, 1.0]]]))
    with pytest.raises(ValueError, match="crop_shape"):
        pool(torch.zeros(1, 1, 4, 5))
