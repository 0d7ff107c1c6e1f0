"""Build batched simulation envs from the `env` section of a config.

`make_env(cfg, n_envs)` returns a gymnasium vector env of `n_envs` copies of `gym_<cfg.env.name>/<cfg.env.task>`,
each limited to `cfg.env.episode_length` steps and built with the keyword arguments in `cfg.env.gym`. Eval and
online training both go through it, so every env is configured in exactly one place: the env yaml.

ALOHA and XArm are built from our subclasses (`lerobot.common.envs.aloha`, `lerobot.common.envs.xarm`), which
keep the packages' dynamics and rewards but add the `environment_state_agent_pos` observation, render only
what is observed, and avoid two rendering pitfalls of the packages.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:  # gymnasium is an optional extra: imported only when an env is built
    from gymnasium.vector import VectorEnv


@dataclasses.dataclass(frozen=True)
class SimSpec:
    """What `make_env` needs to know about one simulator package."""

    package: str  # importing it registers the gym ids `gym_<name>/<task>`
    extra: str  # the pip extra of this project that installs it
    tasks: tuple[str, ...]
    entry_point: str | None = None  # our env class replacing the package's, "module:Class"


SIMS: dict[str, SimSpec] = {
    "pusht": SimSpec("gym_pusht", "pusht", ("PushT-v0",)),
    "aloha": SimSpec(
        "gym_aloha",
        "aloha",
        ("AlohaInsertion-v0", "AlohaTransferCube-v0"),
        entry_point="lerobot.common.envs.aloha:AlohaEnv",
    ),
    "xarm": SimSpec("gym_xarm", "xarm", ("XarmLift-v0",), entry_point="lerobot.common.envs.xarm:XarmLiftEnv"),
}


def _env_config(cfg: Any) -> DictConfig:
    """Accept a full config (with `env`), an env config alone, or plain dicts of either."""
    if not isinstance(cfg, DictConfig):
        if not isinstance(cfg, Mapping):
            raise TypeError(f"make_env expects a config (DictConfig or dict), got {type(cfg).__name__}.")
        cfg = OmegaConf.create(dict(cfg))
    env_cfg = cfg.get("env", None)
    if env_cfg is None and "name" in cfg:
        env_cfg = cfg
    if env_cfg is None or env_cfg.get("name", None) is None:
        raise KeyError("The config has no `env.name`; load an env yaml, e.g. lerobot/configs/env/pusht.yaml.")
    return env_cfg


def _check_name_and_task(name: str, task: str | None) -> SimSpec:
    if name == "real_world":
        raise ValueError("env.name 'real_world' is a physical robot: there is no simulator to build.")
    if name not in SIMS:
        raise ValueError(f"Unknown env.name {name!r}; valid names: {sorted(SIMS)}.")
    spec = SIMS[name]
    if task not in spec.tasks:
        raise ValueError(f"Unknown env.task {task!r} for env {name!r}; valid tasks: {list(spec.tasks)}.")
    return spec


def _use_headless_rendering() -> None:
    """Default MuJoCo and PyOpenGL to EGL (off-screen) unless the user chose a backend.

    Must run before mujoco / dm_control / PyOpenGL are imported: they read these variables at import time.
    Without a display, their defaults (GLFW / GLX) fail or pick mismatching backends.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


def _silence_adroit_notice() -> None:
    """gymnasium-robotics prints a notice about its Adroit-hand rewards on import (XArm needs the package, not
    those envs); it would appear in every training and eval log, so drop it before the import."""
    try:
        from farama_notifications import notifications
    except ImportError:
        return
    notifications.pop("gymnasium_robotics", None)


def _import_sim(name: str, spec: SimSpec) -> None:
    _use_headless_rendering()
    _silence_adroit_notice()
    try:
        importlib.import_module("gymnasium")
        importlib.import_module(spec.package)
        if spec.entry_point is not None:
            importlib.import_module(spec.entry_point.split(":")[0])
    except ImportError as e:
        raise ImportError(
            f'The {name!r} simulator is not installed ({e}). Install it with: pip install -e ".[{spec.extra}]"'
        ) from e


def _env_factory(
    package: str, handle: str, entry_point: str | None, max_steps: int | None, kwargs: dict
) -> Callable:
    """A thunk building one env; AsyncVectorEnv pickles it (cloudpickle) and calls it in each fresh worker."""

    def make_one():
        import gymnasium as gym

        _use_headless_rendering()
        importlib.import_module(package)  # registers the gym ids; a spawned worker has not imported it yet
        spec = gym.spec(handle)
        if entry_point is not None:
            spec = dataclasses.replace(spec, entry_point=entry_point)
        return gym.make(spec, max_episode_steps=max_steps, disable_env_checker=True, **kwargs)

    return make_one


def make_env(
    cfg: Any,
    n_envs: int = 1,
    use_async_envs: bool = False,
    async_context: str | None = None,
) -> VectorEnv:
    """Build a vector env of `n_envs` simulators described by `cfg.env` (see lerobot/configs/env/*.yaml).

    Args:
        cfg: a config with an `env` section (`name`, `task`, `episode_length`, `gym` kwargs), the `env` section
            itself, or a plain dict of either.
        n_envs: number of parallel copies (seed them with `env.reset(seed=[...])` or `reset(seed=s)`).
        use_async_envs: one subprocess per env (`AsyncVectorEnv`) instead of stepping them in turn.
        async_context: multiprocessing start method for async envs. Default "forkserver" (else "spawn"), not
            "fork": a forked worker inherits the parent's OpenGL state and XArm hangs. The calling script needs
            the usual `if __name__ == "__main__":` guard.

    Returns:
        `gymnasium.vector.SyncVectorEnv` or `AsyncVectorEnv`; observations are batched numpy arrays, ready for
        `preprocess_observation`.
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}.")
    env_cfg = _env_config(cfg)
    name, task = env_cfg.name, env_cfg.get("task", None)
    spec = _check_name_and_task(name, task)
    _import_sim(name, spec)
    import gymnasium as gym

    gym_kwargs = env_cfg.get("gym", None)
    gym_kwargs = OmegaConf.to_container(gym_kwargs, resolve=True) if gym_kwargs is not None else {}
    max_steps = env_cfg.get("episode_length", None)
    thunk = _env_factory(spec.package, f"gym_{name}/{task}", spec.entry_point, max_steps, gym_kwargs)
    if not use_async_envs:
        return gym.vector.SyncVectorEnv([thunk] * n_envs)
    if async_context is None:
        methods = multiprocessing.get_all_start_methods()
        async_context = "forkserver" if "forkserver" in methods else "spawn"
    return gym.vector.AsyncVectorEnv([thunk] * n_envs, context=async_context)


# What each gym `obs_type` provides, as dataset keys (`preprocess_observation`'s mapping).
_OBS_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "pixels": ("images",),
    "pixels_agent_pos": ("images", "observation.state"),
    "environment_state_agent_pos": ("observation.environment_state", "observation.state"),
}


def observation_keys(cfg: Any) -> list[str] | None:
    """The dataset keys a simulated env observes under its configured `gym.obs_type` (cameras from the env
    config's `image_keys`), or None for a config without a simulator (`env.name: real_world`).

    Training uses this to feed a policy exactly the inputs it will get at evaluation time.
    """
    env_cfg = _env_config(cfg)
    if env_cfg.name not in SIMS:
        return None
    gym_kwargs = env_cfg.get("gym", None) or {}
    obs_type = gym_kwargs.get("obs_type", "pixels_agent_pos")
    if obs_type not in _OBS_TYPE_KEYS:
        raise ValueError(
            f"env.gym.obs_type={obs_type!r} gives observations without dataset names; policies can use one of "
            f"{sorted(_OBS_TYPE_KEYS)}."
        )
    keys: list[str] = []
    for key in _OBS_TYPE_KEYS[obs_type]:
        keys += list(env_cfg.get("image_keys", None) or []) if key == "images" else [key]
    return keys
