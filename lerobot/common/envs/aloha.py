"""ALOHA sim env that renders only the cameras it is asked for.

gym-aloha's task renders three 480x640 cameras (`top`, `angle`, `front_close`) on every step and its gym env
keeps only `top`. With software OpenGL each render costs ~100 ms, so an eval or a rollout runs at ~3 steps/s,
and a state-only policy pays for images it never looks at. This env builds the same dm_control physics
(gym-aloha's XML assets) and the same task (gym-aloha's task classes: identical control, dynamics and reward),
but replaces the observation: cameras are rendered only when an image observation asks for them, each through
a persistent camera (no scene re-allocation per frame), and never when only state is asked for.

Observation types (`obs_type`):
- `pixels`: {"pixels": {camera: (H, W, 3) uint8}}  (gym-aloha returns {"top": ...} without the `pixels` level);
- `pixels_agent_pos`: the above plus "agent_pos": (14,) joint positions, grippers normalised (as gym-aloha);
- `environment_state_agent_pos`: "agent_pos" plus "environment_state", the privileged object poses read from
  the physics (free-joint position xyz + quaternion wxyz): the cube (7) for transfer cube, the peg then the
  socket (14) for insertion. Nothing is rendered.

Shadow map: the XML asks for a 4096x4096 shadow map, which is about a fifth of a render's cost in software
OpenGL. `shadow_size=2048` (the value in lerobot/configs/env/aloha.yaml) renders ~20% faster and changes only
shadow-edge pixels: mean absolute difference ~0.03 (of 255), 0.06% of pixels off by more than 16, measured on
transfer-cube frames; the AV1 / H.264 videos of the ALOHA sim datasets differ from the raw renders 20-30x more
(mean ~0.7-0.9). `shadow_size=None` keeps the XML's value: frames identical to gym-aloha's.

Seeding: `reset(seed=s)` places the objects exactly as gym-aloha does for seed `s`; `reset()` without a seed
draws from the env's seeded generator (gym-aloha draws from OS entropy there, so episodes after the first are
not reproducible in it).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from dm_control import mujoco as dm_mujoco
from dm_control.mujoco import engine
from dm_control.rl import control
from gym_aloha import utils as aloha_utils
from gym_aloha.constants import ACTIONS, ASSETS_DIR, DT, JOINTS
from gym_aloha.tasks import sim as aloha_sim
from gymnasium import spaces

OBS_TYPES = ("pixels", "pixels_agent_pos", "environment_state_agent_pos")
TASKS = {
    # task name: (XML asset, gym-aloha task class, environment_state dim)
    "transfer_cube": ("bimanual_viperx_transfer_cube.xml", aloha_sim.TransferCubeTask, 7),
    "insertion": ("bimanual_viperx_insertion.xml", aloha_sim.InsertionTask, 14),
}
SUCCESS_REWARD = 4


def _observe_without_rendering(task_cls: type) -> type:
    """A subclass of a gym-aloha task whose observation skips the three renders (the env renders itself)."""

    def get_observation(self, physics):
        return {"qpos": self.get_qpos(physics), "env_state": self.get_env_state(physics)}

    return type(f"Unrendered{task_cls.__name__}", (task_cls,), {"get_observation": get_observation})


_UNRENDERED_TASKS = {name: _observe_without_rendering(cls) for name, (_, cls, _) in TASKS.items()}


class AlohaEnv(gym.Env):
    """gym-aloha's AlohaEnv (same constructor keywords) with lazy, per-camera rendering and a state-only mode.

    Extra keywords: `cameras`, the camera names put under `pixels` (default `("top",)`, what gym-aloha returns
    and what the ALOHA sim datasets hold; the model also has `angle`, `front_close`, `left_pillar` and
    `right_pillar`); `shadow_size`, the shadow-map resolution (None: the XML's 4096, see the module docstring).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(
        self,
        task: str,
        obs_type: str = "pixels_agent_pos",
        render_mode: str = "rgb_array",
        observation_width: int = 640,
        observation_height: int = 480,
        visualization_width: int = 640,
        visualization_height: int = 480,
        cameras: tuple[str, ...] | list[str] = ("top",),
        shadow_size: int | None = None,
    ):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"Unknown ALOHA task {task!r}; valid tasks: {sorted(TASKS)}.")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"Unknown ALOHA obs_type {obs_type!r}; valid obs_types: {list(OBS_TYPES)}.")
        if render_mode != "rgb_array":
            raise ValueError(
                f"ALOHA only renders to arrays: render_mode must be 'rgb_array', got {render_mode!r}."
            )
        self.task = task
        self.obs_type = obs_type
        self.render_mode = render_mode
        self.observation_width = observation_width
        self.observation_height = observation_height
        self.visualization_width = visualization_width
        self.visualization_height = visualization_height
        self.cameras = tuple(cameras) if "pixels" in obs_type else ()
        if "pixels" in obs_type and not self.cameras:
            raise ValueError(f"obs_type {obs_type!r} needs at least one camera; got cameras={cameras!r}.")

        xml_name, _, env_state_dim = TASKS[task]
        physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml_name))
        known = [physics.model.id2name(i, "camera") for i in range(physics.model.ncam)]
        unknown = [cam for cam in self.cameras if cam not in known]
        if unknown:
            raise ValueError(f"Unknown ALOHA camera(s) {unknown}; the model has {known}.")
        # Renders larger than the XML's offscreen framebuffer (640x480) need it enlarged before the GL context
        # exists; it is left as is otherwise, so that default renders match gym-aloha's.
        offscreen = physics.model.vis.global_
        offscreen.offwidth = max(offscreen.offwidth, observation_width, visualization_width)
        offscreen.offheight = max(offscreen.offheight, observation_height, visualization_height)
        if shadow_size is not None:
            if isinstance(shadow_size, bool) or not isinstance(shadow_size, int) or shadow_size < 1:
                raise ValueError(
                    f"shadow_size must be a positive int (or None for the XML's), got {shadow_size!r}."
                )
            physics.model.vis.quality.shadowsize = shadow_size
        # Same wiring as gym-aloha: no time limit here (TimeLimit does it), 50 Hz control, 10 physics sub-steps.
        self._env = control.Environment(
            physics,
            _UNRENDERED_TASKS[task](),
            time_limit=float("inf"),
            control_timestep=DT,
            n_sub_steps=None,
            flat_observation=False,
        )
        self._cameras: dict[tuple[str, int, int], engine.Camera] = {}
        self._frames: dict[tuple[str, int, int], np.ndarray] = {}  # renders of the current state

        self.observation_space = self._make_observation_space(env_state_dim)
        self.action_space = spaces.Box(low=-1, high=1, shape=(len(ACTIONS),), dtype=np.float32)

    def _make_observation_space(self, env_state_dim: int) -> spaces.Dict:
        image = spaces.Box(0, 255, (self.observation_height, self.observation_width, 3), dtype=np.uint8)
        pixels = spaces.Dict({cam: image for cam in self.cameras})
        agent_pos = spaces.Box(-1000.0, 1000.0, (len(JOINTS),), dtype=np.float64)
        if self.obs_type == "pixels":
            return spaces.Dict({"pixels": pixels})
        if self.obs_type == "pixels_agent_pos":
            return spaces.Dict({"pixels": pixels, "agent_pos": agent_pos})
        env_state = spaces.Box(-1000.0, 1000.0, (env_state_dim,), dtype=np.float64)
        return spaces.Dict({"agent_pos": agent_pos, "environment_state": env_state})

    @property
    def physics(self) -> dm_mujoco.Physics:
        """The dm_control physics, e.g. for scripted experts that read body poses."""
        return self._env.physics

    def _render_camera(self, camera: str, width: int, height: int) -> np.ndarray:
        """Render one camera of the current state, at most once per state and size."""
        key = (camera, width, height)
        frame = self._frames.get(key)
        if frame is None:
            cam = self._cameras.get(key)
            if cam is None:
                cam = self._cameras[key] = engine.Camera(self.physics, height, width, camera_id=camera)
            frame = self._frames[key] = cam.render().copy()  # render() returns a view of its buffer
        return frame

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        self._frames.clear()  # the state changed: earlier renders are stale
        obs: dict[str, Any] = {}
        if self.cameras:
            w, h = self.observation_width, self.observation_height
            obs["pixels"] = {cam: self._render_camera(cam, w, h) for cam in self.cameras}
        if self.obs_type != "pixels":
            obs["agent_pos"] = raw["qpos"]
        if self.obs_type == "environment_state_agent_pos":
            obs["environment_state"] = raw["env_state"]
        return obs

    def _sample_object_pose(self, seed: int | None) -> np.ndarray:
        if seed is None:
            # Reproducible continuation of a seeded env (gym-aloha would use OS entropy here).
            seed = int(self.np_random.integers(0, 2**31 - 1))
        if self.task == "transfer_cube":
            return aloha_utils.sample_box_pose(seed)
        return np.concatenate(aloha_utils.sample_insertion_pose(seed))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        # gym-aloha's tasks read the object pose from this module-level slot during initialize_episode.
        aloha_sim.BOX_POSE[0] = self._sample_object_pose(seed)
        raw = self._env.reset().observation
        return self._observation(raw), {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict]:
        action = np.asarray(action)
        if action.shape != (len(ACTIONS),):
            raise ValueError(f"ALOHA expects one action of shape ({len(ACTIONS)},), got {action.shape}.")
        timestep = self._env.step(action)
        reward = timestep.reward
        is_success = reward == SUCCESS_REWARD
        return self._observation(timestep.observation), reward, is_success, False, {"is_success": is_success}

    def render(self) -> np.ndarray:
        """The `top` camera at the visualization size (shared with the observation render when sizes match)."""
        return self._render_camera("top", self.visualization_width, self.visualization_height)

    def close(self) -> None:
        """Free the GL context now rather than at garbage collection."""
        self._frames.clear()
        self._cameras.clear()
        physics = self._env.physics
        if getattr(physics, "_contexts", None):
            physics._free_rendering_contexts()
