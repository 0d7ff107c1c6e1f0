"""Tiny policy configs, stats and batches shared by the policy tests."""

from __future__ import annotations

import torch

from lerobot.common.policies.normalize import feature_type

# Per registered policy: config fields for a tiny, fast model (every policy in the registry needs one).
TINY_CONFIGS: dict[str, dict] = {
    "act": dict(
        input_shapes={"observation.images.top": [3, 32, 32], "observation.state": [4]},
        output_shapes={"action": [3]},
        input_normalization_modes={"observation.images.top": "mean_std", "observation.state": "mean_std"},
        output_normalization_modes={"action": "mean_std"},
        pretrained_backbone_weights=None,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        n_vae_encoder_layers=1,
        latent_dim=4,
        chunk_size=10,
        n_action_steps=5,
    ),
    "diffusion": dict(
        # 48x48 images cropped to 40x40 give a 2x2 feature map, so the spatial softmax is not trivial.
        input_shapes={"observation.image": [3, 48, 48], "observation.state": [4]},
        output_shapes={"action": [3]},
        input_normalization_modes={"observation.image": "mean_std", "observation.state": "min_max"},
        output_normalization_modes={"action": "min_max"},
        crop_shape=(40, 40),
        spatial_softmax_num_keypoints=4,
        down_dims=(16, 32),
        kernel_size=3,
        n_groups=4,
        diffusion_step_embed_dim=8,
        horizon=8,
        n_action_steps=4,
        num_train_timesteps=10,
    ),
    "tdmpc": dict(
        input_shapes={"observation.image": [3, 40, 40], "observation.state": [4]},
        output_shapes={"action": [3]},
        image_encoder_hidden_dim=4,
        state_encoder_hidden_dim=16,
        latent_dim=8,
        mlp_dim=16,
        q_ensemble_size=3,
        horizon=3,
        cem_iterations=2,
        n_gaussian_samples=16,
        n_pi_samples=4,
        n_elites=4,
    ),
    "vqbet": dict(
        # 40x40 images cropped to 36x36 give a 2x2 feature map, so the spatial softmax is not trivial.
        input_shapes={"observation.image": [3, 40, 40], "observation.state": [4]},
        output_shapes={"action": [3]},
        crop_shape=(36, 36),
        spatial_softmax_num_keypoints=4,
        n_obs_steps=2,
        n_action_pred_token=2,
        action_chunk_size=2,
        n_vqvae_training_steps=3,
        vqvae_n_embed=4,
        vqvae_embedding_dim=8,
        vqvae_enc_hidden_dim=16,
        gpt_block_size=16,
        gpt_input_dim=16,
        gpt_output_dim=16,
        gpt_n_layer=1,
        gpt_n_head=2,
        gpt_hidden_dim=16,
    ),
}


def make_stats(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Plausible mean/std/min/max for every feature; camera stats have shape (C, 1, 1)."""
    g = torch.Generator().manual_seed(seed)
    stats = {}
    for key, shape in shapes.items():
        shape = [shape[0], 1, 1] if feature_type(key) == "VISUAL" else list(shape)
        low = torch.rand(shape, generator=g) - 1
        high = low + 1 + torch.rand(shape, generator=g)
        stats[key] = {"mean": (low + high) / 2, "std": (high - low) / 4, "min": low, "max": high}
    return stats


def make_batch(config, batch_size: int = 2, seed: int = 0, fps: float = 10) -> dict[str, torch.Tensor]:
    """A random training batch shaped as a dataset built with `config.delta_timestamps(fps)` would give."""
    g = torch.Generator().manual_seed(seed)
    deltas = config.delta_timestamps(fps)
    batch = {}
    for key, shape in {**config.input_shapes, **config.output_shapes}.items():
        steps = [len(deltas[key])] if key in deltas else []
        if feature_type(key) == "VISUAL":
            batch[key] = torch.rand([batch_size, *steps, *shape], generator=g)
        else:
            batch[key] = torch.randn([batch_size, *steps, *shape], generator=g)
        if key in deltas:
            batch[f"{key}_is_pad"] = torch.zeros(batch_size, *steps, dtype=torch.bool)
    # Other sequence keys a policy asks for, e.g. TD-MPC's `next.reward`: scalars per step, (B, T).
    for key, key_deltas in deltas.items():
        if key not in batch:
            batch[key] = torch.randn(batch_size, len(key_deltas), generator=g)
            batch[f"{key}_is_pad"] = torch.zeros(batch_size, len(key_deltas), dtype=torch.bool)
    return batch


def observation(batch: dict[str, torch.Tensor], config, fps: float = 10) -> dict[str, torch.Tensor]:
    """The current observation of a training batch, as an environment step provides it (no time axis)."""
    deltas = config.delta_timestamps(fps)
    return {k: batch[k][:, -1] if k in deltas else batch[k] for k in config.input_shapes}
