"""UMI (Universal Manipulation Interface) demonstrations in its zarr layout (`cup_in_the_wild.zarr`).

Raw layout (N frames): `data/camera0_rgb` (N, H, W, 3) uint8 (JPEG-XL compressed in the published store,
which needs the `imagecodecs` codecs registered), `data/robot0_eef_pos` (N, 3),
`data/robot0_eef_rot_axis_angle` (N, 3), `data/robot0_gripper_width` (N, 1),
`data/robot0_demo_start_pose` (N, 6), `data/robot0_demo_end_pose` (N, 6), `meta/episode_ends` (E,).

Converted as the reference did: `observation.image`; `observation.state` =
[eef_pos (3), eef_rot_axis_angle (3), gripper_width (1)]; `start_pos`, `end_pose` (6 each) and
`gripper_width` (1) copied per frame; and `episode_data_index_from` / `episode_data_index_to`, the
episode's frame range in the raw store. There is no action: UMI derives actions from future poses at
training time.
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
    locate_zarr,
    open_zarr,
    read_zarr_slice,
    zarr_arrays,
)

TASK = "Put the cup on the plate."
IMAGE_KEY = "data/camera0_rgb"
# raw key -> expected number of values per frame
LOW_DIM = {
    "data/robot0_eef_pos": 3,
    "data/robot0_eef_rot_axis_angle": 3,
    "data/robot0_gripper_width": 1,
    "data/robot0_demo_start_pose": 6,
    "data/robot0_demo_end_pose": 6,
}


class UmiZarrSource(RawSource):
    format_name = "umi_zarr"
    default_fps = 10
    robot_type = "umi"

    def __init__(self, raw_dir: str | Path) -> None:
        super().__init__(raw_dir)
        self.path = locate_zarr(self.raw_dir, "cup_in_the_wild.zarr")
        where = str(self.path)
        arrays = zarr_arrays(
            open_zarr(self.path), self.path, [IMAGE_KEY, *LOW_DIM, "meta/episode_ends"], self.format_name
        )
        check_array(arrays[IMAGE_KEY], where=where, key=IMAGE_KEY, shape=(None, None, None, 3), kind="uint8")
        self.image_shape = tuple(int(s) for s in arrays[IMAGE_KEY].shape[1:])
        self.images = arrays[IMAGE_KEY]
        self.low_dim: dict[str, np.ndarray] = {}
        for key, dim in LOW_DIM.items():
            values = np.asarray(arrays[key][:])
            if values.ndim == 1 and dim == 1:
                values = values[:, None]
            check_array(values, where=where, key=key, shape=(None, dim))
            if not np.isfinite(values).all():
                raise RawFormatError(f"{where}: {key!r} holds NaN or infinite values.")
            self.low_dim[key] = values.astype(np.float32)
        lengths = {IMAGE_KEY: arrays[IMAGE_KEY].shape[0], **{k: len(v) for k, v in self.low_dim.items()}}
        total = check_same_length(lengths, where)
        self.ranges = episode_ranges_from_ends(arrays["meta/episode_ends"][:], total, where)

    def features(self) -> dict[str, dict]:
        pose = ["x", "y", "z", "rx", "ry", "rz"]
        return {
            "observation.image": {"dtype": "video", "shape": self.image_shape, "names": CAMERA_NAMES},
            "observation.state": {"dtype": "float32", "shape": (7,), "names": [*pose, "gripper_width"]},
            "episode_data_index_from": {"dtype": "int64", "shape": (1,), "names": None},
            "episode_data_index_to": {"dtype": "int64", "shape": (1,), "names": None},
            "end_pose": {"dtype": "float32", "shape": (6,), "names": pose},
            "start_pos": {"dtype": "float32", "shape": (6,), "names": pose},
            "gripper_width": {"dtype": "float32", "shape": (1,), "names": None},
        }

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
        n = stop - start

        def low(key: str) -> np.ndarray:
            return self.low_dim[key][start:stop]

        state = np.concatenate(
            [
                low("data/robot0_eef_pos"),
                low("data/robot0_eef_rot_axis_angle"),
                low("data/robot0_gripper_width"),
            ],
            axis=1,
        )
        return {
            "observation.image": read_zarr_slice(self.images, start, stop, self.path, IMAGE_KEY),
            "observation.state": state,
            "episode_data_index_from": np.full(n, start, dtype=np.int64),
            "episode_data_index_to": np.full(n, stop, dtype=np.int64),
            "end_pose": low("data/robot0_demo_end_pose"),
            "start_pos": low("data/robot0_demo_start_pose"),
            "gripper_width": low("data/robot0_gripper_width"),
        }
