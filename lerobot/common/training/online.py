"""Online training (TD-MPC): the policy collects episodes in the sim env while it trains on them.

After the offline steps, every `training.online_steps_between_rollouts` updates the current policy plays
`training.online_rollout_n_episodes` episodes (`online_rollout_batch_size` envs at once). Their frames go into an
`OnlineBuffer` (FIFO, `online_buffer_capacity` frames), and each training batch then mixes
`online_sampling_ratio` of online samples with offline dataset samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import default_collate

from lerobot.common.envs.utils import preprocess_observation

log = logging.getLogger("lerobot.train")


class OnlineBuffer:
    """Episodes collected online, indexed like a LeRobotDataset with `delta_timestamps`.

    `buffer[i]` returns, for every key with delta indices, the frames at those offsets from frame i stacked on a
    new first axis plus `<key>_is_pad` (offsets outside the episode repeat its edge frame), as the dataset does.
    """

    def __init__(self, delta_indices: Mapping[str, Sequence[int]], capacity: int | None = None):
        self.delta_indices = {k: np.asarray(v, dtype=np.int64) for k, v in delta_indices.items()}
        self.capacity = capacity
        self.data: dict[str, torch.Tensor] = {}
        self.episode_start = np.zeros(
            0, dtype=np.int64
        )  # per frame: buffer index of its episode's first frame
        self.episode_end = np.zeros(0, dtype=np.int64)  # per frame: one past its episode's last frame
        self.num_episodes = 0

    def __len__(self) -> int:
        return len(self.episode_start)

    def add_episode(self, frames: Mapping[str, torch.Tensor]) -> None:
        """Append one episode: every value has the episode length as its first dimension."""
        lengths = {k: len(v) for k, v in frames.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"Episode arrays disagree on the episode length: {lengths}.")
        n = next(iter(lengths.values()))
        if self.data and set(frames) != set(self.data):
            raise ValueError(f"Episode keys {sorted(frames)} differ from the buffer's {sorted(self.data)}.")
        start = len(self)
        for key, value in frames.items():
            value = value.detach().cpu()
            self.data[key] = torch.cat([self.data[key], value]) if key in self.data else value.clone()
        self.episode_start = np.concatenate([self.episode_start, np.full(n, start)])
        self.episode_end = np.concatenate([self.episode_end, np.full(n, start + n)])
        self.num_episodes += 1
        if self.capacity is not None and len(self) > self.capacity:
            self._drop_oldest(len(self) - self.capacity)

    def _drop_oldest(self, n_frames: int) -> None:
        """Forget the oldest frames, whole episodes at a time (never leaves half an episode behind)."""
        cut = int(self.episode_end[n_frames - 1])  # the end of the episode holding the n-th oldest frame
        if cut >= len(self):  # the newest episode alone exceeds the capacity: keep it anyway
            return
        for key in self.data:
            self.data[key] = self.data[key][cut:].clone()
        self.episode_start = self.episode_start[cut:] - cut
        self.episode_end = self.episode_end[cut:] - cut

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        item = {}
        start, end = self.episode_start[idx], self.episode_end[idx]
        for key, value in self.data.items():
            if key not in self.delta_indices:
                item[key] = value[idx]
                continue
            wanted = idx + self.delta_indices[key]
            rows = np.clip(wanted, start, end - 1)
            item[key] = value[torch.from_numpy(rows)]
            item[f"{key}_is_pad"] = torch.from_numpy((wanted < start) | (wanted >= end))
        return item


@torch.no_grad()
def collect_episodes(
    env: Any, policy: Any, n_episodes: int, seed: int | None, device: torch.device
) -> list[dict]:
    """Play `n_episodes` with the policy; return per-episode dicts of dataset-keyed tensors (T, ...)."""
    episodes = []
    while len(episodes) < n_episodes:
        policy.reset()
        seeds = None if seed is None else [seed + len(episodes) + i for i in range(env.num_envs)]
        observation, _ = env.reset(seed=seeds)
        steps: list[dict[str, torch.Tensor]] = []
        finished = np.zeros(env.num_envs, dtype=bool)
        lengths = np.zeros(env.num_envs, dtype=np.int64)
        while not finished.all():
            obs = preprocess_observation(observation)
            action = policy.select_action({k: v.to(device) for k, v in obs.items()}).cpu()
            observation, reward, terminated, truncated, _ = env.step(action.numpy())
            done = np.asarray(terminated) | np.asarray(truncated)
            steps.append(
                {
                    **obs,
                    "action": action,
                    "next.reward": torch.as_tensor(reward, dtype=torch.float32),
                    "next.done": torch.as_tensor(done),
                }
            )
            lengths[~finished] += 1
            finished |= done
        for i in range(env.num_envs):
            if len(episodes) == n_episodes:
                break
            episodes.append({k: torch.stack([s[k][i] for s in steps[: lengths[i]]]) for k in steps[0]})
    return episodes


def train_online(
    cfg: DictConfig,
    policy: Any,
    model: torch.nn.Module,
    dataset: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    step: int,
    total_steps: int,
    update_policy: Callable[..., dict[str, float]],
    on_step_end: Callable[[int, dict[str, float] | None], None],
    bar: Any,
) -> int:
    """The online phase of train.py, from `step` to `total_steps`; returns the final step."""
    from lerobot.common.envs.factory import make_env

    tc = cfg.training
    if cfg.env.name == "real_world":
        raise ValueError(
            "training.online_steps > 0 needs a simulated env; real-robot configs train offline only."
        )
    fps = dataset.fps
    delta_indices = {k: [round(t * fps) for t in v] for k, v in policy.config.delta_timestamps(fps).items()}
    buffer = OnlineBuffer(delta_indices, capacity=tc.get("online_buffer_capacity", None))
    env = make_env(cfg, n_envs=int(tc.online_rollout_batch_size))
    rng = np.random.default_rng(int(cfg.seed) + step)
    env_seed = tc.get("online_env_seed", None)
    batch_size = int(tc.batch_size)
    try:
        while step < total_steps:
            if (step - int(tc.offline_steps)) % max(1, int(tc.online_steps_between_rollouts)) == 0:
                policy.eval()
                episodes = collect_episodes(
                    env,
                    policy,
                    int(tc.online_rollout_n_episodes),
                    None if env_seed is None else int(env_seed) + buffer.num_episodes,
                    device,
                )
                for episode in episodes:
                    buffer.add_episode(episode)
                policy.train()
            t0 = time.perf_counter()
            n_online = int(round(float(tc.online_sampling_ratio) * batch_size)) if len(buffer) else 0
            offline_items = [dataset[int(i)] for i in rng.integers(0, len(dataset), batch_size - n_online)]
            online_items = (
                [buffer[int(i)] for i in rng.integers(0, len(buffer), n_online)] if n_online else []
            )
            items = offline_items + online_items
            keys = set.intersection(*(set(item) for item in items))  # what both sources have
            batch = default_collate([{k: item[k] for k in keys} for item in items])
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            t1 = time.perf_counter()
            metrics = update_policy(
                model,
                policy,
                batch,
                optimizer,
                scheduler,
                float(tc.grad_clip_norm),
                scaler,
                device,
                bool(cfg.use_amp),
            )
            step += 1
            bar.update(1)
            log_now = step % int(tc.log_freq) == 0 or step == total_steps
            if log_now:
                metrics.update(
                    step=step,
                    samples=step * batch_size,
                    online_frames=len(buffer),
                    online_episodes=buffer.num_episodes,
                    update_s=time.perf_counter() - t1,
                    data_s=t1 - t0,
                )
            on_step_end(step, metrics if log_now else None)
    finally:
        env.close()
    return step
