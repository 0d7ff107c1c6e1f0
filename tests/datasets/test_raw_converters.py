"""Raw-format converters (pusht_zarr, umi_zarr, aloha_hdf5, xarm_pkl) and scripts/push_dataset_to_hub.py.

Each test writes a tiny raw dataset in the real on-disk layout, converts it, reads the result back with
LeRobotDataset and compares every converted field with the raw values (PushT rewards and keypoints with what a
gym-pusht env computes for the same state).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from lerobot.common.datasets.errors import DatasetExistsError, EpisodeNotFoundError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.push_dataset_to_hub import RAW_FORMATS, RawFormatError, get_raw_format
from lerobot.common.datasets.push_dataset_to_hub.convert_raw import convert_raw_dataset
from lerobot.common.datasets.push_dataset_to_hub.pusht_zarr_format import GOAL_POSE, PushTZarrSource
from lerobot.common.datasets.push_dataset_to_hub.restricted_pickle import UnsafePickleError, load_restricted
from lerobot.scripts import push_dataset_to_hub as script
from tests.conftest import require_shared_data

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "lerobot" / "scripts" / "push_dataset_to_hub.py"


# ------------------------------------------------------------------------------------------ raw fixtures


def smooth_frames(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """Frames with a distinct colour per frame and gentle ramps: recognisable after lossy compression."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (n, 1, 1, 3))
    ramp = (np.arange(w)[None, None, :, None] * 2 + np.arange(h)[None, :, None, None]) // 2
    return np.clip(base + ramp, 0, 255).astype(np.uint8)


def write_zarr(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for key, value in arrays.items():
        parent, name = key.split("/")
        chunks = (max(1, len(value) // 2), *value.shape[1:])
        group.require_group(parent).create_array(name, data=value, chunks=chunks)
    return path


def pusht_arrays(lengths=(4, 3, 5), size=(12, 16), seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    state = np.column_stack([rng.uniform(60, 450, (n, 4)), rng.uniform(0, 2 * np.pi, n)]).astype(np.float32)
    state[lengths[0] + lengths[1] - 1, 2:] = GOAL_POSE  # episode 1 ends with the block on the target
    state[lengths[0] + lengths[1] - 2, 2:] = (250.0, 255.0, np.pi / 4 + 0.05)  # nearly there
    return {
        "data/img": rng.integers(0, 256, (n, *size, 3)).astype(np.float32),
        "data/state": state,
        "data/action": rng.uniform(0, 512, (n, 2)).astype(np.float32),
        "data/keypoint": rng.uniform(0, 512, (n, 9, 2)).astype(np.float32),
        "data/n_contacts": np.zeros((n, 1), dtype=np.float32),
        "meta/episode_ends": np.cumsum(lengths).astype(np.int64),
    }


def umi_arrays(lengths=(3, 4, 2), size=(10, 12), seed=1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    return {
        "data/camera0_rgb": rng.integers(0, 256, (n, *size, 3), dtype=np.uint8),
        "data/robot0_eef_pos": rng.normal(size=(n, 3)).astype(np.float32),
        "data/robot0_eef_rot_axis_angle": rng.normal(size=(n, 3)).astype(np.float32),
        "data/robot0_gripper_width": rng.uniform(0, 0.1, (n, 1)).astype(np.float32),
        "data/robot0_demo_start_pose": rng.normal(size=(n, 6)).astype(np.float32),
        "data/robot0_demo_end_pose": rng.normal(size=(n, 6)).astype(np.float32),
        "meta/episode_ends": np.cumsum(lengths).astype(np.int64),
    }


def aloha_episode(length: int, seed: int, size=(12, 16), effort: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    episode = {
        "/observations/qpos": rng.normal(size=(length, 14)),
        "/observations/qvel": rng.normal(size=(length, 14)),
        "/action": rng.normal(size=(length, 14)),
        "/observations/images/top": rng.integers(0, 256, (length, *size, 3), dtype=np.uint8),
        "/observations/images/left_wrist": rng.integers(0, 256, (length, *size, 3), dtype=np.uint8),
        "/observations/images/top_depth": rng.integers(0, 256, (length, *size, 1), dtype=np.uint8),
    }
    if effort:
        episode["/observations/effort"] = rng.normal(size=(length, 14))
    return episode


def write_hdf5(path: Path, episode: dict) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in episode.items():
            f.create_dataset(key, data=value)
    return path


def write_aloha(raw: Path, episodes: dict[int, dict]) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    for number, episode in episodes.items():
        write_hdf5(raw / f"episode_{number}.hdf5", episode)
    return raw


def jpeg_encode(frames: np.ndarray) -> list[np.ndarray]:
    import cv2

    return [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].reshape(-1) for frame in frames]


def xarm_buffer(lengths=(5, 4), tail: int = 2, size=(10, 12), seed=3) -> dict:
    rng = np.random.default_rng(seed)
    n = sum(lengths) + tail
    dones = np.zeros(n, dtype=bool)
    dones[np.cumsum(lengths) - 1] = True
    obs = {
        "rgb": smooth_frames(n, *size, seed).transpose(0, 3, 1, 2).copy(),
        "state": rng.normal(size=(n, 4)),
    }
    return {
        "observations": obs,
        "next_observations": {k: v.copy() for k, v in obs.items()},
        "actions": rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": np.ones(n, dtype=np.float32),
        "dones": dones,
    }


def write_pickle(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data))
    return path


def read_back(root: Path, repo_id: str = "test/raw") -> tuple[LeRobotDataset, dict[str, np.ndarray]]:
    """The converted dataset and all its frames as numpy columns (cameras as uint8 HWC)."""
    ds = LeRobotDataset(repo_id, root=root)
    items = [ds[i] for i in range(len(ds))]
    columns = {}
    for key in items[0]:
        if key == "task":
            continue
        values = np.stack([np.asarray(item[key]) for item in items])
        if key in ds.meta.camera_keys:
            values = np.round(values.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        columns[key] = values
    return ds, columns


def check_frame_bookkeeping(columns: dict, lengths: list[int], fps: float) -> None:
    episode_index = np.repeat(np.arange(len(lengths)), lengths)
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    np.testing.assert_array_equal(columns["episode_index"], episode_index)
    np.testing.assert_array_equal(columns["frame_index"], frame_index)
    np.testing.assert_array_equal(columns["index"], np.arange(sum(lengths)))
    np.testing.assert_allclose(columns["timestamp"], frame_index / fps, atol=1e-6)


def last_frame_flags(lengths: list[int]) -> np.ndarray:
    flags = np.zeros(sum(lengths), dtype=bool)
    flags[np.cumsum(lengths) - 1] = True
    return flags


# -------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_format_and_rejects_unknown():
    assert sorted(RAW_FORMATS) == ["aloha_hdf5", "pusht_zarr", "umi_zarr", "xarm_pkl"]
    assert {cls.format_name for cls in RAW_FORMATS.values()} == set(RAW_FORMATS)
    assert {name: cls.default_fps for name, cls in RAW_FORMATS.items()} == {
        "pusht_zarr": 10,
        "aloha_hdf5": 50,
        "xarm_pkl": 15,
        "umi_zarr": 10,
    }
    with pytest.raises(RawFormatError, match="known formats: aloha_hdf5, pusht_zarr, umi_zarr, xarm_pkl"):
        get_raw_format("dora_parquet")


# ------------------------------------------------------------------------------------------------ pusht


@pytest.fixture(scope="module")
def pusht_env():
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("gym_pusht")
    env = gym.make("gym_pusht/PushT-v0", obs_type="environment_state_agent_pos").unwrapped
    env.reset(seed=0)
    yield env
    env.close()


def place(env, state: np.ndarray) -> tuple[dict, float]:
    """Put the agent and the block of a gym-pusht env at a recorded state; return its observation, coverage.

    The angle is set before the position: pymunk rotates a body about its centre of gravity, so the other
    order would move the block's origin away from the recorded position."""
    state = np.asarray(state, dtype=np.float64)
    env.agent.position = tuple(state[:2])
    env.block.angle = state[4]
    env.block.position = tuple(state[2:4])
    np.testing.assert_allclose(np.array(env.block.position), state[2:4], atol=1e-9)
    return env.get_obs(), env._get_coverage()


def check_pusht_against_env(env, raw_state: np.ndarray, columns: dict, lengths: list[int]) -> None:
    """Keypoints, agent position, rewards and success as gym-pusht computes them for each recorded state."""
    observations, coverage = zip(*(place(env, s) for s in raw_state), strict=True)
    coverage = np.array(coverage)
    np.testing.assert_allclose(
        columns["observation.environment_state"],
        np.stack([o["environment_state"] for o in observations]),
        atol=1e-4,
    )
    np.testing.assert_allclose(columns["observation.state"], np.stack([o["agent_pos"] for o in observations]))
    start = 0
    for n in lengths:
        # step(action[t]) reports the reward of the state at t + 1; the last frame repeats its own
        cov = np.append(coverage[start + 1 : start + n], coverage[start + n - 1])
        np.testing.assert_allclose(
            columns["next.reward"][start : start + n], np.clip(cov / env.success_threshold, 0, 1), atol=1e-6
        )
        np.testing.assert_array_equal(columns["next.success"][start : start + n], cov > env.success_threshold)
        start += n


def test_pusht_zarr_all_fields(tmp_path, pusht_env):
    lengths = [4, 3, 5]
    raw = pusht_arrays(lengths)
    write_zarr(tmp_path / "raw" / "pusht_cchi_v7_replay.zarr", raw)
    result = convert_raw_dataset(
        tmp_path / "raw", "pusht_zarr", "test/raw", tmp_path / "out", video=False, progress=False
    )
    assert (result.num_episodes, result.num_frames, result.fps) == (3, 12, 10)
    ds, columns = read_back(tmp_path / "out")
    assert set(ds.meta.features) >= {
        "observation.image",
        "observation.state",
        "observation.environment_state",
    }
    np.testing.assert_array_equal(columns["observation.image"], raw["data/img"].astype(np.uint8))
    np.testing.assert_array_equal(columns["observation.state"], raw["data/state"][:, :2])
    np.testing.assert_array_equal(columns["action"], raw["data/action"])
    np.testing.assert_array_equal(columns["next.done"], last_frame_flags(lengths))
    check_pusht_against_env(pusht_env, raw["data/state"], columns, lengths)
    # the block reaches the target at the end of episode 1 only: its last two rows (next state = last state)
    assert columns["next.success"].nonzero()[0].tolist() == [5, 6]
    assert (result.success_frames, result.success_episodes) == (2, 1)
    assert columns["next.reward"][6] == 1.0
    check_frame_bookkeeping(columns, lengths, fps=10)
    assert ds.meta.tasks[0] == "Push the T-shaped block onto the T-shaped target."
    np.testing.assert_allclose(ds.meta.stats["action"]["mean"], raw["data/action"].mean(0), rtol=1e-5)
    assert ds.meta.stats["observation.image"]["mean"].shape == (3, 1, 1)


def test_pusht_keypoints_only_subset_and_fps(tmp_path, pusht_env):
    lengths = [4, 3, 5]
    raw = pusht_arrays(lengths)
    raw.pop("data/img")  # not needed for the keypoints variant
    write_zarr(tmp_path / "raw.zarr", raw)
    convert_raw_dataset(
        tmp_path / "raw.zarr",
        "pusht_zarr",
        "test/raw",
        tmp_path / "out",
        keypoints_only=True,
        episodes=[2, 0],
        fps=5,
        progress=False,
    )
    ds, columns = read_back(tmp_path / "out")
    assert ds.meta.camera_keys == [] and "observation.image" not in ds.meta.features
    rows = np.r_[7:12, 0:4]  # raw frames of episodes 2 then 0
    np.testing.assert_array_equal(columns["action"], raw["data/action"][rows])
    check_pusht_against_env(pusht_env, raw["data/state"][rows], columns, [5, 4])
    check_frame_bookkeeping(columns, [5, 4], fps=5)
    assert ds.fps == 5


# -------------------------------------------------------------------------------------------------- umi


def test_umi_zarr_all_fields(tmp_path):
    lengths = [3, 4, 2]
    raw = umi_arrays(lengths)
    write_zarr(tmp_path / "raw" / "cup_in_the_wild.zarr", raw)
    convert_raw_dataset(
        tmp_path / "raw",
        "umi_zarr",
        "test/raw",
        tmp_path / "out",
        video=False,
        episodes=[1, 2],
        progress=False,
    )
    ds, columns = read_back(tmp_path / "out")
    rows = np.r_[3:9]
    np.testing.assert_array_equal(columns["observation.image"], raw["data/camera0_rgb"][rows])
    state = np.concatenate(
        [raw["data/robot0_eef_pos"], raw["data/robot0_eef_rot_axis_angle"], raw["data/robot0_gripper_width"]],
        1,
    )
    np.testing.assert_array_equal(columns["observation.state"], state[rows])
    np.testing.assert_array_equal(columns["start_pos"], raw["data/robot0_demo_start_pose"][rows])
    np.testing.assert_array_equal(columns["end_pose"], raw["data/robot0_demo_end_pose"][rows])
    np.testing.assert_array_equal(columns["gripper_width"], raw["data/robot0_gripper_width"][rows, 0])
    # frame ranges of each episode inside the raw store
    np.testing.assert_array_equal(columns["episode_data_index_from"], [3, 3, 3, 3, 7, 7])
    np.testing.assert_array_equal(columns["episode_data_index_to"], [7, 7, 7, 7, 9, 9])
    check_frame_bookkeeping(columns, [4, 2], fps=10)
    assert "action" not in ds.meta.features


# ------------------------------------------------------------------------------------------------ aloha


def test_aloha_hdf5_all_fields_in_file_number_order(tmp_path):
    episodes = {0: aloha_episode(4, 0), 2: aloha_episode(3, 1), 10: aloha_episode(5, 2)}
    raw = write_aloha(tmp_path / "raw", episodes)
    convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", video=False, progress=False)
    ds, columns = read_back(tmp_path / "out")
    assert ds.meta.camera_keys == ["observation.images.left_wrist", "observation.images.top"]  # no depth
    ordered = [episodes[0], episodes[2], episodes[10]]  # episode_10 after episode_2, not before
    for key, raw_key in [
        ("observation.state", "/observations/qpos"),
        ("observation.velocity", "/observations/qvel"),
        ("observation.effort", "/observations/effort"),
        ("action", "/action"),
    ]:
        expected = np.concatenate([e[raw_key] for e in ordered]).astype(np.float32)
        np.testing.assert_array_equal(columns[key], expected)
    for cam in ("top", "left_wrist"):
        expected = np.concatenate([e[f"/observations/images/{cam}"] for e in ordered])
        np.testing.assert_array_equal(columns[f"observation.images.{cam}"], expected)
    np.testing.assert_array_equal(columns["next.done"], last_frame_flags([4, 3, 5]))
    check_frame_bookkeeping(columns, [4, 3, 5], fps=50)
    assert ds.meta.robot_type == "aloha"
    assert ds.meta.features["observation.state"]["names"][0] == "left_waist"


@pytest.mark.parametrize("storage", ["padded", "vlen"])
def test_aloha_hdf5_jpeg_frames_keep_their_channel_order(tmp_path, storage):
    import h5py

    raw = tmp_path / "raw"
    raw.mkdir()
    originals = []
    for number, length in enumerate([3, 2]):
        episode = aloha_episode(length, number, effort=False)
        frames = smooth_frames(length, 16, 24, seed=number)
        frames[..., 0], frames[..., 2] = 220, 30  # a red/blue swap would be obvious
        originals.append(frames)
        for key in [k for k in episode if k.startswith("/observations/images/")]:
            del episode[key]
        path = write_hdf5(raw / f"episode_{number}.hdf5", episode)
        with h5py.File(path, "a") as f:
            if storage == "padded":
                f.create_dataset("/observations/images/cam_high", data=padded_jpegs(frames))
            else:
                ds = f.create_dataset(
                    "/observations/images/cam_high", (length,), dtype=h5py.vlen_dtype(np.uint8)
                )
                for i, b in enumerate(jpeg_encode(frames)):
                    ds[i] = b
    convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", video=False, progress=False)
    ds, columns = read_back(tmp_path / "out")
    assert "observation.effort" not in ds.meta.features
    decoded = columns["observation.images.cam_high"].astype(int)
    expected = np.concatenate(originals).astype(int)
    assert decoded.shape == expected.shape == (5, 16, 24, 3)
    assert np.abs(decoded - expected).mean() < 3
    assert np.abs(decoded[..., 0] - 220).max() < 12 and np.abs(decoded[..., 2] - 30).max() < 12


# ------------------------------------------------------------------------------------------------- xarm


def test_xarm_pkl_all_fields_with_video(tmp_path, caplog):
    buffer = xarm_buffer(lengths=(5, 4), tail=2)
    write_pickle(tmp_path / "raw" / "buffer.pkl", buffer)
    result = convert_raw_dataset(tmp_path / "raw", "xarm_pkl", "test/raw", tmp_path / "out", progress=False)
    assert "dropping the last 2 transitions" in caplog.text
    assert (result.num_episodes, result.num_frames, result.fps, result.video) == (2, 9, 15, True)
    ds, columns = read_back(tmp_path / "out")
    assert ds.meta.video_keys == ["observation.image"]
    expected = buffer["observations"]["rgb"][:9].transpose(0, 2, 3, 1).astype(int)
    assert np.abs(columns["observation.image"].astype(int) - expected).mean() < 6  # lossy AV1
    np.testing.assert_allclose(columns["observation.state"], buffer["observations"]["state"][:9], rtol=1e-6)
    np.testing.assert_array_equal(columns["action"], buffer["actions"][:9])
    np.testing.assert_array_equal(columns["next.reward"], buffer["rewards"][:9])
    np.testing.assert_array_equal(columns["next.done"], last_frame_flags([5, 4]))
    check_frame_bookkeeping(columns, [5, 4], fps=15)


class _RunsCode:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def test_restricted_unpickler_round_trips_arrays(tmp_path):
    data = {
        "observations": OrderedDict(rgb=np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2), state=np.eye(3)),
        "dones": np.array([False, True]),
        "scalars": [np.float32(1.5), np.int64(7), 3, "text", b"bytes", (1.0, None)],
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float16).reshape(2, 3)),
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        loaded = load_restricted(path)
        np.testing.assert_array_equal(loaded["observations"]["rgb"], data["observations"]["rgb"])
        np.testing.assert_array_equal(loaded["fortran"], data["fortran"])
        assert loaded["scalars"] == data["scalars"] and loaded["dones"].dtype == bool


@pytest.mark.parametrize(
    "payload, name",
    [
        (lambda marker: _RunsCode(os.system, f"touch {marker}"), "system"),
        (lambda m: _RunsCode(eval, "1"), "eval"),
    ],
)
def test_restricted_unpickler_refuses_code(tmp_path, payload, name):
    marker = tmp_path / "pwned"
    evil = write_pickle(tmp_path / "raw" / "buffer.pkl", {"actions": payload(marker)})
    with pytest.raises(UnsafePickleError, match=rf"buffer\.pkl references \w+\.{name}"):
        load_restricted(evil)
    with pytest.raises(RawFormatError, match=name):
        convert_raw_dataset(tmp_path / "raw", "xarm_pkl", "test/raw", tmp_path / "out", progress=False)
    assert not marker.exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- bad inputs


def _pusht(tmp_path, edit):
    arrays = pusht_arrays()
    edit(arrays)
    return write_zarr(tmp_path / "pusht.zarr", arrays), "pusht_zarr"


def _umi(tmp_path, edit):
    arrays = umi_arrays()
    edit(arrays)
    return write_zarr(tmp_path / "umi.zarr", arrays), "umi_zarr"


def _aloha(tmp_path, edit):
    episodes = {0: aloha_episode(3, 0), 1: aloha_episode(4, 1)}
    edit(episodes[1])
    return write_aloha(tmp_path / "raw", episodes), "aloha_hdf5"


def _xarm(tmp_path, edit):
    buffer = xarm_buffer()
    edit(buffer)
    return write_pickle(tmp_path / "raw" / "buffer.pkl", buffer).parent, "xarm_pkl"


def _set(d, key, value):
    d[key] = value


BAD_INPUTS = {
    "pusht missing key": (_pusht, lambda a: a.pop("data/action"), r"pusht\.zarr: missing 'data/action'"),
    "pusht ragged": (
        _pusht,
        lambda a: _set(a, "data/action", a["data/action"][:-1]),
        r"pusht\.zarr: arrays have different numbers of frames \(data/state: 12, data/action: 11",
    ),
    "pusht empty episode": (
        _pusht,
        lambda a: _set(a, "meta/episode_ends", np.array([4, 4, 12])),
        r"pusht\.zarr: episode 1 is empty",
    ),
    "pusht truncated": (
        _pusht,
        lambda a: _set(a, "meta/episode_ends", np.array([4, 7, 10])),
        r"episode_ends\[-1\] = 10 but the data arrays hold 12 frames",
    ),
    "pusht wrong shape": (
        _pusht,
        lambda a: _set(a, "data/state", a["data/state"][:, :4]),
        r"'data/state' has shape \(12, 4\); expected \(\*, 5\)",
    ),
    "pusht pixel range": (
        _pusht,
        lambda a: _set(a, "data/img", a["data/img"] * 2),
        r"'data/img' holds values outside \[0, 255\]",
    ),
    "umi wrong dtype": (
        _umi,
        lambda a: _set(a, "data/camera0_rgb", a["data/camera0_rgb"].astype(np.float32)),
        r"umi\.zarr: 'data/camera0_rgb' has dtype float32; expected uint8",
    ),
    "umi missing key": (
        _umi,
        lambda a: a.pop("data/robot0_demo_end_pose"),
        r"missing 'data/robot0_demo_end_pose'",
    ),
    "aloha missing key": (_aloha, lambda e: e.pop("/action"), r"episode_1\.hdf5: missing /action"),
    "aloha ragged": (
        _aloha,
        lambda e: _set(e, "/action", e["/action"][:-1]),
        r"episode_1\.hdf5: arrays have different numbers of frames \(/action: 3, /observations/qpos: 4",
    ),
    "aloha empty": (
        _aloha,
        lambda e: e.update({k: v[:0] for k, v in e.items()}),
        r"episode_1\.hdf5: the episode is empty",
    ),
    "aloha other cameras": (
        _aloha,
        lambda e: e.pop("/observations/images/left_wrist"),
        r"episode_1\.hdf5 differs from .*episode_0\.hdf5: camera 'left_wrist'",
    ),
    "aloha wrong image dtype": (
        _aloha,
        lambda e: _set(e, "/observations/images/top", e["/observations/images/top"].astype(np.float32)),
        r"episode_1\.hdf5: '/observations/images/top' has dtype float32; expected uint8",
    ),
    "xarm missing key": (_xarm, lambda b: b.pop("dones"), r"buffer\.pkl: missing key\(s\) dones"),
    "xarm ragged": (
        _xarm,
        lambda b: _set(b, "rewards", b["rewards"][:-1]),
        r"buffer\.pkl: arrays have different numbers of frames .*rewards: 10",
    ),
    "xarm wrong image shape": (
        _xarm,
        lambda b: _set(b["observations"], "rgb", b["observations"]["rgb"][:, :2]),
        r"'observations/rgb' has shape \(11, 2, 10, 12\)",
    ),
    "xarm no episode end": (
        _xarm,
        lambda b: _set(b, "dones", np.zeros_like(b["dones"])),
        r"'dones' is never True",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_raw_input_names_file_and_key(tmp_path, case):
    make, edit, message = BAD_INPUTS[case]
    raw_dir, raw_format = make(tmp_path, edit)
    with pytest.raises(RawFormatError, match=message):
        convert_raw_dataset(raw_dir, raw_format, "test/raw", tmp_path / "out", video=False, progress=False)
    assert not (tmp_path / "out").exists()


def padded_jpegs(frames: np.ndarray) -> np.ndarray:
    """JPEG bytes of each frame, zero-padded to the longest (how ACT stores compressed frames)."""
    buffers = jpeg_encode(frames)
    out = np.zeros((len(buffers), max(len(b) for b in buffers)), dtype=np.uint8)
    for i, b in enumerate(buffers):
        out[i, : len(b)] = b
    return out


def test_undecodable_frame_mid_conversion_leaves_nothing_behind(tmp_path):
    episodes = {0: aloha_episode(3, 0), 1: aloha_episode(3, 1)}
    for episode in episodes.values():
        episode.pop("/observations/images/left_wrist")
        episode["/observations/images/top"] = padded_jpegs(episode["/observations/images/top"])
    episodes[1]["/observations/images/top"][2] = 7  # not an image any more
    raw = write_aloha(tmp_path / "raw", episodes)
    (tmp_path / "out").mkdir()
    with pytest.raises(
        RawFormatError, match=r"episode_1\.hdf5: /observations/images/top\[2\]: not a decodable"
    ):
        convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", video=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # no temporary folder left
    assert not any((tmp_path / "out").iterdir())


def test_argument_errors(tmp_path):
    raw = write_aloha(tmp_path / "raw", {0: aloha_episode(3, 0)})
    with pytest.raises(EpisodeNotFoundError, match=r"Episodes \[1\] do not exist .* episodes 0\.\.0"):
        convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", episodes=[0, 1], progress=False)
    with pytest.raises(RawFormatError, match="--keypoints-only applies to pusht_zarr only"):
        convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", keypoints_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawFormatError, match="No 'episode_<i>.hdf5' files in .*empty"):
        convert_raw_dataset(tmp_path / "empty", "aloha_hdf5", "test/raw", tmp_path / "o2", progress=False)
    with pytest.raises(RawFormatError, match="does not exist"):
        convert_raw_dataset(tmp_path / "nowhere", "aloha_hdf5", "test/raw", tmp_path / "o2", progress=False)


def test_video_encoding_error_names_the_episode(tmp_path):
    raw = write_aloha(tmp_path / "raw", {0: aloha_episode(3, 0, size=(11, 15))})
    with pytest.raises(RawFormatError, match=r"episode_0\.hdf5: encoding 'observation.images.\w+' as video"):
        convert_raw_dataset(raw, "aloha_hdf5", "test/raw", tmp_path / "out", vcodec="libx264", progress=False)
    assert not (tmp_path / "out").exists()


def test_out_dir_is_replaced_only_when_forced(tmp_path):
    raw = write_pickle(tmp_path / "raw" / "buffer.pkl", xarm_buffer()).parent
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous dataset")
    with pytest.raises(DatasetExistsError, match="--force-override 1"):
        convert_raw_dataset(raw, "xarm_pkl", "test/raw", out, video=False, progress=False)
    assert (out / "keep.txt").read_text() == "previous dataset"
    convert_raw_dataset(raw, "xarm_pkl", "test/raw", out, video=False, force_override=True, progress=False)
    assert not (out / "keep.txt").exists() and LeRobotDataset("test/raw", root=out).num_episodes == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    # never replace the folder holding the raw data
    with pytest.raises(RawFormatError, match="would destroy the input"):
        convert_raw_dataset(raw, "xarm_pkl", "test/raw", tmp_path, force_override=True, progress=False)
    assert (raw / "buffer.pkl").is_file()


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_in_subprocess(tmp_path):
    buffer = xarm_buffer()
    raw = write_pickle(tmp_path / "raw" / "buffer.pkl", buffer).parent
    cmd = [sys.executable, str(SCRIPT), "--raw-dir", str(raw), "--repo-id", "test/raw"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, "--raw-format", "xarm_pkl", "--out-dir", str(tmp_path / "out"), "--video", "0", "--fps", "30"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Converted 2 episodes, 9 frames (xarm_pkl, 30 fps, cameras: PNG images)" in done.stdout
    ds, columns = read_back(tmp_path / "out")
    assert ds.fps == 30 and ds.meta.image_keys == ["observation.image"]
    expected = buffer["observations"]["rgb"][:9].transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(columns["observation.image"], expected)  # PNG: lossless
    bad = subprocess.run(
        [*cmd, "--raw-format", "rlds", "--out-dir", str(tmp_path / "o2")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "known formats: aloha_hdf5, pusht_zarr, umi_zarr, xarm_pkl" in bad.stderr


def test_cli_refuses_existing_out_dir_and_pushes_when_asked(tmp_path, monkeypatch, capsys):
    raw = write_pickle(tmp_path / "raw" / "buffer.pkl", xarm_buffer()).parent
    out = tmp_path / "out"
    args = ["--raw-dir", str(raw), "--raw-format", "xarm_pkl", "--repo-id", "me/xarm", "--out-dir", str(out)]
    assert script.main([*args, "--video", "0"]) == 0
    assert script.main([*args, "--video", "0"]) == 2
    assert "already exists" in capsys.readouterr().err

    calls = []

    class FakeHfApi:
        def __init__(self, token=None):
            pass

        def __getattr__(self, name):
            return lambda *a, **kw: calls.append((name, kw))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.HfApi", FakeHfApi)
    assert script.main([*args, "--video", "0", "--force-override", "1", "--push-to-hub", "1"]) == 0
    assert "Pushed to https://huggingface.co/datasets/me/xarm" in capsys.readouterr().out
    by_name = {name: kw for name, kw in calls}
    assert (
        by_name["upload_folder"]["folder_path"] == str(out)
        and by_name["upload_folder"]["repo_id"] == "me/xarm"
    )
    assert by_name["create_tag"]["tag"] == "v3.0"
    assert "xarm_pkl" in by_name["upload_file"]["path_or_fileobj"].decode()  # tag in the dataset card


# --------------------------------------------------------------------------------------- real PushT data


def test_real_pusht_zarr(tmp_path, pusht_env):
    zarr_path = require_shared_data("pusht_cchi_v7_replay.zarr")
    source = PushTZarrSource(zarr_path, keypoints_only=True)
    assert source.num_episodes == 206 and sum(source.episode_lengths) == 25_650
    assert source.episode_lengths[0] == 161

    picked = [0, 1, 205]
    result = convert_raw_dataset(
        zarr_path.parent, "pusht_zarr", "lerobot/pusht_keypoints", tmp_path / "out",
        keypoints_only=True, episodes=picked, progress=False,
    )  # fmt: skip
    lengths = [source.episode_lengths[e] for e in picked]
    assert result.num_frames == sum(lengths)
    _, columns = read_back(tmp_path / "out", "lerobot/pusht_keypoints")
    rows = np.concatenate([np.arange(*source.ranges[e]) for e in picked])
    check_pusht_against_env(pusht_env, source.state[rows], columns, lengths)
    np.testing.assert_array_equal(columns["action"], source.action[rows])

    # The recorded images are what gym-pusht renders with the block at (position, angle) as placed above:
    # this pins down the pose convention that the keypoints and rewards rely on.
    images = PushTZarrSource(zarr_path).read_episode(0)["observation.image"]
    for t in (0, 80, 160):
        place(pusht_env, source.state[t])
        pusht_env.space.reindex_shapes_for_body(pusht_env.block)
        pusht_env.space.reindex_shapes_for_body(pusht_env.agent)
        rendered = pusht_env._render().astype(np.float32)
        assert np.abs(rendered - images[t]).mean() < 0.5

    # Same state and action as the reference conversion (lerobot/pusht v1.3, episode 0).
    import pyarrow as pa

    arrow = require_shared_data("lerobot_v1.3", "datasets", "pusht", "train", "data-00000-of-00001.arrow")
    with pa.memory_map(str(arrow)) as stream:
        ref = pa.ipc.open_stream(stream).read_all()
    for key in ("observation.state", "action"):
        np.testing.assert_array_equal(
            columns[key][:161], np.array(ref.column(key).to_pylist(), dtype=np.float32)
        )
