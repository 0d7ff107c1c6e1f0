"""Simulation envs: the factory, the observation mapping, our ALOHA and XArm env classes.

Tests that need a simulator skip when its extra (pusht / aloha / xarm) is not installed; the factory's errors
and `preprocess_observation` are tested everywhere. Episodes are a few steps long: rendering is software-only.
"""

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Off-screen rendering, set before any simulator (dm_control reads it at import time).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lerobot.common.envs import SIMS, make_env, preprocess_observation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "lerobot" / "configs" / "env"
PACKAGES = {"pusht": "gym_pusht", "aloha": "gym_aloha", "xarm": "gym_xarm"}


def env_cfg(name: str, obs_type: str | None = None, task: str | None = None, episode_length: int = 4, **gym):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    cfg.env.episode_length = episode_length
    if obs_type is not None:
        cfg.env.gym.obs_type = obs_type
    if task is not None:
        cfg.env.task = task
    for key, value in gym.items():
        cfg.env.gym[key] = value
    return cfg


def require(name: str) -> None:
    pytest.importorskip(PACKAGES[name], reason=f"the {name} extra is not installed")


# ------------------------------------------------------------------------------ preprocess_observation


def test_preprocess_maps_keys_and_converts_images():
    img = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    img[0, 1, 2] = [255, 0, 51]
    out = preprocess_observation(
        {"pixels": img, "agent_pos": np.ones((2, 3)), "environment_state": np.arange(8).reshape(2, 4)}
    )
    assert set(out) == {"observation.image", "observation.state", "observation.environment_state"}
    image = out["observation.image"]
    assert image.shape == (2, 3, 4, 5) and image.dtype == torch.float32
    assert image[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert out["observation.state"].dtype == torch.float32 and out["observation.state"].shape == (2, 3)
    assert out["observation.environment_state"].dtype == torch.float32
    assert out["observation.environment_state"][1].tolist() == [4, 5, 6, 7]


def test_preprocess_camera_dict_tensor_input_and_bare_images():
    cams = {"top": np.zeros((1, 6, 8, 3), np.uint8), "wrist": torch.zeros(1, 2, 2, 3, dtype=torch.uint8)}
    out = preprocess_observation({"pixels": cams, "agent_pos": torch.zeros(1, 14, dtype=torch.float64)})
    assert out["observation.images.top"].shape == (1, 3, 6, 8)
    assert out["observation.images.wrist"].shape == (1, 3, 2, 2)
    assert out["observation.state"].dtype == torch.float32
    bare = preprocess_observation(np.full((3, 2, 2, 3), 255, np.uint8))  # obs_type "pixels" of PushT / XArm
    assert list(bare) == ["observation.image"] and bare["observation.image"].min() == 1.0


@pytest.mark.parametrize(
    ("obs", "error", "match"),
    [
        ({"pixels": np.zeros((1, 4, 4, 3), np.float32)}, TypeError, "must be uint8"),
        ({"pixels": np.zeros((1, 3, 4, 4), np.uint8)}, ValueError, "Channel-first"),
        ({"pixels": np.zeros((4, 4, 3), np.uint8)}, ValueError, "unbatched"),
        ({"pixels": {}}, ValueError, "empty dict"),
        ({"pixels": [[1]]}, TypeError, "numpy array or a torch tensor"),
        ({"agent_pos": np.zeros(3)}, ValueError, r"\(batch, dim\)"),
        ({"agent_pos": np.array([["a"]])}, TypeError, "numeric"),
        ({"qpos": np.zeros((1, 3))}, KeyError, "known observation keys"),
        (np.zeros((2, 5)), ValueError, "environment_state_agent_pos"),
        (
            {"pixels": np.zeros((2, 4, 4, 3), np.uint8), "agent_pos": np.zeros((3, 2))},
            ValueError,
            "batch size",
        ),
    ],
)
def test_preprocess_rejects_bad_observations(obs, error, match):
    with pytest.raises(error, match=match):
        preprocess_observation(obs)


# ------------------------------------------------------------------------------ factory and configs


@pytest.mark.parametrize("name", ["pusht", "aloha", "xarm"])
def test_env_yaml_has_reference_values(name):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    expected = {
        "pusht": ("PushT-v0", 10, 300, 2, 16, ["observation.image"]),
        "aloha": ("AlohaInsertion-v0", 50, 400, 14, 14, ["observation.images.top"]),
        "xarm": ("XarmLift-v0", 15, 200, 4, 3, ["observation.image"]),
    }[name]
    env = cfg.env
    got = (
        env.task,
        env.fps,
        env.episode_length,
        env.state_dim,
        env.environment_state_dim,
        list(env.image_keys),
    )
    assert got == expected
    assert env.name == name and env.action_dim == env.state_dim and cfg.fps == env.fps
    assert env.gym.obs_type == "pixels_agent_pos" and env.gym.render_mode == "rgb_array"
    assert env.task in SIMS[name].tasks


def test_unknown_env_name_and_task_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown env.name 'pushy'.*\['aloha', 'pusht', 'xarm'\]"):
        make_env({"env": {"name": "pushy", "task": "PushT-v0"}})
    with pytest.raises(ValueError, match=r"Unknown env.task 'AlohaFold-v0'.*AlohaInsertion-v0"):
        make_env({"env": {"name": "aloha", "task": "AlohaFold-v0"}})
    with pytest.raises(ValueError, match="physical robot"):
        make_env({"env": {"name": "real_world", "task": None}})
    with pytest.raises(KeyError, match="env.name"):
        make_env({"training": {}})
    with pytest.raises(ValueError, match="n_envs"):
        make_env(env_cfg("pusht"), n_envs=0)


@pytest.mark.parametrize("name", ["pusht", "aloha", "xarm"])
def test_missing_extra_says_what_to_install(name, monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGES[name], None)  # makes `import gym_<name>` fail
    with pytest.raises(ImportError, match=rf'pip install -e "\.\[{name}\]"'):
        make_env(env_cfg(name))


# ------------------------------------------------------------------------------ every env x obs variant

CASES = [
    # name, task, obs_type, expected shapes after preprocess_observation (batch dim left out)
    ("pusht", None, "pixels_agent_pos", {"observation.image": (3, 96, 96), "observation.state": (2,)}),
    (
        "pusht",
        None,
        "environment_state_agent_pos",
        {"observation.state": (2,), "observation.environment_state": (16,)},
    ),
    ("pusht", None, "pixels", {"observation.image": (3, 96, 96)}),
    (
        "aloha",
        "AlohaTransferCube-v0",
        "pixels_agent_pos",
        {"observation.images.top": (3, 480, 640), "observation.state": (14,)},
    ),
    (
        "aloha",
        "AlohaTransferCube-v0",
        "environment_state_agent_pos",
        {"observation.state": (14,), "observation.environment_state": (7,)},
    ),
    (
        "aloha",
        "AlohaInsertion-v0",
        "pixels_agent_pos",
        {"observation.images.top": (3, 480, 640), "observation.state": (14,)},
    ),
    (
        "aloha",
        "AlohaInsertion-v0",
        "environment_state_agent_pos",
        {"observation.state": (14,), "observation.environment_state": (14,)},
    ),
    ("xarm", None, "pixels_agent_pos", {"observation.image": (3, 84, 84), "observation.state": (4,)}),
    (
        "xarm",
        None,
        "environment_state_agent_pos",
        {"observation.state": (4,), "observation.environment_state": (3,)},
    ),
]


@pytest.mark.parametrize(
    ("name", "task", "obs_type", "shapes"), CASES, ids=lambda v: v if isinstance(v, str) else ""
)
def test_reset_step_render(name, task, obs_type, shapes):
    require(name)
    n_envs = 2 if name == "pusht" else 1
    env = make_env(env_cfg(name, obs_type, task, episode_length=2), n_envs=n_envs)
    try:
        obs, _ = env.reset(seed=0)
        batches = [preprocess_observation(obs)]
        truncated = None
        for _ in range(2):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            batches.append(preprocess_observation(obs))
            assert reward.shape == (n_envs,) and terminated.dtype == bool
        assert truncated.all()  # episode_length=2 reached
        for batch in batches:
            assert {k: tuple(v.shape[1:]) for k, v in batch.items()} == shapes
            assert all(v.dtype == torch.float32 and v.shape[0] == n_envs for v in batch.values())
            for key, value in batch.items():
                if "image" in key:
                    assert value.min() >= 0.0 and value.max() <= 1.0 and value.mean() > 0.05  # not black
        frames = env.call("render")
        assert len(frames) == n_envs
        for frame in frames:
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3 and frame.mean() > 5
    finally:
        env.close()


def test_plain_dict_config_and_seeding():
    require("pusht")
    cfg = OmegaConf.to_container(env_cfg("pusht", "environment_state_agent_pos"), resolve=True)
    obs = []
    for _ in range(2):
        env = make_env(cfg["env"], n_envs=2)  # the env section alone, as a plain dict
        obs.append(env.reset(seed=[3, 4])[0])
        env.close()
    np.testing.assert_array_equal(obs[0]["environment_state"], obs[1]["environment_state"])
    assert not np.array_equal(obs[0]["agent_pos"][0], obs[0]["agent_pos"][1])


# ------------------------------------------------------------------------------ ALOHA: our env vs gym-aloha


def _random_actions(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, 14).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize(
    ("task", "handle"), [("transfer_cube", "AlohaTransferCube-v0"), ("insertion", "AlohaInsertion-v0")]
)
def test_fast_aloha_matches_gym_aloha(task, handle):
    require("aloha")
    import gymnasium as gym

    from lerobot.common.envs.aloha import AlohaEnv

    reference = gym.make(
        f"gym_aloha/{handle}", obs_type="pixels_agent_pos", disable_env_checker=True
    ).unwrapped
    ours = AlohaEnv(task, obs_type="pixels_agent_pos")  # shadow map as in the XML: same frames
    fast = AlohaEnv(task, obs_type="pixels_agent_pos", shadow_size=2048)  # the yaml's setting
    state_only = AlohaEnv(task, obs_type="environment_state_agent_pos")
    envs = (ours, fast, state_only)
    # (mean absolute difference, fraction of pixels off by more than 16) allowed for `ours` and `fast`
    tolerance = {id(ours): (0.1, 1e-3), id(fast): (0.2, 3e-3)}
    try:
        expected, _ = reference.reset(seed=7)
        got = [env.reset(seed=7)[0] for env in envs]
        for step, action in enumerate([None, *_random_actions(3)]):
            if action is not None:
                expected, r_ref, term_ref, _, _ = reference.step(action)
                results = [env.step(action) for env in envs]
                got = [result[0] for result in results]
                assert all(result[1] == r_ref and result[2] == term_ref for result in results)
            for env, obs in zip(envs, got):
                np.testing.assert_array_equal(obs["agent_pos"], expected["agent_pos"], err_msg=f"step {step}")
                if env is state_only:
                    assert set(obs) == {"agent_pos", "environment_state"}
                    np.testing.assert_array_equal(
                        obs["environment_state"], reference._env.physics.data.qpos[16:]
                    )
                    continue
                diff = np.abs(obs["pixels"]["top"].astype(np.int16) - expected["pixels"]["top"])
                max_mean, max_fraction = tolerance[id(env)]
                assert diff.mean() < max_mean and (diff > 16).mean() < max_fraction, (
                    f"step {step}: images differ"
                )
        frame_diff = np.abs(ours.render().astype(np.int16) - reference.render())
        assert frame_diff.mean() < 0.1
        assert state_only.physics._contexts is None  # state-only never created a GL context: nothing rendered
    finally:
        for env in (reference, *envs):
            env.close()


def test_fast_aloha_cameras_seeding_and_errors():
    require("aloha")
    from lerobot.common.envs.aloha import AlohaEnv

    env = AlohaEnv(
        "transfer_cube",
        obs_type="pixels",
        cameras=["top", "angle"],
        observation_width=64,
        observation_height=48,
    )
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"pixels"} and set(obs["pixels"]) == {"top", "angle"}
        assert obs["pixels"]["angle"].shape == (48, 64, 3) and env.observation_space.contains(obs)
        assert not np.array_equal(obs["pixels"]["top"], obs["pixels"]["angle"])
    finally:
        env.close()

    # reset() after a seeded reset continues reproducibly (gym-aloha would draw from OS entropy).
    poses = []
    for _ in range(2):
        env = AlohaEnv("insertion", obs_type="environment_state_agent_pos")
        first = env.reset(seed=5)[0]["environment_state"]
        poses.append((first, env.reset()[0]["environment_state"]))
        env.close()
    np.testing.assert_array_equal(poses[0][1], poses[1][1])
    assert not np.array_equal(poses[0][0], poses[0][1])

    with pytest.raises(ValueError, match="Unknown ALOHA camera"):
        AlohaEnv("insertion", obs_type="pixels", cameras=["wrist"])
    with pytest.raises(ValueError, match="valid obs_types"):
        AlohaEnv("insertion", obs_type="state")
    with pytest.raises(ValueError, match="valid tasks"):
        AlohaEnv("fold")


# ------------------------------------------------------------------------------ XArm


def test_xarm_environment_state_is_the_cube_position():
    require("xarm")
    from lerobot.common.envs.xarm import XarmLiftEnv

    env = XarmLiftEnv(obs_type="environment_state_agent_pos")
    try:
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs["environment_state"], env.obj)
        np.testing.assert_array_equal(obs["agent_pos"], env.robot_state)
        assert env.observation_space.contains(obs)
    finally:
        env.close()
    with pytest.raises(ValueError, match="valid obs_types"):
        XarmLiftEnv(obs_type="keypoints")


def test_xarm_renders_after_another_env_is_dropped():
    """gym-xarm renders all-black frames once another XArm env is garbage-collected; ours must not."""
    require("xarm")
    from lerobot.common.envs.xarm import XarmLiftEnv

    env = XarmLiftEnv(obs_type="pixels_agent_pos")
    try:
        before = env.reset(seed=0)[0]["pixels"]
        other = XarmLiftEnv(obs_type="pixels_agent_pos")
        other.reset(seed=1)
        other.render()
        del other  # dropped without close()
        gc.collect()
        after = env.reset(seed=0)[0]["pixels"]
        assert after.mean() > 5
        np.testing.assert_array_equal(after, before)
    finally:
        env.close()


ASYNC_SCRIPT = textwrap.dedent(
    """
    from omegaconf import OmegaConf
    from lerobot.common.envs import make_env, preprocess_observation

    if __name__ == "__main__":
        cfg = OmegaConf.load({config!r})
        cfg.env.episode_length = 3
        env = make_env(cfg, n_envs=2, use_async_envs=True)
        obs, _ = env.reset(seed=0)
        for _ in range(2):
            obs, *_ = env.step(env.action_space.sample())
        batch = preprocess_observation(obs)
        env.close()
        print("shapes", {{k: tuple(v.shape) for k, v in batch.items()}}, "mean", float(batch["observation.image"].mean()))
    """
)


def test_async_xarm_does_not_hang(tmp_path):
    require("xarm")
    script = tmp_path / "async_xarm.py"
    script.write_text(ASYNC_SCRIPT.format(config=str(CONFIGS / "xarm.yaml")))
    try:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        pytest.fail("AsyncVectorEnv with XArm hung (more than 300 s)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        "'observation.image': (2, 3, 84, 84)" in done.stdout and "'observation.state': (2, 4)" in done.stdout
    )
    assert float(done.stdout.split("mean")[-1]) > 0.05  # workers rendered real frames
