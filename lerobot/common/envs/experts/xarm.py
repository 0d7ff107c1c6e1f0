"""A scripted XArm lift expert: above the cube, down, close the gripper, lift.

Actions are gym-xarm's: end-effector displacement xyz in [-1, 1] (scaled by the env, and limited by its arm
speed to ~4 mm per step) and a gripper command (+1 closes, -1 opens). Each phase aims the end effector at a
target with a proportional command, saturated; the targets come from the privileged cube position.

Success: the cube raised by 0.15 m (gym-xarm's threshold) above its start, `obj[2] + center_of_table[2] >=
z_target`. Our XArm env (`lerobot.common.envs.xarm`) reports exactly that as `is_success`, fixing gym-xarm 0.1.1's
check, which mixes the table and world frames and never holds; the expert checks it itself as well, so it also
judges the unmodified env correctly. Recording ends at that step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lerobot.common.envs.experts.base import Expert

GAIN = 100.0  # command per metre of error: saturates beyond 1 cm
ABOVE = 0.06  # metres above the cube before descending
GRASP_STEPS = 8  # steps of closing before lifting
LIFT_HEIGHT = 0.2  # aim above the success height so that the arm does not slow down before reaching it
OPEN, CLOSE = -1.0, 1.0


class XarmLiftExpert(Expert):
    task = "XarmLift-v0"
    description = "Pick up the cube and lift it."
    stop_on_success = True

    def __init__(self, env: Any):
        super().__init__(env)
        self._phase = "approach"
        self._grasp_steps = 0
        self._lift_xy = np.zeros(2)
        self._start_z = 0.0

    def reset(self, seed: int, observation: dict[str, Any]) -> None:
        self._phase = "approach"
        self._grasp_steps = 0
        self._start_z = float(self.sim.obj[2])

    def environment_state(self) -> np.ndarray:
        return np.array(self.sim.obj)  # what obs_type environment_state_agent_pos returns

    def success(self, info: dict[str, Any]) -> bool:
        """The cube 0.15 m above its start (see the module docstring), whatever the env's own check says."""
        lifted = self.sim.obj[2] + self.sim.center_of_table[2] >= self.sim.z_target
        return bool(lifted or info.get("is_success", False))

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        eef, cube = np.array(self.sim.eef), np.array(self.sim.obj)
        gripper = OPEN
        if self._phase == "approach":
            target = cube + [0.0, 0.0, ABOVE]
            if np.linalg.norm((target - eef)[:2]) < 0.01 and abs(target[2] - eef[2]) < 0.02:
                self._phase = "descend"
        if self._phase == "descend":
            target = cube.copy()
            if np.linalg.norm(target - eef) < 0.008:
                self._phase = "grasp"
        if self._phase == "grasp":
            target, gripper = eef, CLOSE
            self._grasp_steps += 1
            if self._grasp_steps >= GRASP_STEPS:
                self._phase = "lift"
                self._lift_xy = cube[:2]
        if self._phase == "lift":
            target, gripper = np.array([*self._lift_xy, self._start_z + LIFT_HEIGHT]), CLOSE
        move = np.clip((target - eef) * GAIN, -1.0, 1.0)
        return np.array([*move, gripper], dtype=np.float32)
