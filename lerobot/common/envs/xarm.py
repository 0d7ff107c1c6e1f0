"""gym-xarm's Lift env with a privileged-state observation, a working success check and a rendering fix.

Three changes to `gym_xarm.tasks.Lift`, which it otherwise leaves untouched:

- obs_type `environment_state_agent_pos`: "agent_pos" is the same 4-vector as in `pixels_agent_pos` (what the
  XArm datasets call observation.state), "environment_state" is the cube's position (3, relative to the table
  centre, the frame gym-xarm uses for its reward). Nothing is rendered, so state-based policies train and
  evaluate at physics speed.
- `is_success` as the check means it: the cube raised by 0.15 m (gym-xarm's threshold) above its start. gym-xarm
  0.1.1 compares the cube height in the table frame (`obj[2]`, about -0.07 at rest) with a target in the world
  frame (`z_target`, about 0.72), which no reachable height satisfies, so its env never reports success (and
  never terminates an episode early). Here `info["is_success"]` and `terminated` hold once the cube is lifted,
  which is what eval.py's success rate and the recorded `next.success` count.
- rendering that survives other XArm envs being closed or garbage-collected. gymnasium's offscreen viewer makes
  its GL context current only when it is created, and a viewer's MuJoCo render context (framebuffers,
  textures) is freed at garbage collection in whatever GL context is current then: another env's, whose
  objects with the same ids get deleted. Both made every later XArm observation render all black, silently.
  Here every render first makes its own context current, and `close()` (also called on garbage collection)
  frees the render context inside its own GL context.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

import numpy as np
from gym_xarm.tasks.lift import Lift
from gymnasium import spaces

OBS_TYPES = ("state", "pixels", "pixels_agent_pos", "environment_state_agent_pos")
ENV_STATE_DIM = 3
_OPEN_ENVS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_envs() -> None:
    """Close envs still open at exit while the GL modules are intact (their finalizers fail noisily later)."""
    for env in list(_OPEN_ENVS):
        env.close()


class XarmLiftEnv(Lift):
    """`gym_xarm/XarmLift-v0` plus obs_type `environment_state_agent_pos` (see the module docstring)."""

    def __init__(self, obs_type: str = "state", **kwargs: Any):
        if obs_type not in OBS_TYPES:
            raise ValueError(f"Unknown XArm obs_type {obs_type!r}; valid obs_types: {list(OBS_TYPES)}.")
        super().__init__(obs_type=obs_type, **kwargs)
        self._render_contexts_freed = False
        _OPEN_ENVS.add(self)

    def _initialize_observation_space(self) -> spaces.Space:
        if self.obs_type != "environment_state_agent_pos":
            return super()._initialize_observation_space()
        agent_dim = self.robot_state.shape[0]
        return spaces.Dict(
            {
                "agent_pos": spaces.Box(-1000.0, 1000.0, shape=(agent_dim,), dtype=np.float64),
                "environment_state": spaces.Box(-1000.0, 1000.0, shape=(ENV_STATE_DIM,), dtype=np.float64),
            }
        )

    def is_success(self) -> bool:
        # Both heights in the world frame (see the module docstring).
        return bool(self.obj[2] + self.center_of_table[2] >= self.z_target)

    def get_obs(self) -> Any:
        if self.obs_type == "environment_state_agent_pos":
            return {"agent_pos": self.robot_state, "environment_state": self.obj}
        return super().get_obs()

    def _render(self, renderer: Any) -> np.ndarray | None:
        # `_get_viewer` is gymnasium 0.29's (pinned) way to reach the offscreen viewer and its GL context.
        renderer._get_viewer(render_mode=self.render_mode).make_context_current()
        return super()._render(renderer)

    def close(self) -> None:
        if getattr(self, "_render_contexts_freed", True):
            return  # closed already, or __init__ failed before the renderers existed
        self._render_contexts_freed = True
        for renderer in (self.observation_renderer, self.visualization_renderer):
            for viewer in renderer._viewers.values():
                viewer.make_context_current()
                viewer.con.free()  # now, in its own GL context (see the module docstring)
        super().close()

    def __del__(self):
        try:  # noqa: SIM105 - contextlib may already be torn down at interpreter exit
            self.close()
        except Exception:
            pass
