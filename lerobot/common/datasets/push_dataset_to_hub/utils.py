"""What every raw-format reader shares: the error type, the `RawSource` interface and input checks.

A raw source opens and validates a raw dataset once (keys, dtypes, shapes, episode boundaries), then hands out
one episode at a time as a dict `feature key -> array with one row per frame` (camera frames as uint8
(T, H, W, C)). Writing those episodes in the LeRobot format is `convert_raw.convert_raw_dataset`'s job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lerobot.common.datasets.errors import DatasetError

CAMERA_NAMES = ["height", "width", "channels"]


class RawFormatError(DatasetError, ValueError):
    """Raw input that cannot be converted: a missing file or key, ragged or empty episodes, a wrong dtype."""


class RawSource(ABC):
    """One raw dataset, opened and validated. Subclasses set the class variables and the abstract methods."""

    format_name: ClassVar[str]
    default_fps: ClassVar[int]
    robot_type: ClassVar[str | None] = None

    def __init__(self, raw_dir: str | Path) -> None:
        self.raw_dir = Path(raw_dir)
        if not self.raw_dir.exists():
            raise RawFormatError(f"--raw-dir {self.raw_dir} does not exist.")

    @abstractmethod
    def features(self) -> dict[str, dict]:
        """LeRobot features of the converted dataset; cameras are declared as "video" (the writer stores them
        as PNG images instead when videos are off)."""

    @property
    @abstractmethod
    def episode_lengths(self) -> list[int]:
        """Frames per raw episode, in raw order."""

    @abstractmethod
    def read_episode(self, index: int) -> dict[str, np.ndarray]:
        """All frames of raw episode `index`: every feature key -> array of shape (length, *feature shape)."""

    @abstractmethod
    def describe_episode(self, index: int) -> str:
        """Where raw episode `index` comes from (file, frame range), for error messages."""

    @abstractmethod
    def default_task(self, repo_id: str) -> str:
        """The task text stored with every frame when the user gives none."""

    @property
    def num_episodes(self) -> int:
        return len(self.episode_lengths)


# ---------------------------------------------------------------------------------------------- raw files


def locate(raw_dir: Path, preferred: str, pattern: str, what: str) -> Path:
    """`raw_dir` itself when it is the raw file/folder, else `raw_dir/preferred`, else the single match."""
    if raw_dir.name == preferred or (raw_dir.is_file() and raw_dir.match(pattern)):
        return raw_dir
    if (raw_dir / preferred).exists():
        return raw_dir / preferred
    matches = sorted(raw_dir.glob(pattern)) if raw_dir.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RawFormatError(
            f"No {what} in {raw_dir}: expected {raw_dir / preferred} (or a single '{pattern}'). "
            "Point --raw-dir at the folder holding it or at the file itself."
        )
    raise RawFormatError(
        f"{raw_dir} holds several {what}s ({', '.join(m.name for m in matches)}); "
        "point --raw-dir at one of them."
    )


def is_zarr_group(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in (".zgroup", "zarr.json", ".zattrs"))


def locate_zarr(raw_dir: Path, preferred: str) -> Path:
    if is_zarr_group(raw_dir):
        return raw_dir
    return locate(raw_dir, preferred, "*.zarr", "zarr store")


def open_zarr(path: Path) -> Any:
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as e:  # zarr raises several unrelated types for a folder that is not a group
        raise RawFormatError(f"{path} is not a readable zarr group ({type(e).__name__}: {e}).") from e


def zarr_arrays(group: Any, path: Path, keys: Iterable[str], fmt: str) -> dict[str, Any]:
    """The zarr arrays `keys` of `group`, or an error naming every missing one."""
    keys = list(keys)
    missing = [k for k in keys if k not in group]
    if missing:
        raise RawFormatError(
            f"{path}: missing {', '.join(repr(k) for k in missing)}. A {fmt} store needs {', '.join(keys)}."
        )
    out = {}
    for key in keys:
        try:
            out[key] = group[key]
        except Exception as e:  # e.g. an array whose codec is not installed
            raise RawFormatError(
                f"{path}: cannot open {key!r} ({type(e).__name__}: {e}). If it names an unknown codec "
                "(UMI stores images as JPEG-XL), install the codec package (e.g. imagecodecs)."
            ) from e
    return out


def read_zarr_slice(array: Any, start: int, stop: int, path: Path, key: str) -> np.ndarray:
    """Frames start:stop of a zarr array; a codec that is not installed becomes a clear error."""
    try:
        return np.asarray(array[start:stop])
    except Exception as e:  # missing codecs surface as ValueError/KeyError/RuntimeError depending on zarr
        raise RawFormatError(
            f"{path}: cannot read {key!r} frames {start}:{stop} ({type(e).__name__}: {e}). If it names an "
            "unknown codec (UMI stores images as JPEG-XL), install the codec package (e.g. imagecodecs)."
        ) from e


# -------------------------------------------------------------------------------------------------- checks


def check_array(
    value: Any,
    *,
    where: str,
    key: str,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    kind: str = "numeric",
) -> None:
    """Raise RawFormatError naming `where`/`key` unless `value` has the expected rank, shape and dtype kind.

    `shape` lists the expected size of each axis (None = any); `kind` is "numeric", "uint8" or "bool".
    """
    dtype = getattr(value, "dtype", None)
    dims = getattr(value, "shape", None)
    if dtype is None or dims is None:
        raise RawFormatError(f"{where}: {key!r} must be an array, got {type(value).__name__}.")
    dtype = np.dtype(dtype)
    ok_kind = {
        "numeric": dtype.kind in "biuf",
        "uint8": dtype == np.uint8,
        "bool": dtype.kind in "biuf",
    }[kind]
    if not ok_kind:
        wanted = {"numeric": "a numeric dtype", "uint8": "uint8", "bool": "a bool or 0/1 numeric dtype"}[kind]
        raise RawFormatError(f"{where}: {key!r} has dtype {dtype}; expected {wanted}.")
    if ndim is not None and len(dims) != ndim:
        raise RawFormatError(f"{where}: {key!r} has shape {tuple(dims)}; expected {ndim} dimensions.")
    if shape is not None:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        if len(dims) != len(shape) or any(
            s is not None and d != s for d, s in zip(dims, shape, strict=False)
        ):
            raise RawFormatError(f"{where}: {key!r} has shape {tuple(dims)}; expected {expected}.")


def check_same_length(lengths: dict[str, int], where: str) -> int:
    """The common first dimension of several arrays, or an error listing each array's length."""
    values = set(lengths.values())
    if len(values) != 1:
        listing = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise RawFormatError(
            f"{where}: arrays have different numbers of frames ({listing}); every per-frame array of an "
            "episode must have one row per frame."
        )
    return values.pop()


def episode_ranges_from_ends(
    ends: Any, total: int, where: str, key: str = "meta/episode_ends"
) -> list[tuple]:
    """Episode (start, stop) frame ranges from cumulative end indices, checked against `total` frames."""
    check_array(ends, where=where, key=key, ndim=1)
    ends = np.asarray(ends)
    if ends.dtype.kind not in "iu":
        raise RawFormatError(f"{where}: {key!r} has dtype {ends.dtype}; expected integer frame indices.")
    if len(ends) == 0:
        raise RawFormatError(f"{where}: {key!r} is empty; the store holds no episode.")
    starts = np.concatenate([[0], ends[:-1]])
    for i, (start, stop) in enumerate(zip(starts, ends, strict=True)):
        if stop <= start:
            raise RawFormatError(
                f"{where}: episode {i} is empty or reversed ({key}[{i}] = {stop} after {start}); "
                "episode ends must be strictly increasing."
            )
    if ends[-1] != total:
        raise RawFormatError(
            f"{where}: {key}[-1] = {ends[-1]} but the data arrays hold {total} frames; the store is "
            "truncated or its episodes are ragged."
        )
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def float_image_to_uint8(frames: np.ndarray, where: str, key: str) -> np.ndarray:
    """Float images in [0, 255] (diffusion-policy zarr stores) -> uint8, truncating like the reference."""
    if frames.dtype == np.uint8:
        return frames
    if frames.size and not (np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 255):
        raise RawFormatError(
            f"{where}: {key!r} holds values outside [0, 255] (or NaN/inf): min {np.nanmin(frames)}, "
            f"max {np.nanmax(frames)}; expected pixel values in [0, 255]."
        )
    return frames.astype(np.uint8)
