"""Scripted experts for the simulated tasks, and the recorder that turns their episodes into LeRobot datasets.

    from lerobot.common.envs.experts import record_sim_demos
    summary = record_sim_demos(env_cfg, num_episodes=50, repo_id="local/aloha_transfer_cube_scripted",
                               root="outputs/data/aloha_transfer_cube_scripted", state_only=True)

| task | expert | how |
|---|---|---|
| AlohaTransferCube-v0, AlohaInsertion-v0 | `aloha.AlohaTransferCubeExpert`, `aloha.AlohaInsertionExpert` | ACT-paper waypoints in the end-effector scene, joint trajectory replayed in the joint-space env |
| XarmLift-v0 | `xarm.XarmLiftExpert` | above the cube, down, grasp, lift |
| PushT-v0 | `pusht.PushTExpert` | pushes planned on a copy of the pymunk scene |

Expert modules import their simulator; they are loaded on demand, so that importing this package needs none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lerobot.common.envs.experts.base import Expert

# gym task id -> "module:Class" of its expert.
EXPERTS: dict[str, str] = {
    "AlohaTransferCube-v0": "lerobot.common.envs.experts.aloha:AlohaTransferCubeExpert",
    "AlohaInsertion-v0": "lerobot.common.envs.experts.aloha:AlohaInsertionExpert",
    "XarmLift-v0": "lerobot.common.envs.experts.xarm:XarmLiftExpert",
    "PushT-v0": "lerobot.common.envs.experts.pusht:PushTExpert",
}


def expert_class(task: str) -> type[Expert]:
    """The expert class of a gym task id (imports its simulator)."""
    if task not in EXPERTS:
        raise ValueError(f"No scripted expert for env.task={task!r}; experts exist for {sorted(EXPERTS)}.")
    module, name = EXPERTS[task].split(":")
    return getattr(importlib.import_module(module), name)


def make_expert(task: str, env: Any) -> Expert:
    """The expert of `task`, bound to `env` (one env of `make_env(cfg).envs`, i.e. gym.make's wrapped env)."""
    return expert_class(task)(env)


# After the registry: the recorder looks experts up through it.
from lerobot.common.envs.experts.recorder import RecordSummary, episode_seed, record_sim_demos  # noqa: E402

__all__ = ["EXPERTS", "RecordSummary", "episode_seed", "expert_class", "make_expert", "record_sim_demos"]
