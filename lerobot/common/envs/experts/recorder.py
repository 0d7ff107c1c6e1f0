"""Record scripted-expert episodes of a simulated task into a LeRobot dataset (format v3.0).

    summary = record_sim_demos(cfg, num_episodes=50, repo_id="local/aloha_transfer_cube_scripted",
                               root="outputs/data/aloha_transfer_cube_scripted", seed=0, state_only=True)

What is recorded, per step `t` of an episode in the env built by `make_env` from the config:
- `observation.state`: the env's `agent_pos` before the step; `observation.environment_state`: the privileged
  state of that moment, as obs_type `environment_state_agent_pos` gives it (also when pixels are observed);
- camera frames under the env yaml's `image_keys` (videos), unless `state_only`, in which case the env runs
  with obs_type `environment_state_agent_pos` and renders nothing;
- `action`: the float32 action the env was given (the expert's action is cast before stepping, so the dataset
  holds exactly what the env received and replaying it reproduces the episode);
- `next.reward`, `next.success` (the expert's success check of that step, normally the env's `is_success`),
  `next.done` (true on the episode's last frame).

Episodes end at `env.episode_length`, or at the first success for experts with `stop_on_success` (PushT, XArm).
Only successful episodes are kept unless `keep_failed`. Attempt `a` (0, 1, ...) of a recording with seed `s`
resets the env with seed `1_000_000 * (s + 1) + a` (see `episode_seed`): never below 1,000,000, so never one of
the seeds evaluation uses by default (`seed` upward from 1000 for a few thousand episodes). The seed of every
kept episode is stored in `meta/scripted_demos.json`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lerobot.common.datasets.errors import DatasetExistsError
from lerobot.common.datasets.utils import validate_repo_id
from lerobot.common.envs.utils import IMAGE_KEY, IMAGES_PREFIX

logger = logging.getLogger(__name__)

SEED_STRIDE = 1_000_000  # attempts of one recording seed; also the lowest episode seed
MAX_SEED = (2**32 - 1) // SEED_STRIDE - 2  # episode seeds must fit numpy's RandomState (gym-aloha uses it)
SIDECAR = "meta/scripted_demos.json"
STATE_OBS_TYPE = "environment_state_agent_pos"
PIXELS_OBS_TYPE = "pixels_agent_pos"


class DemoRecordingError(RuntimeError):
    """The expert did not produce enough successful episodes within the allowed attempts."""


def episode_seed(seed: int, attempt: int) -> int:
    """The env seed of attempt `attempt` of a recording started with `seed` (see the module docstring)."""
    return SEED_STRIDE * (seed + 1) + attempt


@dataclass
class RecordSummary:
    repo_id: str
    path: Path
    task: str
    kept_episodes: int
    attempts: int
    successes: int
    frames: int
    seconds: float
    state_only: bool
    seeds: list[int] = field(default_factory=list)  # env seed of each kept episode, by episode index

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "path": str(self.path),
            "task": self.task,
            "kept_episodes": self.kept_episodes,
            "attempts": self.attempts,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "frames": self.frames,
            "seconds": self.seconds,
            "state_only": self.state_only,
            "seeds": self.seeds,
        }

    def __str__(self) -> str:
        return (
            f"{self.kept_episodes} episodes ({self.frames} frames) of {self.task} in {self.path}; expert success "
            f"{self.successes}/{self.attempts} = {self.success_rate:.0%}; {self.seconds:.1f} s"
        )


# ------------------------------------------------------------------------------ config


def _env_section(cfg: Any) -> dict[str, Any]:
    """The `env` section of a full config (or an env section alone) as a plain, resolved dict."""
    if isinstance(cfg, DictConfig):
        try:
            container = OmegaConf.to_container(cfg, resolve=True)
        except Exception as e:  # an interpolation such as `fps: ${fps}` without the top-level key
            raise ValueError(
                f"Could not resolve the config ({e}). Pass the full config loaded from lerobot/configs/env/<env>.yaml "
                "(it defines the top-level `fps` that env.fps refers to)."
            ) from e
    elif isinstance(cfg, Mapping):
        container = dict(cfg)
    else:
        raise TypeError(f"record_sim_demos expects a config (DictConfig or dict), got {type(cfg).__name__}.")
    env = container.get("env", container if "name" in container else None)
    if not isinstance(env, Mapping) or env.get("name") is None:
        raise KeyError("The config has no `env.name`; load an env yaml, e.g. lerobot/configs/env/aloha.yaml.")
    env = json.loads(json.dumps(env))  # a deep copy: the caller's config is left untouched
    fps = env.get("fps")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or fps <= 0:
        raise ValueError(f"env.fps must be a positive number (the dataset's fps), got {fps!r}.")
    return env


def _check_args(num_episodes: int, seed: int, max_attempts: int) -> None:
    for name, value, low in (("num_episodes", num_episodes, 1), ("max_attempts", max_attempts, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    if max_attempts > SEED_STRIDE:
        raise ValueError(
            f"max_attempts must be at most {SEED_STRIDE} (attempts per seed), got {max_attempts}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"seed must be an int in [0, {MAX_SEED}] (episode seeds must fit 32 bits), got {seed!r}."
        )


def _check_root(root: Path, overwrite: bool) -> None:
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    if not overwrite:
        raise DatasetExistsError(
            f"{root} already exists and is not empty. Pick another root, or pass overwrite=True (CLI: "
            "overwrite=true) to replace it once the new recording is complete."
        )
    if not root.is_dir():
        raise DatasetExistsError(f"{root} exists and is not a folder; remove it or pick another root.")


# ------------------------------------------------------------------------------ frames


def _images(observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    pixels = observation.get("pixels")
    if pixels is None:
        return {}
    if isinstance(pixels, Mapping):
        return {f"{IMAGES_PREFIX}{camera}": image for camera, image in pixels.items()}
    return {IMAGE_KEY: pixels}


def _features(frame: Mapping[str, Any], image_keys: list | None) -> dict[str, dict]:
    """The dataset features of frames like `frame` (see `_frame`)."""
    features: dict[str, dict] = {}
    images = sorted(key for key, value in frame.items() if np.ndim(value) == 3)
    if image_keys is not None and images != sorted(image_keys):
        raise ValueError(
            f"The env observes cameras {images}, but env.image_keys is {list(image_keys)}; make "
            "env.gym.cameras and env.image_keys name the same cameras."
        )
    for key, value in frame.items():
        if key in images:
            shape, names = tuple(np.shape(value)), ["height", "width", "channels"]
            features[key] = {"dtype": "video", "shape": shape, "names": names}
        else:
            features[key] = {"dtype": str(value.dtype), "shape": tuple(value.shape), "names": None}
    return features


def _frame(
    observation: Mapping[str, Any],
    env_state: np.ndarray,
    action: np.ndarray,
    reward: float,
    success: bool,
    done: bool,
) -> dict[str, Any]:
    return {
        "observation.state": np.asarray(observation["agent_pos"], dtype=np.float32),
        "observation.environment_state": np.asarray(env_state, dtype=np.float32),
        "action": action,
        "next.reward": np.array([reward], dtype=np.float32),
        "next.success": np.array([success], dtype=bool),
        "next.done": np.array([done], dtype=bool),
        **_images(observation),
    }


@dataclass
class EpisodeResult:
    seed: int
    success: bool  # the expert's success check held at some step (normally the env's is_success)
    env_success: bool  # the env's own is_success held at some step
    steps: int  # steps played (0 when skipped)
    planned_success: bool | None  # see Expert.planned_success
    skipped: bool = False  # not played: the expert's plan had already failed


def play_episode(
    env: Any,
    expert: Any,
    seed: int,
    *,
    skip_failed_plans: bool = True,
    on_frame: Callable[[dict[str, Any]], None] | None = None,
) -> EpisodeResult:
    """Play one expert episode in `env` (one env of `make_env(...).envs`) from `env.reset(seed=seed)`.

    The episode ends at the env's time limit, or at the first success when `expert.stop_on_success`.
    `on_frame` receives each step's dataset frame (observation before the step, action, next.* values).
    """
    max_steps = env.spec.max_episode_steps if env.spec is not None else None
    if not max_steps:
        raise ValueError(f"env.episode_length must be set (a positive int), got {max_steps!r}.")
    observation, _ = env.reset(seed=seed)
    expert.reset(seed, observation)
    planned = expert.planned_success()
    if planned is False and skip_failed_plans:
        return EpisodeResult(seed, False, False, 0, planned, skipped=True)
    # The env's own value when it observes it; pixel observations lack it, the expert reads it then.
    observes_state = "environment_state" in observation
    env_state = observation["environment_state"] if observes_state else expert.environment_state()
    succeeded = env_succeeded = False
    for t in range(max_steps):
        action = np.asarray(expert.act(observation), dtype=np.float32)
        next_observation, reward, terminated, truncated, info = env.step(action)
        success = expert.success(info)
        succeeded |= success
        env_succeeded |= bool(info.get("is_success", False))
        done = truncated or t == max_steps - 1 or (expert.stop_on_success and (success or terminated))
        if on_frame is not None:
            on_frame(_frame(observation, env_state, action, float(reward), success, done))
        if done:
            break
        observation = next_observation
        env_state = observation["environment_state"] if observes_state else expert.environment_state()
    return EpisodeResult(seed, succeeded, env_succeeded, t + 1, planned)


# ------------------------------------------------------------------------------ recording


def record_sim_demos(
    cfg: Any,
    *,
    num_episodes: int,
    repo_id: str,
    root: str | Path,
    seed: int = 0,
    state_only: bool = False,
    keep_failed: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    max_attempts: int | None = None,
) -> RecordSummary:
    """Record `num_episodes` scripted-expert episodes of `cfg.env.task` into a LeRobot v3.0 dataset at `root`.

    Args:
        cfg: a config with an `env` section (e.g. `OmegaConf.load("lerobot/configs/env/aloha.yaml")`, with
            `env.task` set); its `gym.obs_type` is replaced (see `state_only`), `episode_length` and `fps` used.
        num_episodes: episodes to keep (successful ones, unless `keep_failed`).
        repo_id: the dataset's name (`namespace/name`), stored in its metadata.
        root: the dataset folder. It is built next to it (a hidden temporary folder) and moved into place at the
            end, so an interrupted or failed recording leaves `root` untouched.
        seed: selects the episode seeds (see `episode_seed`); the same seed records the same episodes.
        state_only: observe `environment_state_agent_pos` (no cameras, nothing rendered); otherwise
            `pixels_agent_pos`, with the cameras stored as videos.
        keep_failed: also keep episodes where the expert failed (then every attempt is kept).
        overwrite: replace an existing, non-empty `root` (only once the new dataset is complete).
        progress: show a progress bar (kept episodes, attempts, success rate).
        max_attempts: give up after this many episodes (default `3 * num_episodes + 10`).

    Returns:
        A `RecordSummary` (kept episodes, attempts, success rate, frames, seconds, path, seeds).

    Raises:
        DatasetExistsError: `root` exists and is not empty, and `overwrite` is False.
        DemoRecordingError: fewer than `num_episodes` successes within `max_attempts`.
    """
    from tqdm import tqdm

    from lerobot.common.datasets.writer import LeRobotDatasetWriter
    from lerobot.common.envs.experts import make_expert
    from lerobot.common.envs.factory import make_env

    _check_args(num_episodes, seed, 1 if max_attempts is None else max_attempts)
    if max_attempts is None:
        max_attempts = num_episodes if keep_failed else 3 * num_episodes + 10
    validate_repo_id(repo_id)
    env_cfg = _env_section(cfg)
    root = Path(root).expanduser()
    _check_root(root, overwrite)
    env_cfg.setdefault("gym", {})
    env_cfg["gym"]["obs_type"] = STATE_OBS_TYPE if state_only else PIXELS_OBS_TYPE
    task = env_cfg.get("task")

    started = time.perf_counter()
    vec_env = make_env({"env": env_cfg}, n_envs=1)
    env = vec_env.envs[0]  # stepped directly: a vector env would reset itself at `terminated`
    expert = make_expert(task, env)
    image_keys = None if state_only else env_cfg.get("image_keys")

    tmp = root.parent / f".{root.name}.recording-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    writer: LeRobotDatasetWriter | None = None

    def add_frame(frame: dict[str, Any]) -> None:
        nonlocal writer
        if writer is None:
            # The env yaml's environment_state_dim is one task's (aloha.yaml: insertion's 14, transfer cube
            # has 7); the stored config gets the one this task observes.
            env_cfg["environment_state_dim"] = int(frame["observation.environment_state"].size)
            features = _features(frame, image_keys)
            writer = LeRobotDatasetWriter.create(repo_id, fps=env_cfg["fps"], features=features, root=tmp)
        writer.add_frame(frame)

    seeds: list[int] = []
    attempts = successes = 0
    bar = tqdm(total=num_episodes, desc=f"{task} demos", unit="ep", disable=not progress, dynamic_ncols=True)
    completed = False
    try:
        while len(seeds) < num_episodes:
            if attempts >= max_attempts:
                raise DemoRecordingError(
                    f"Only {len(seeds)} of {num_episodes} episodes of {task} succeeded in {attempts} attempts "
                    f"({successes / attempts:.0%} success). Raise max_attempts (now {max_attempts}), or pass "
                    f"keep_failed=True to keep failed episodes too. Nothing was written to {root}."
                )
            result = play_episode(
                env,
                expert,
                episode_seed(seed, attempts),
                skip_failed_plans=not keep_failed,
                on_frame=add_frame,
            )
            attempts += 1
            successes += result.success
            if result.success or keep_failed:
                writer.save_episode(task=expert.description)
                seeds.append(result.seed)
                bar.update(1)
            elif writer is not None:
                writer.clear_episode_buffer()
            bar.set_postfix(attempts=attempts, success=f"{successes / attempts:.0%}")
        writer.finalize()
        summary = RecordSummary(
            repo_id=repo_id,
            path=root,
            task=task,
            kept_episodes=len(seeds),
            attempts=attempts,
            successes=successes,
            frames=writer.num_frames,
            seconds=0.0,
            state_only=state_only,
            seeds=seeds,
        )
        sidecar = {
            "expert": type(expert).__name__,
            "seed": seed,
            "episode_seeds": seeds,
            "seed_rule": "episode_seed = 1_000_000 * (seed + 1) + attempt",
            "attempts": attempts,
            "successes": successes,
            "keep_failed": keep_failed,
            "env": env_cfg,
        }
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, root, overwrite)
        completed = True
    finally:
        bar.close()
        expert.close()
        vec_env.close()
        if not completed:
            shutil.rmtree(tmp, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    logger.info("Recorded %s", summary)
    return summary


def _move_into_place(tmp: Path, root: Path, overwrite: bool) -> None:
    """Rename the finished dataset onto `root`; an existing `root` is replaced only after that succeeded."""
    old = None
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        elif overwrite:
            old = root.parent / f".{root.name}.replaced-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(root, old)
        else:  # created by someone else while we recorded
            raise DatasetExistsError(
                f"{root} appeared while recording and was left alone; the recording is discarded."
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
