"""Small PushT datasets recorded in gym-pusht by a noisy pusher, shared by the script and example tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def record_pusht(
    root: Path,
    *,
    repo_id: str,
    obs_type: str,
    n_episodes: int,
    episode_length: int,
    task: str = "Push the T onto the target.",
    fps: int = 10,
) -> Path:
    """Record `n_episodes` x `episode_length` frames into a v3.0 dataset at `root`.

    Every episode pushes toward a random target with Gaussian noise. Features: `observation.state`, `action`,
    `next.reward`, `next.success`, `next.done`, plus the 96x96 camera `observation.image` (video) for obs_type
    `pixels_agent_pos` or the T's keypoints `observation.environment_state` for `environment_state_agent_pos`.
    """
    from lerobot.common.datasets.writer import LeRobotDatasetWriter
    from lerobot.common.envs.factory import make_env

    pixels = obs_type == "pixels_agent_pos"
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
    }
    if pixels:
        features["observation.image"] = {
            "dtype": "video",
            "shape": (96, 96, 3),
            "names": ["height", "width", "channels"],
        }
    else:
        features["observation.environment_state"] = {"dtype": "float32", "shape": (16,), "names": None}
    writer = LeRobotDatasetWriter.create(repo_id, fps=fps, features=features, root=root, use_videos=pixels)
    env = make_env(
        {"env": {"name": "pusht", "task": "PushT-v0", "episode_length": 300, "gym": {"obs_type": obs_type}}}
    )
    rng = np.random.default_rng(0)
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=[episode])
        target = rng.uniform(100, 400, size=2)
        for t in range(episode_length):
            action = (target + rng.normal(0, 10, size=2)).astype(np.float32)
            next_obs, reward, terminated, _, _ = env.step(action[None])
            frame = {
                "observation.state": obs["agent_pos"][0],
                "action": action,
                "next.reward": np.float32(reward[0]),
                "next.success": bool(terminated[0]),
                "next.done": t == episode_length - 1,
            }
            if pixels:
                frame["observation.image"] = obs["pixels"][0]
            else:
                frame["observation.environment_state"] = obs["environment_state"][0]
            writer.add_frame(frame, task=task)
            obs = next_obs
        writer.save_episode()
    writer.finalize()
    env.close()
    return root
