"""PushT human demonstrations in the Diffusion Policy zarr layout (`pusht_cchi_v7_replay.zarr`).

Raw layout: `data/state` (N, 5) = [agent_x, agent_y, block_x, block_y, block_angle], `data/action` (N, 2),
`data/img` (N, 96, 96, 3) float in [0, 255], `meta/episode_ends` (E,) cumulative. Converted features:
`observation.image`, `observation.state` (agent position), `action` (target position; both in the env's
pixel coordinates, [0, 512]), `observation.environment_state` (the 16 coordinates of the T's 8 keypoints,
as gym-pusht's `environment_state_agent_pos` observation reports them), `next.reward`, `next.success`,
`next.done`. `keypoints_only=True` drops the image (the `lerobot/pusht_keypoints` variant).

The block pose: `block_x, block_y` is the position of the body's origin and `block_angle` its rotation,
i.e. the T's vertex v sits at R(angle) v + (block_x, block_y). Rendering gym-pusht with the block placed
that way reproduces the recorded images (mean absolute error < 0.15 of 255, against 0.6 to 4.5 otherwise),
which settles the convention. The reference converter set the position before the angle, and pymunk rotates
a body about its centre of gravity, so its rewards and keypoints describe a block displaced by
(I - R(angle)) (0, 45); we do not reproduce that.

Rewards follow gym-pusht's `step`: coverage = area(goal T ∩ block T) / area(goal T),
reward = clip(coverage / 0.95, 0, 1), success = coverage > 0.95. As in the reference, `next.reward[t]` and
`next.success[t]` are those of frame t + 1 (what `step(action[t])` returns), the last frame repeating its
own. `next.done` is True on the last frame only (the reference also set it on the frame before, an
off-by-one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lerobot.common.datasets.push_dataset_to_hub.utils import (
    CAMERA_NAMES,
    RawFormatError,
    RawSource,
    check_array,
    check_same_length,
    episode_ranges_from_ends,
    float_image_to_uint8,
    locate_zarr,
    open_zarr,
    read_zarr_slice,
    zarr_arrays,
)

TASK = "Push the T-shaped block onto the T-shaped target."
SUCCESS_THRESHOLD = 0.95  # gym-pusht's PushTEnv.success_threshold
GOAL_POSE = (256.0, 256.0, np.pi / 4)  # gym-pusht's fixed goal: x, y, angle

# The T in its body frame: gym-pusht's two rectangles (scale 30, length 4), vertices in the order pymunk's
# `Poly.get_vertices()` returns them, which is the order of the 8 keypoints in `environment_state`.
TEE_VERTICES = np.array(
    [
        [-60.0, 0.0], [60.0, 0.0], [60.0, 30.0], [-60.0, 30.0],  # horizontal bar
        [-15.0, 30.0], [15.0, 30.0], [15.0, 120.0], [-15.0, 120.0],  # stem
    ]
)  # fmt: skip


def tee_keypoints(position: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """World coordinates (N, 8, 2) of the T's keypoints for body positions (N, 2) and angles (N,)."""
    position = np.asarray(position, dtype=np.float64).reshape(-1, 2)
    angle = np.asarray(angle, dtype=np.float64).reshape(-1)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    vx, vy = TEE_VERTICES[:, 0], TEE_VERTICES[:, 1]
    x = vx * cos - vy * sin + position[:, :1]
    y = vx * sin + vy * cos + position[:, 1:]
    return np.stack([x, y], axis=-1)


def _tee_geometries(keypoints: np.ndarray):
    import shapely

    bars = shapely.polygons(keypoints[:, :4])
    stems = shapely.polygons(keypoints[:, 4:])
    return shapely.multipolygons(np.stack([bars, stems], axis=1))


def goal_coverage(keypoints: np.ndarray) -> np.ndarray:
    """Fraction (N,) of the goal T covered by the block T with these keypoints, as gym-pusht computes it."""
    try:
        import shapely
    except ImportError as e:
        raise RawFormatError(
            "pusht_zarr rewards need the 'shapely' package (it comes with gym-pusht): "
            "pip install 'lerobot[pusht]'."
        ) from e
    goal = _tee_geometries(tee_keypoints(np.array(GOAL_POSE[:2]), np.array(GOAL_POSE[2])))[0]
    blocks = _tee_geometries(np.asarray(keypoints, dtype=np.float64))
    return shapely.area(shapely.intersection(goal, blocks)) / shapely.area(goal)


def next_step(values: np.ndarray) -> np.ndarray:
    """Value of frame t + 1 at row t; the last row keeps its own (there is no frame after it)."""
    return np.concatenate([values[1:], values[-1:]])


class PushTZarrSource(RawSource):
    format_name = "pusht_zarr"
    default_fps = 10
    robot_type = None

    def __init__(self, raw_dir: str | Path, keypoints_only: bool = False) -> None:
        super().__init__(raw_dir)
        self.keypoints_only = keypoints_only
        self.path = locate_zarr(self.raw_dir, "pusht_cchi_v7_replay.zarr")
        group = open_zarr(self.path)
        keys = ["data/state", "data/action", "meta/episode_ends"]
        if not keypoints_only:
            keys.insert(0, "data/img")
        arrays = zarr_arrays(group, self.path, keys, self.format_name)
        where = str(self.path)
        check_array(arrays["data/state"], where=where, key="data/state", shape=(None, 5))
        check_array(arrays["data/action"], where=where, key="data/action", shape=(None, 2))
        lengths = {"data/state": arrays["data/state"].shape[0], "data/action": arrays["data/action"].shape[0]}
        if not keypoints_only:
            check_array(arrays["data/img"], where=where, key="data/img", shape=(None, None, None, 3))
            lengths["data/img"] = arrays["data/img"].shape[0]
            self.image_shape = tuple(int(s) for s in arrays["data/img"].shape[1:])
        total = check_same_length(lengths, where)
        self.ranges = episode_ranges_from_ends(arrays["meta/episode_ends"][:], total, where)
        # Low-dimensional arrays are small (25 650 x 7 floats): read once. Images are read per episode.
        self.state = np.asarray(arrays["data/state"][:], dtype=np.float64)
        self.action = np.asarray(arrays["data/action"][:], dtype=np.float32)
        if not (np.isfinite(self.state).all() and np.isfinite(self.action).all()):
            raise RawFormatError(f"{where}: 'data/state' or 'data/action' holds NaN or infinite values.")
        self.images = arrays.get("data/img")

    def features(self) -> dict[str, dict]:
        xy = ["x", "y"]
        features = {}
        if not self.keypoints_only:
            features["observation.image"] = {
                "dtype": "video",
                "shape": self.image_shape,
                "names": CAMERA_NAMES,
            }
        features.update(
            {
                "observation.state": {"dtype": "float32", "shape": (2,), "names": xy},
                "observation.environment_state": {
                    "dtype": "float32",
                    "shape": (16,),
                    "names": [f"keypoint{k}_{c}" for k in range(8) for c in xy],
                },
                "action": {"dtype": "float32", "shape": (2,), "names": xy},
                "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
                "next.success": {"dtype": "bool", "shape": (1,), "names": None},
                "next.done": {"dtype": "bool", "shape": (1,), "names": None},
            }
        )
        return features

    @property
    def episode_lengths(self) -> list[int]:
        return [stop - start for start, stop in self.ranges]

    def describe_episode(self, index: int) -> str:
        start, stop = self.ranges[index]
        return f"{self.path} (episode {index}, frames {start}:{stop})"

    def default_task(self, repo_id: str) -> str:
        return TASK

    def read_episode(self, index: int) -> dict[str, np.ndarray]:
        start, stop = self.ranges[index]
        state = self.state[start:stop]
        keypoints = tee_keypoints(state[:, 2:4], state[:, 4])
        coverage = goal_coverage(keypoints)
        reward = np.clip(coverage / SUCCESS_THRESHOLD, 0.0, 1.0)
        done = np.zeros(stop - start, dtype=bool)
        done[-1] = True
        episode = {
            "observation.state": state[:, :2].astype(np.float32),
            "observation.environment_state": keypoints.reshape(-1, 16).astype(np.float32),
            "action": self.action[start:stop],
            "next.reward": next_step(reward).astype(np.float32),
            "next.success": next_step(coverage > SUCCESS_THRESHOLD),
            "next.done": done,
        }
        if not self.keypoints_only:
            frames = read_zarr_slice(self.images, start, stop, self.path, "data/img")
            episode["observation.image"] = float_image_to_uint8(
                frames, self.describe_episode(index), "data/img"
            )
        return episode
