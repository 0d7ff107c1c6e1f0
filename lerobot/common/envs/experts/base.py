"""What every scripted expert provides to the recorder (`lerobot.common.envs.experts.recorder`).

An expert is bound to one gym env built by `make_env` (the env the demonstrations are recorded in) and acts with
privileged knowledge of its simulator: object poses read from the physics, never from pixels. The recorder drives
it as an ordinary policy:

    obs, info = env.reset(seed=seed)
    expert.reset(seed, obs)
    for t in range(max_steps):
        action = expert.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        success = expert.success(info)
        ...  # stop at `truncated`, and at the first success when expert.stop_on_success
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Expert(ABC):
    """A scripted demonstrator for one simulated task (see the module docstring for the calling protocol).

    Class attributes each expert sets:
        task: the gym task id it solves (e.g. "AlohaTransferCube-v0").
        description: the task text stored with every recorded episode.
        stop_on_success: end an episode at its first success (the env reports `terminated` there), as PushT and
            XArm datasets do; False plays the whole `episode_length`, as the ALOHA scripted datasets do.
    """

    task: str = ""
    description: str = ""
    stop_on_success: bool = True

    def __init__(self, env: Any):
        self.env = env
        self.sim = env.unwrapped  # the simulator class under gymnasium's wrappers (TimeLimit, OrderEnforcing)

    @abstractmethod
    def reset(self, seed: int, observation: dict[str, Any]) -> None:
        """Prepare an episode: called right after `env.reset(seed=seed)` returned `observation`."""

    @abstractmethod
    def act(self, observation: dict[str, Any]) -> np.ndarray:
        """The action for the current step (float32, the env's action shape)."""

    @abstractmethod
    def environment_state(self) -> np.ndarray:
        """The privileged state of the current step, as obs_type `environment_state_agent_pos` reports it.

        The recorder reads it when the env observes pixels (whose observation lacks it), so that every dataset
        holds `observation.environment_state`, whatever was observed.
        """

    def success(self, info: dict[str, Any]) -> bool:
        """Whether the step that returned `info` achieved the task (the env's `is_success` unless overridden)."""
        return bool(info.get("is_success", False))

    def planned_success(self) -> bool | None:
        """After `reset`: whether the episode's plan already succeeded in the expert's own planning simulator
        (None when the expert does not plan ahead). The recorder skips replaying plans known to fail."""
        return None

    def close(self) -> None:  # noqa: B027 - an optional hook, nothing to free by default
        """Free what the expert built besides the env (e.g. a planning simulator)."""
