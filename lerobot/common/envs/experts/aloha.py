"""Scripted ALOHA experts (transfer cube, insertion), made the way the ACT paper made its sim demonstrations.

1. Plan in the end-effector scene gym-aloha ships (`bimanual_viperx_end_effector_<task>.xml`: each gripper is
   welded to a mocap body): piecewise-linear waypoints for both grippers (pose + opening), computed from the
   object pose of the episode, are played open loop for `episode_length` steps. The arm joints follow the mocap
   bodies; after each step the 14 joint positions are read, with each gripper's entry replaced by the gripper
   command (normalised, as the joint-space action expects it).
2. Replay: that joint trajectory is the action sequence of the joint-space env (`AlohaEnv`, built by `make_env`)
   reset with the same seed, hence the same object pose. The recorder records this replay: its observations and
   actions are exactly what the joint-space env saw and was given. Action `t` is the end-effector scene's joint
   state after `t` steps (action 0 is the start pose), as in the ACT recordings.

Success is judged on the replay (the env's `is_success`: reward 4 reached). The waypoints are those of the ACT
scripted policies (`PickAndTransferPolicy`, `InsertionPolicy`), written for 400-step episodes at 50 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from dm_control.suite import base as suite_base
from gym_aloha import utils as aloha_utils
from gym_aloha.constants import ASSETS_DIR, DT, normalize_puppet_gripper_position
from gym_aloha.tasks import sim_end_effector

from lerobot.common.envs.aloha import SUCCESS_REWARD, TASKS
from lerobot.common.envs.experts.base import Expert

# ------------------------------------------------------------------------------ quaternions (w, x, y, z)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b: rotation b applied first, in a's frame."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_from_axis_angle(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    axis_arr = np.asarray(axis, dtype=np.float64)
    half = np.deg2rad(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * axis_arr / np.linalg.norm(axis_arr)])


# ------------------------------------------------------------------------------ waypoints


@dataclass(frozen=True)
class Waypoint:
    t: int  # control step at which the gripper is at this pose
    xyz: np.ndarray
    quat: np.ndarray  # w, x, y, z
    gripper: float  # normalised opening: 0 closed, 1 open


def interpolate(waypoints: list[Waypoint], t: int) -> np.ndarray:
    """[xyz, quat, gripper] at step t, linear between the surrounding waypoints; held after the last one.

    Quaternions are interpolated component-wise, unnormalised, as the ACT scripts do: MuJoCo normalises mocap
    quaternions, and the turns between waypoints are small enough for this to stay close to a slerp.
    """
    for before, after in zip(waypoints, waypoints[1:], strict=False):
        if before.t <= t < after.t:
            frac = (t - before.t) / (after.t - before.t)
            return np.concatenate(
                [
                    before.xyz + (after.xyz - before.xyz) * frac,
                    before.quat + (after.quat - before.quat) * frac,
                    [before.gripper + (after.gripper - before.gripper) * frac],
                ]
            )
    last = waypoints[-1]
    return np.concatenate([last.xyz, last.quat, [last.gripper]])


def transfer_cube_waypoints(
    left_start: np.ndarray, right_start: np.ndarray, env_state: np.ndarray
) -> tuple[list[Waypoint], list[Waypoint]]:
    """The right gripper picks the cube and carries it to a meeting point where the left gripper takes it."""
    cube = env_state[:3]
    pick = quat_multiply(right_start[3:], quat_from_axis_angle((0, 1, 0), -60))  # tilted towards the table
    meet_left = quat_from_axis_angle((1, 0, 0), 90)
    upright = np.array([1.0, 0.0, 0.0, 0.0])
    meet = np.array([0.0, 0.5, 0.25])
    left = [
        Waypoint(0, left_start[:3], left_start[3:], 0),
        Waypoint(100, meet + [-0.1, 0, -0.02], meet_left, 1),  # approach the meeting point, open
        Waypoint(260, meet + [0.02, 0, -0.02], meet_left, 1),  # around the cube
        Waypoint(310, meet + [0.02, 0, -0.02], meet_left, 0),  # close
        Waypoint(360, meet + [-0.1, 0, -0.02], upright, 0),  # pull the cube away
        Waypoint(400, meet + [-0.1, 0, -0.02], upright, 0),
    ]
    right = [
        Waypoint(0, right_start[:3], right_start[3:], 0),
        Waypoint(90, cube + [0, 0, 0.08], pick, 1),  # above the cube, open
        Waypoint(130, cube + [0, 0, -0.015], pick, 1),  # down around it
        Waypoint(170, cube + [0, 0, -0.015], pick, 0),  # close
        Waypoint(200, meet + [0.05, 0, 0], pick, 0),  # lift towards the meeting point
        Waypoint(220, meet, pick, 0),
        Waypoint(310, meet, pick, 1),  # let go once the left gripper holds it
        Waypoint(360, meet + [0.1, 0, 0], pick, 1),  # move out of the way
        Waypoint(400, meet + [0.1, 0, 0], pick, 1),
    ]
    return left, right


def insertion_waypoints(
    left_start: np.ndarray, right_start: np.ndarray, env_state: np.ndarray
) -> tuple[list[Waypoint], list[Waypoint]]:
    """Left gripper picks the socket, right gripper the peg; they meet in the air and the peg goes in."""
    peg, socket = env_state[:3], env_state[7:10]
    # Both derived from the right gripper's start orientation, as in the ACT script (the start poses are equal).
    pick_right = quat_multiply(right_start[3:], quat_from_axis_angle((0, 1, 0), -60))
    pick_left = quat_multiply(right_start[3:], quat_from_axis_angle((0, 1, 0), 60))
    meet = np.array([0.0, 0.5, 0.15])
    lift_right = 0.00715  # the peg is held slightly higher so that it lines up with the socket's hole
    left = [
        Waypoint(0, left_start[:3], left_start[3:], 0),
        Waypoint(120, socket + [0, 0, 0.08], pick_left, 1),
        Waypoint(170, socket + [0, 0, -0.03], pick_left, 1),
        Waypoint(220, socket + [0, 0, -0.03], pick_left, 0),
        Waypoint(285, meet + [-0.1, 0, 0], pick_left, 0),
        Waypoint(340, meet + [-0.05, 0, 0], pick_left, 0),  # insertion
        Waypoint(400, meet + [-0.05, 0, 0], pick_left, 0),
    ]
    right = [
        Waypoint(0, right_start[:3], right_start[3:], 0),
        Waypoint(120, peg + [0, 0, 0.08], pick_right, 1),
        Waypoint(170, peg + [0, 0, -0.03], pick_right, 1),
        Waypoint(220, peg + [0, 0, -0.03], pick_right, 0),
        Waypoint(285, meet + [0.1, 0, lift_right], pick_right, 0),
        Waypoint(340, meet + [0.05, 0, lift_right], pick_right, 0),  # insertion
        Waypoint(400, meet + [0.05, 0, lift_right], pick_right, 0),
    ]
    return left, right


# ------------------------------------------------------------------------------ the end-effector scene


def _ee_task_class(task_cls: type) -> type:
    """gym-aloha's end-effector task, with the object pose given (it samples one from OS entropy) and an
    observation that renders nothing (it renders three cameras per step; the planner reads the physics)."""

    def initialize_episode(self, physics):
        self.initialize_robots(physics)
        for joint, start in self.object_joints:
            physics.named.data.qpos[joint] = self.object_pose[start : start + 7]
        suite_base.Task.initialize_episode(self, physics)

    def get_observation(self, physics):
        return {}

    return type(
        f"Planned{task_cls.__name__}",
        (task_cls,),
        {"initialize_episode": initialize_episode, "get_observation": get_observation},
    )


# task: (XML, gym-aloha end-effector task, free joints of the objects with their offset in the pose vector)
EE_SCENES = {
    "transfer_cube": (
        "bimanual_viperx_end_effector_transfer_cube.xml",
        _ee_task_class(sim_end_effector.TransferCubeEndEffectorTask),
        (("red_box_joint", 0),),
    ),
    "insertion": (
        "bimanual_viperx_end_effector_insertion.xml",
        _ee_task_class(sim_end_effector.InsertionEndEffectorTask),
        (("red_peg_joint", 0), ("blue_socket_joint", 7)),
    ),
}
WAYPOINTS = {"transfer_cube": transfer_cube_waypoints, "insertion": insertion_waypoints}


def object_pose(task: str, seed: int) -> np.ndarray:
    """The object pose `AlohaEnv.reset(seed=seed)` places (gym-aloha's samplers), cube or peg then socket."""
    if task == "transfer_cube":
        return aloha_utils.sample_box_pose(seed)
    return np.concatenate(aloha_utils.sample_insertion_pose(seed))


@dataclass
class EndEffectorRollout:
    joint_trajectory: np.ndarray  # (num_steps + 1, 14): joint state at reset, then after each step
    rewards: np.ndarray  # (num_steps,)
    object_pose: np.ndarray  # at reset

    @property
    def success(self) -> bool:
        return bool(len(self.rewards) and self.rewards.max() >= SUCCESS_REWARD)


class EndEffectorScene:
    """The mocap variant of an ALOHA task, stepped by the waypoint script (no rendering)."""

    def __init__(self, task: str):
        if task not in EE_SCENES:
            raise ValueError(f"Unknown ALOHA task {task!r}; scripted experts exist for {sorted(EE_SCENES)}.")
        self.task = task
        xml, task_cls, joints = EE_SCENES[task]
        self.physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
        self._task = task_cls()
        self._task.object_joints = joints
        # The wiring of gym-aloha's joint-space env: 50 Hz control, physics sub-steps from the XML's timestep.
        self._env = control.Environment(
            self.physics,
            self._task,
            time_limit=float("inf"),
            control_timestep=DT,
            n_sub_steps=None,
            flat_observation=False,
        )

    def _joint_command(self) -> np.ndarray:
        """14 joint positions, each gripper's entry replaced by its (normalised) position command."""
        joints = self._task.get_qpos(self.physics)
        ctrl = self.physics.data.ctrl
        joints[6] = normalize_puppet_gripper_position(ctrl[0])
        joints[13] = normalize_puppet_gripper_position(ctrl[2])
        return joints

    def rollout(self, seed: int, num_steps: int) -> EndEffectorRollout:
        self._task.object_pose = object_pose(self.task, seed)
        self._env.reset()
        data = self.physics.data
        left_start = np.concatenate([data.mocap_pos[0], data.mocap_quat[0]])
        right_start = np.concatenate([data.mocap_pos[1], data.mocap_quat[1]])
        env_state = self._task.get_env_state(self.physics)
        left, right = WAYPOINTS[self.task](left_start, right_start, env_state)
        joints = [self._joint_command()]
        rewards = np.zeros(num_steps)
        for t in range(num_steps):
            action = np.concatenate([interpolate(left, t), interpolate(right, t)])
            rewards[t] = self._env.step(action).reward
            joints.append(self._joint_command())
        return EndEffectorRollout(np.stack(joints), rewards, env_state)


# ------------------------------------------------------------------------------ experts


class AlohaScriptedExpert(Expert):
    """Plans each episode in the end-effector scene, then gives the joint-space env that joint trajectory."""

    sim_task = ""  # key of lerobot.common.envs.aloha.TASKS
    stop_on_success = False  # as the ACT recordings: the whole episode, also after the hand-over

    def __init__(self, env: Any):
        super().__init__(env)
        if getattr(self.sim, "task", None) != self.sim_task:
            raise ValueError(
                f"{type(self).__name__} needs an ALOHA {self.sim_task!r} env, got {type(self.sim).__name__} "
                f"with task {getattr(self.sim, 'task', None)!r}."
            )
        self.scene = EndEffectorScene(self.sim_task)
        self.num_steps = int(env.spec.max_episode_steps or 400) if env.spec is not None else 400
        self.plan: EndEffectorRollout | None = None
        self._t = 0

    def reset(self, seed: int, observation: dict[str, Any]) -> None:
        self.plan = self.scene.rollout(seed, self.num_steps)
        self._t = 0

    def act(self, observation: dict[str, Any]) -> np.ndarray:
        if self.plan is None:
            raise RuntimeError("Call reset(seed, observation) before act(): the episode has no plan yet.")
        trajectory = self.plan.joint_trajectory
        action = trajectory[min(self._t, len(trajectory) - 1)]
        self._t += 1
        return action.astype(np.float32)

    def planned_success(self) -> bool | None:
        return None if self.plan is None else self.plan.success

    def environment_state(self) -> np.ndarray:
        return TASKS[self.sim_task][1].get_env_state(self.sim.physics)


class AlohaTransferCubeExpert(AlohaScriptedExpert):
    task = "AlohaTransferCube-v0"
    sim_task = "transfer_cube"
    description = "Pick up the cube with the right arm and transfer it to the left arm."


class AlohaInsertionExpert(AlohaScriptedExpert):
    task = "AlohaInsertion-v0"
    sim_task = "insertion"
    description = "Insert the peg into the socket."
