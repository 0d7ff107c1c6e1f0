"""A small state-only PushT dataset recorded in gym-pusht, and a helper to run train.py in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.pusht_recording import record_pusht

REPO_ID = "local/pusht_state"

# Tiny policy configs for the training tests, as command-line overrides (every registered policy needs one).
TINY_TRAIN_OVERRIDES: dict[str, list[str]] = {
    "act": [
        "policy=act",
        "policy.dim_model=16",
        "policy.n_heads=2",
        "policy.dim_feedforward=32",
        "policy.n_encoder_layers=1",
        "policy.n_vae_encoder_layers=1",
        "policy.latent_dim=4",
        "policy.chunk_size=5",
        "policy.n_action_steps=5",
    ],
    "diffusion": [
        "policy=diffusion",
        "policy.down_dims=[16,32]",
        "policy.kernel_size=3",
        "policy.n_groups=4",
        "policy.diffusion_step_embed_dim=8",
        "policy.horizon=8",
        "policy.n_action_steps=4",
        "policy.num_train_timesteps=10",
        "policy.scheduler_warmup_steps=1",
    ],
    "vqbet": [
        "policy=vqbet",
        "policy.n_obs_steps=2",
        "policy.n_action_pred_token=2",
        "policy.action_chunk_size=2",
        "policy.n_vqvae_training_steps=2",
        "policy.vqvae_n_embed=4",
        "policy.vqvae_embedding_dim=8",
        "policy.vqvae_enc_hidden_dim=16",
        "policy.gpt_block_size=16",
        "policy.gpt_input_dim=16",
        "policy.gpt_output_dim=16",
        "policy.gpt_n_layer=1",
        "policy.gpt_n_head=2",
        "policy.gpt_hidden_dim=16",
    ],
    "tdmpc": [
        "policy=tdmpc",
        "training.online_steps=0",
        "policy.state_encoder_hidden_dim=16",
        "policy.latent_dim=8",
        "policy.mlp_dim=16",
        "policy.q_ensemble_size=2",
        "policy.horizon=3",
        "policy.cem_iterations=2",
        "policy.n_gaussian_samples=16",
        "policy.n_pi_samples=4",
        "policy.n_elites=4",
    ],
}


@pytest.fixture(scope="session")
def pusht_state_dataset(tmp_path_factory) -> Path:
    """4 episodes x 25 frames of a noisy pusher in gym-pusht, observed through keypoints (no images)."""
    pytest.importorskip("gym_pusht")
    root = tmp_path_factory.mktemp("data") / "pusht_state"
    return record_pusht(
        root, repo_id=REPO_ID, obs_type="environment_state_agent_pos", n_episodes=4, episode_length=25
    )


@pytest.fixture(scope="session")
def pusht_pixels_dataset(tmp_path_factory) -> Path:
    """3 episodes x 20 frames of gym-pusht with its 96x96 camera (for policies that need one, e.g. VQ-BeT)."""
    pytest.importorskip("gym_pusht")
    root = tmp_path_factory.mktemp("data") / "pusht_pixels"
    return record_pusht(root, repo_id=REPO_ID, obs_type="pixels_agent_pos", n_episodes=3, episode_length=20)


# Policies that cannot run without a camera train on the pixels dataset in the generic tests.
NEEDS_CAMERA = {"vqbet"}


def pixels_overrides(dataset_root: Path, steps: int) -> list[str]:
    return [o for o in base_overrides(dataset_root, steps) if "obs_type" not in o]


def base_overrides(dataset_root: Path, steps: int = 6) -> list[str]:
    return [
        "env=pusht",
        "env.gym.obs_type=environment_state_agent_pos",
        "env.episode_length=20",
        f"dataset_repo_id={REPO_ID}",
        f"dataset_root={dataset_root}",
        "device=cpu",
        "seed=1",
        f"training.offline_steps={steps}",
        "training.batch_size=4",
        "training.num_workers=0",
        "training.log_freq=1",
        "training.save_freq=3",
        f"training.eval_freq={steps}",
        "eval.n_episodes=2",
        "eval.batch_size=2",
        "eval.max_episodes_rendered=1",
    ]


def run_train(overrides: list[str], run_dir: Path) -> dict:
    """train.py's train() on the composed config, in this process (what the CLI does, minus hydra's run dir)."""
    from lerobot.scripts.train import compose_run_config, train

    cfg, overrides = compose_run_config(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg, run_dir, overrides)
    finally:
        torch.set_num_threads(threads)
