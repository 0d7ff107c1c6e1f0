"""ALOHA / ACT recordings: one `episode_<i>.hdf5` file per episode.

Each file holds `/action` (T, A), `/observations/qpos` (T, D), optionally `/observations/qvel` and
`/observations/effort` (T, D'), and one dataset per camera under `/observations/images/`: either raw uint8
frames (T, H, W, 3) (simulation) or JPEG bytes per frame (real robots), stored as a zero-padded (T, max_len)
uint8 array or a variable-length uint8 dataset. Depth cameras (names containing "depth") are skipped, as in
the reference.

Converted: `observation.images.<cam>`, `observation.state` (qpos), `observation.velocity` (qvel),
`observation.effort`, `action`, `next.done` (True on the last frame). Every file must have the same cameras
and optional keys. Episodes are ordered by the number in their file name (episode_2 before episode_10).

JPEG frames are decoded with OpenCV without any colour conversion, so a frame comes back exactly as the array
handed to `cv2.imencode` when recording (the ACT recorders encode their RGB arrays that way).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lerobot.common.datasets.push_dataset_to_hub.utils import (
    CAMERA_NAMES,
    RawFormatError,
    RawSource,
    check_array,
    check_same_length,
)

_EPISODE_FILE = re.compile(r"^episode_(\d+)\.hdf5$")
ACTION, QPOS, QVEL, EFFORT, IMAGES = (
    "/action",
    "/observations/qpos",
    "/observations/qvel",
    "/observations/effort",
    "/observations/images",
)
ALOHA_MOTORS = [
    f"{side}_{joint}"
    for side in ("left", "right")
    for joint in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
]


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise RawFormatError("aloha_hdf5 needs the 'h5py' package: pip install 'lerobot[aloha]'.") from e
    return h5py


def episode_files(raw_dir: Path) -> list[Path]:
    """`episode_<i>.hdf5` files of `raw_dir` (or `raw_dir` itself), ordered by i."""
    if raw_dir.is_file():
        return [raw_dir]
    numbered = [(int(m.group(1)), p) for p in raw_dir.iterdir() if (m := _EPISODE_FILE.match(p.name))]
    if not numbered:
        raise RawFormatError(
            f"No 'episode_<i>.hdf5' files in {raw_dir}; aloha_hdf5 expects one hdf5 file per episode "
            "(ACT layout)."
        )
    return [p for _, p in sorted(numbered)]


def decode_jpeg(buffer: np.ndarray, where: str) -> np.ndarray:
    try:
        import cv2
    except ImportError as e:
        raise RawFormatError(
            "Decoding JPEG-compressed aloha images needs OpenCV: pip install opencv-python-headless."
        ) from e
    image = cv2.imdecode(np.ascontiguousarray(buffer, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RawFormatError(f"{where}: not a decodable JPEG/PNG image ({len(buffer)} bytes).")
    return image


class AlohaHdf5Source(RawSource):
    format_name = "aloha_hdf5"
    default_fps = 50
    robot_type = "aloha"

    def __init__(self, raw_dir: str | Path) -> None:
        super().__init__(raw_dir)
        self.h5py = _h5py()
        self.files = episode_files(self.raw_dir)
        self.lengths: list[int] = []
        self.layout: dict | None = None
        for path in self.files:
            layout, length = self._inspect(path)
            if self.layout is None:
                self.layout = layout
            elif layout != self.layout:
                raise RawFormatError(
                    f"{path} differs from {self.files[0]}: {self._describe_difference(self.layout, layout)}. "
                    "Every episode file must hold the same keys, cameras and dimensions."
                )
            self.lengths.append(length)
        self.image_shapes = {cam: self._camera_shape(cam) for cam in self.layout["cameras"]}

    def _open(self, path: Path):
        try:
            return self.h5py.File(path, "r")
        except OSError as e:
            raise RawFormatError(f"{path} is not a readable HDF5 file ({e}).") from e

    def _inspect(self, path: Path) -> tuple[dict, int]:
        """Keys, dimensions and camera storage of one file (metadata only; no frame is read)."""
        where = str(path)
        with self._open(path) as f:
            missing = [k for k in (ACTION, QPOS) if k not in f]
            if missing:
                raise RawFormatError(
                    f"{where}: missing {', '.join(missing)}; an ACT episode file needs {ACTION} and {QPOS}."
                )
            lengths, dims = {}, {}
            for key in (ACTION, QPOS, QVEL, EFFORT):
                if key in f:
                    check_array(f[key], where=where, key=key, ndim=2)
                    lengths[key], dims[key] = f[key].shape
            cameras = {}
            if IMAGES in f:
                for cam in sorted(f[IMAGES].keys()):
                    if "depth" in cam:
                        continue
                    key = f"{IMAGES}/{cam}"
                    cameras[cam] = self._camera_storage(f[key], where, key)
                    lengths[key] = f[key].shape[0]
            length = check_same_length(lengths, where)
            if length == 0:
                raise RawFormatError(f"{where}: the episode is empty (0 frames).")
        return {"dims": dims, "cameras": cameras}, length

    def _camera_storage(self, dataset, where: str, key: str) -> str | tuple:
        """("raw", H, W, C) for uint8 frames; "jpeg" for encoded bytes (padded rows or variable length)."""
        if self.h5py.check_vlen_dtype(dataset.dtype) is not None:
            return "jpeg"
        check_array(dataset, where=where, key=key, kind="uint8")
        if dataset.ndim == 2:
            return "jpeg"
        check_array(dataset, where=where, key=key, shape=(None, None, None, 3), kind="uint8")
        return ("raw", *dataset.shape[1:])

    @staticmethod
    def _describe_difference(a: dict, b: dict) -> str:
        parts = []
        for key in sorted(set(a["dims"]) | set(b["dims"])):
            if a["dims"].get(key) != b["dims"].get(key):
                parts.append(
                    f"{key}: {a['dims'].get(key, 'absent')} vs {b['dims'].get(key, 'absent')} values"
                )
        for cam in sorted(set(a["cameras"]) | set(b["cameras"])):
            if a["cameras"].get(cam) != b["cameras"].get(cam):
                parts.append(
                    f"camera {cam!r}: {a['cameras'].get(cam, 'absent')} vs {b['cameras'].get(cam, 'absent')}"
                )
        return "; ".join(parts)

    def _camera_shape(self, cam: str) -> tuple[int, int, int]:
        storage = self.layout["cameras"][cam]
        if storage != "jpeg":
            return tuple(int(s) for s in storage[1:])
        # JPEG frames carry their size only inside the bytes: decode the first one.
        with self._open(self.files[0]) as f:
            key = f"{IMAGES}/{cam}"
            return decode_jpeg(f[key][0], f"{self.files[0]}: {key}[0]").shape

    def features(self) -> dict[str, dict]:
        dims = self.layout["dims"]

        def vector(key: str) -> dict:
            return {
                "dtype": "float32",
                "shape": (dims[key],),
                "names": ALOHA_MOTORS if dims[key] == 14 else None,
            }

        features = {
            f"observation.images.{cam}": {"dtype": "video", "shape": shape, "names": CAMERA_NAMES}
            for cam, shape in self.image_shapes.items()
        }
        features["observation.state"] = vector(QPOS)
        if QVEL in dims:
            features["observation.velocity"] = vector(QVEL)
        if EFFORT in dims:
            features["observation.effort"] = vector(EFFORT)
        features["action"] = vector(ACTION)
        features["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
        return features

    @property
    def episode_lengths(self) -> list[int]:
        return self.lengths

    def describe_episode(self, index: int) -> str:
        return str(self.files[index])

    def default_task(self, repo_id: str) -> str:
        name = f"{repo_id} {self.raw_dir.name}".lower()
        if "insertion" in name:
            return "Insert the peg into the socket."
        if "transfer_cube" in name:
            return "Pick up the cube with the right arm and transfer it to the left arm."
        return repo_id.split("/")[-1]

    def _read_camera(self, f, cam: str, path: Path) -> np.ndarray:
        key = f"{IMAGES}/{cam}"
        if self.layout["cameras"][cam] != "jpeg":
            return np.asarray(f[key][:])
        expected = self.image_shapes[cam]
        frames = np.empty((f[key].shape[0], *expected), dtype=np.uint8)
        for i, buffer in enumerate(f[key]):
            frame = decode_jpeg(buffer, f"{path}: {key}[{i}]")
            if frame.shape != expected:
                raise RawFormatError(
                    f"{path}: {key}[{i}] decodes to {frame.shape}; the camera's frames are {expected}."
                )
            frames[i] = frame
        return frames

    def read_episode(self, index: int) -> dict[str, np.ndarray]:
        path = self.files[index]
        with self._open(path) as f:
            episode = {
                f"observation.images.{cam}": self._read_camera(f, cam, path) for cam in self.image_shapes
            }
            episode["observation.state"] = np.asarray(f[QPOS][:], dtype=np.float32)
            if QVEL in self.layout["dims"]:
                episode["observation.velocity"] = np.asarray(f[QVEL][:], dtype=np.float32)
            if EFFORT in self.layout["dims"]:
                episode["observation.effort"] = np.asarray(f[EFFORT][:], dtype=np.float32)
            episode["action"] = np.asarray(f[ACTION][:], dtype=np.float32)
        done = np.zeros(self.lengths[index], dtype=bool)
        done[-1] = True
        episode["next.done"] = done
        return episode
