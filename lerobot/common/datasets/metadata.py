"""One description of a dataset, whatever its on-disk format.

LeRobot datasets exist in several layouts (v1.x: one Arrow table + `meta_data/` safetensors; v2.x: one parquet
and one mp4 per episode + JSON lines; v3.0: many episodes per parquet/mp4 file + parquet metadata). The readers
in `formats/` turn each of them into a `DatasetMetadata`, so that `LeRobotDataset` needs to know nothing about
layouts: it sees features, episodes (with their row range, data file and video segments), tasks and stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from packaging.version import Version

from lerobot.common.datasets.errors import (
    DatasetNotFoundError,
    ForwardCompatibilityError,
    MetadataError,
)
from lerobot.common.datasets.utils import CODEBASE_VERSION, READABLE_VERSIONS, load_json

# Columns every LeRobot v2+ dataset has, whatever the robot.
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
    "frame_index": {"dtype": "int64", "shape": (1,), "names": None},
    "episode_index": {"dtype": "int64", "shape": (1,), "names": None},
    "index": {"dtype": "int64", "shape": (1,), "names": None},
    "task_index": {"dtype": "int64", "shape": (1,), "names": None},
}
VISUAL_DTYPES = ("image", "video")


@dataclass
class VideoSegment:
    """Where an episode's frames for one camera live: a file, and the time span inside it (v3.0 shares files)."""

    path: str  # relative to the dataset root
    from_timestamp: float = 0.0
    to_timestamp: float | None = None


@dataclass
class EpisodeRecord:
    episode_index: int
    length: int
    tasks: list[str]
    dataset_from_index: int  # global row range [from, to) in the full dataset
    dataset_to_index: int
    data_path: str  # relative path of the file that holds this episode's rows
    videos: dict[str, VideoSegment] = field(default_factory=dict)


@dataclass
class DatasetMetadata:
    root: Path
    codebase_version: str
    fps: float
    features: dict[str, dict]
    episodes: dict[int, EpisodeRecord]
    tasks: dict[int, str]
    stats: dict[str, dict[str, np.ndarray]]
    info: dict
    robot_type: str | None = None

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] in VISUAL_DTYPES]

    @property
    def total_episodes(self) -> int:
        return len(self.episodes)

    @property
    def total_frames(self) -> int:
        return sum(ep.length for ep in self.episodes.values())


def find_info_file(root: Path) -> Path | None:
    """The metadata file that identifies a dataset folder: `meta/info.json` (v2+) or `meta_data/info.json` (v1)."""
    for candidate in (root / "meta" / "info.json", root / "meta_data" / "info.json"):
        if candidate.is_file():
            return candidate
    return None


def detect_version(root: Path) -> str:
    """Return the dataset's codebase version, e.g. 'v1.3' for old datasets that did not record one."""
    info_path = find_info_file(root)
    if info_path is None:
        raise DatasetNotFoundError(
            f"No LeRobot dataset at {root}: neither meta/info.json (format v2+) nor meta_data/info.json (v1.x) "
            "exists. Check `root`, or leave it unset to download the dataset from the Hugging Face Hub."
        )
    info = load_json(info_path)
    if not isinstance(info, dict):
        raise MetadataError(f"{info_path} must hold a JSON object, got {type(info).__name__}.")
    version = info.get("codebase_version")
    if version is None:
        if info_path.parent.name == "meta":
            raise MetadataError(
                f"{info_path} has no 'codebase_version' key. Every v2+ dataset records it (e.g. \"v2.1\"); "
                "add it if you know which version wrote this dataset."
            )
        return "v1.3"  # v1.x datasets only started recording their version at v1.6
    if not isinstance(version, str) or not version.startswith("v"):
        raise MetadataError(f"{info_path}: 'codebase_version' must look like \"v2.1\", got {version!r}.")
    try:
        parsed = Version(version[1:])
    except Exception as e:
        raise MetadataError(f"{info_path}: cannot parse codebase_version {version!r}.") from e
    if parsed > Version(CODEBASE_VERSION[1:]):
        raise ForwardCompatibilityError(
            f"The dataset at {root} is format {version}, newer than this library reads (up to "
            f"{CODEBASE_VERSION}). Upgrade lerobot, or ask for a revision of the dataset in an older format."
        )
    if version not in READABLE_VERSIONS:
        raise MetadataError(
            f"{info_path}: unknown codebase_version {version!r}; readable versions: {', '.join(READABLE_VERSIONS)}."
        )
    return version


def require_keys(info: dict, keys: list[str], path: Path) -> None:
    missing = [k for k in keys if k not in info]
    if missing:
        raise MetadataError(
            f"{path} is missing the key(s) {missing}. A dataset of this version needs {keys}; restore the file "
            "from the original dataset or re-create it with the writer."
        )


def load_metadata(root: Path) -> DatasetMetadata:
    """Read a dataset folder of any supported version into a `DatasetMetadata`."""
    from lerobot.common.datasets.formats import v1, v2, v3

    root = Path(root)
    version = detect_version(root)
    if version.startswith("v1."):
        return v1.load_metadata(root, version)
    if version.startswith("v2."):
        return v2.load_metadata(root, version)
    return v3.load_metadata(root, version)


def normalize_feature(key: str, feature: dict, path: Path) -> dict:
    """Validate one `info.json` feature and give it a canonical form (tuple shape, names kept as found)."""
    if not isinstance(feature, dict) or "dtype" not in feature or "shape" not in feature:
        raise MetadataError(
            f"{path}: feature {key!r} must be an object with 'dtype' and 'shape', got {feature!r}."
        )
    out = dict(feature)
    out["shape"] = tuple(int(s) for s in feature["shape"])
    if out["dtype"] in VISUAL_DTYPES:
        out["shape"] = image_shape_hwc(key, out, path)
    return out


def image_shape_hwc(key: str, feature: dict, path: Path) -> tuple[int, int, int]:
    """Camera shapes are stored (H, W, C) by the official writers, but some datasets in the wild store (C, H, W)."""
    shape = tuple(int(s) for s in feature["shape"])
    if len(shape) != 3:
        raise MetadataError(f"{path}: camera feature {key!r} must have a 3-D shape, got {list(shape)}.")
    names = feature.get("names")
    if isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel"):
        return (shape[1], shape[2], shape[0])
    if shape[0] in (1, 3) and shape[2] not in (1, 3):
        return (shape[1], shape[2], shape[0])
    return shape
