"""Scripted experts and `record_sim_demos`: experts succeed, ALOHA replays reproduce the planned episodes,
recorded datasets load and replay exactly, the recorder refuses to overwrite, and the CLI runs end to end.

Tests skip when a simulator extra is missing. Episodes are few (ALOHA episodes are 400 steps: ~1.5 s each).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from lerobot.common.datasets.errors import DatasetExistsError  # noqa: E402
from lerobot.common.envs import make_env  # noqa: E402
from lerobot.common.envs.experts import EXPERTS, episode_seed, make_expert, record_sim_demos  # noqa: E402
from lerobot.common.envs.experts.recorder import (  # noqa: E402
    SIDECAR,
    DemoRecordingError,
    EpisodeResult,
    play_episode,
)

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "lerobot" / "configs" / "env"
PACKAGES = {"pusht": "gym_pusht", "aloha": "gym_aloha", "xarm": "gym_xarm"}


def require(name: str) -> None:
    pytest.importorskip(PACKAGES[name], reason=f"the {name} extra is not installed")


def load_cfg(name: str, task: str | None = None, episode_length: int | None = None):
    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    if task is not None:
        cfg.env.task = task
    if episode_length is not None:
        cfg.env.episode_length = episode_length
    return cfg


def run_expert(name: str, task: str, seeds: list[int]) -> list[EpisodeResult]:
    """Play state-only episodes as the recorder would; also check the expert's privileged state."""
    cfg = load_cfg(name, task)
    cfg.env.gym.obs_type = "environment_state_agent_pos"
    vec = make_env(cfg, n_envs=1)
    env = vec.envs[0]
    expert = make_expert(task, env)
    try:
        results = [play_episode(env, expert, seed, skip_failed_plans=False) for seed in seeds]
        # Pixel recordings store expert.environment_state(): it must be what this obs_type observes.
        obs, _ = env.reset(seed=seeds[0])
        expert.reset(seeds[0], obs)
        for _ in range(3):
            np.testing.assert_array_equal(obs["environment_state"], expert.environment_state())
            obs, *_ = env.step(expert.act(obs))
    finally:
        expert.close()
        vec.close()
    return results


# ------------------------------------------------------------------------------ experts


@pytest.mark.parametrize("task", ["AlohaTransferCube-v0", "AlohaInsertion-v0"])
def test_aloha_expert_replay_reproduces_the_planned_success(task):
    require("aloha")
    for result in run_expert("aloha", task, [0, 1]):
        assert result.planned_success is True  # the plan succeeded in the end-effector scene...
        assert result.success is True and result.env_success is True  # ...and so did its joint-space replay
        assert result.steps == 400  # ALOHA episodes play to the end, as in the ACT recordings


def test_aloha_plan_uses_the_object_pose_of_the_seed():
    require("aloha")
    from lerobot.common.envs.experts.aloha import EndEffectorScene

    cfg = load_cfg("aloha", "AlohaInsertion-v0")
    cfg.env.gym.obs_type = "environment_state_agent_pos"
    env = make_env(cfg, n_envs=1).envs[0]
    scene = EndEffectorScene("insertion")
    try:
        obs, _ = env.reset(seed=12)
        plan = scene.rollout(12, num_steps=3)
        np.testing.assert_allclose(plan.object_pose, obs["environment_state"], atol=1e-12)
        assert plan.joint_trajectory.shape == (4, 14) and plan.rewards.shape == (3,)
        np.testing.assert_allclose(plan.joint_trajectory[0, [6, 13]], 0.0, atol=1e-9)  # grippers start closed
    finally:
        env.close()


def test_xarm_expert_lifts_the_cube():
    require("xarm")
    for result in run_expert("xarm", "XarmLift-v0", [0, 1, 2]):
        assert result.success and result.steps < 200  # lifted; recording stops there, before the time limit
        assert result.env_success  # our env's is_success (gym-xarm's own mixes frames and never holds)


def test_xarm_env_reports_success_only_once_the_cube_is_lifted():
    require("xarm")
    from gym_xarm.tasks.lift import Lift

    cfg = load_cfg("xarm", "XarmLift-v0")
    cfg.env.gym.obs_type = "environment_state_agent_pos"
    vec = make_env(cfg, n_envs=1)
    env = vec.envs[0].unwrapped
    try:
        env.reset(seed=0)
        assert not env.is_success() and not Lift.is_success(env)  # at rest on the table
        _, _, terminated, _, info = env.step(np.zeros(4, dtype=np.float32))
        assert not terminated and info["is_success"] is False
        joint = env._utils.get_joint_qpos(env.model, env.data, "object_joint0")
        joint[2] = env._init_z + 0.16  # the cube 0.16 m above its start (the threshold is 0.15 m)
        env._utils.set_joint_qpos(env.model, env.data, "object_joint0", joint)
        env._mujoco.mj_forward(env.model, env.data)
        assert env.is_success() and not Lift.is_success(env)  # gym-xarm's own check still fails
    finally:
        vec.close()


def test_pusht_expert_pushes_the_t_onto_the_target():
    require("pusht")
    for result in run_expert("pusht", "PushT-v0", [21, 24]):
        assert result.success and result.env_success and result.steps < 300, result


def test_plans_known_to_fail_are_skipped_unless_failures_are_kept():
    require("xarm")
    from lerobot.common.envs.experts.xarm import XarmLiftExpert

    class DoomedPlan(XarmLiftExpert):
        def planned_success(self):
            return False

    cfg = load_cfg("xarm", episode_length=4)
    cfg.env.gym.obs_type = "environment_state_agent_pos"
    vec = make_env(cfg, n_envs=1)
    try:
        expert = DoomedPlan(vec.envs[0])
        frames = []
        skipped = play_episode(vec.envs[0], expert, 0, on_frame=frames.append)
        assert skipped.skipped and skipped.steps == 0 and not frames
        played = play_episode(vec.envs[0], expert, 0, skip_failed_plans=False, on_frame=frames.append)
        assert not played.skipped and played.steps == len(frames) == 4
        assert [bool(f["next.done"][0]) for f in frames] == [False, False, False, True]
    finally:
        vec.close()


def test_registry_and_bad_task():
    assert set(EXPERTS) == {"AlohaTransferCube-v0", "AlohaInsertion-v0", "XarmLift-v0", "PushT-v0"}
    with pytest.raises(ValueError, match=r"No scripted expert for env.task='AlohaFold-v0'"):
        make_expert("AlohaFold-v0", env=None)


def test_episode_seeds_are_reproducible_distinct_and_away_from_eval_seeds():
    seeds = [episode_seed(s, a) for s in (0, 1, 7) for a in range(1000)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 1_000_000
    assert episode_seed(0, 5) == episode_seed(0, 5) == 1_000_005


# ------------------------------------------------------------------------------ recording


def test_state_only_aloha_dataset_loads_and_replays_exactly(tmp_path):
    require("aloha")
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "tc"
    summary = record_sim_demos(
        load_cfg("aloha", "AlohaTransferCube-v0"),
        num_episodes=2,
        repo_id="local/tc",
        root=root,
        seed=3,
        state_only=True,
        progress=False,
    )
    assert (summary.kept_episodes, summary.attempts, summary.frames) == (2, 2, 800)
    assert summary.seeds == [episode_seed(3, 0), episode_seed(3, 1)] and summary.success_rate == 1.0
    assert not list(tmp_path.glob(".tc.*"))  # no temporary folder left
    ds = LeRobotDataset("local/tc", root=root)
    assert ds.codebase_version == "v3.0" and ds.fps == 50 and ds.num_episodes == 2 and not ds.camera_keys
    shapes = {k: tuple(f["shape"]) for k, f in ds.features.items()}
    assert shapes["observation.state"] == (14,) and shapes["action"] == (14,)
    assert shapes["observation.environment_state"] == (7,)  # the cube pose, not aloha.yaml's 14
    assert {k: ds.features[k]["dtype"] for k in ("next.reward", "next.success", "next.done")} == {
        "next.reward": "float32",
        "next.success": "bool",
        "next.done": "bool",
    }
    assert ds[0]["task"] == "Pick up the cube with the right arm and transfer it to the left arm."
    sidecar = json.loads((root / SIDECAR).read_text())
    assert sidecar["episode_seeds"] == summary.seeds and sidecar["env"]["environment_state_dim"] == 7

    columns = ds.hf_dataset.with_format("numpy")[:]
    env = make_env({"env": sidecar["env"]}, n_envs=1).envs[0]
    try:
        for episode, seed in enumerate(summary.seeds):
            rows = np.flatnonzero(columns["episode_index"] == episode)
            obs, _ = env.reset(seed=seed)
            for i in rows:
                np.testing.assert_array_equal(np.float32(obs["agent_pos"]), columns["observation.state"][i])
                np.testing.assert_array_equal(
                    np.float32(obs["environment_state"]), columns["observation.environment_state"][i]
                )
                obs, reward, _, _, info = env.step(columns["action"][i])
                assert (
                    reward == columns["next.reward"][i] and info["is_success"] == columns["next.success"][i]
                )
            assert columns["next.done"][rows].tolist() == [False] * (len(rows) - 1) + [True]
            assert columns["next.success"][rows].any()
    finally:
        env.close()


def test_pixels_recording_has_videos(tmp_path):
    require("pusht")
    from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "pusht"
    summary = record_sim_demos(
        load_cfg("pusht", episode_length=6),
        num_episodes=2,
        repo_id="local/pusht_px",
        root=root,
        keep_failed=True,  # 6 steps are too few to succeed: keep them anyway
        progress=False,
    )
    assert summary.kept_episodes == summary.attempts == 2 and summary.frames == 12
    ds = LeRobotDataset("local/pusht_px", root=root)
    assert ds.video_keys == ["observation.image"] and list((root / "videos").rglob("*.mp4"))
    assert ds.features["observation.environment_state"]["shape"] == (16,)
    item = ds[7]
    assert item["observation.image"].shape == (3, 96, 96) and item["observation.image"].mean() > 0.3
    assert item["next.done"] == (item["frame_index"] == 5)


def test_refuses_to_overwrite_and_replaces_on_request(tmp_path):
    require("xarm")
    root = tmp_path / "xarm"
    root.mkdir()
    (root / "keep.txt").write_text("user data")
    kwargs = dict(
        num_episodes=1, repo_id="local/x", root=root, state_only=True, keep_failed=True, progress=False
    )
    cfg = load_cfg("xarm", episode_length=3)
    with pytest.raises(DatasetExistsError, match="overwrite=True"):
        record_sim_demos(cfg, **kwargs)
    assert (root / "keep.txt").read_text() == "user data"
    summary = record_sim_demos(cfg, overwrite=True, **kwargs)
    assert summary.frames == 3 and not (root / "keep.txt").exists() and (root / "meta" / "info.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xarm"]  # no temporary or replaced folder left


def test_gives_up_with_a_clear_error_and_writes_nothing(tmp_path):
    require("xarm")
    root = tmp_path / "never"
    with pytest.raises(DemoRecordingError, match=r"Only 0 of 2 episodes.*3 attempts.*max_attempts"):
        record_sim_demos(
            load_cfg("xarm", episode_length=3),  # too short to lift the cube
            num_episodes=2,
            repo_id="local/x",
            root=root,
            state_only=True,
            max_attempts=3,
            progress=False,
        )
    assert not root.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_episodes": 0}, "num_episodes must be an int >= 1"),
        ({"seed": -1}, r"seed must be an int in \[0, "),
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"repo_id": "no_namespace"}, "no_namespace"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    args = {"num_episodes": 1, "repo_id": "local/x", "root": tmp_path / "d", **kwargs}
    with pytest.raises(ValueError, match=match):
        record_sim_demos(load_cfg("xarm"), **args)


def test_cli_end_to_end(tmp_path):
    require("aloha")
    root = tmp_path / "cli"
    command = [
        sys.executable,
        str(REPO / "lerobot" / "scripts" / "record_sim_demos.py"),
        "env=aloha",
        "env.task=AlohaTransferCube-v0",
        "num_episodes=1",
        "repo_id=local/aloha_transfer_cube_scripted",
        f"root={root}",
        "seed=0",
        "state_only=true",
    ]
    # cwd: hydra must not create run folders (outputs/) in the working directory
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 episodes (400 frames) of AlohaTransferCube-v0" in done.stdout
    assert "1/1" in done.stderr  # the progress bar
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 1 and info["features"]["observation.environment_state"]["shape"] == [7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli"]
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 1 and "error:" in again.stderr and "overwrite=true" in again.stderr
    assert "Traceback" not in again.stderr
