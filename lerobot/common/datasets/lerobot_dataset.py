"""`LeRobotDataset`: a PyTorch dataset over LeRobot-format robot demonstrations, any format version.

    dataset = LeRobotDataset("lerobot/pusht", delta_timestamps={"action": [i / 10 for i in range(16)]})
    item = dataset[0]   # {"observation.image": (C, H, W) float32 in [0, 1], "action": (16, 2), "action_is_pad": (16,), ...}

Design: metadata of any version is normalised by `metadata.load_metadata`; the low-dimensional columns of the
selected episodes are read once with pyarrow into numpy (indexing them costs nanoseconds, where a row lookup
in a Hugging Face `datasets` table costs tens of microseconds); camera frames are decoded on demand from the
videos (optionally through a decoded-frame cache on disk) or from the PNG bytes embedded in the table.
`hf_dataset` is still there, memory-mapped, for users who want the Arrow view.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from lerobot.common.datasets.errors import (
    CorruptFileError,
    EpisodeNotFoundError,
    InvalidDeltaTimestampsError,
    TimestampSyncError,
)
from lerobot.common.datasets.formats.tables import read_schema, read_table
from lerobot.common.datasets.metadata import DatasetMetadata, load_metadata
from lerobot.common.datasets.recycled_buffers import frame_buffers
from lerobot.common.datasets.utils import safe_join, validate_repo_id

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE_S = 1e-4


def check_delta_timestamps(
    delta_timestamps: dict[str, Sequence[float]], fps: float, tolerance_s: float, features: dict
) -> dict[str, np.ndarray]:
    """Validate `delta_timestamps` and turn it into frame offsets, e.g. {"action": [0, 0.1]} -> {"action": [0, 1]}."""
    if not isinstance(delta_timestamps, dict):
        raise InvalidDeltaTimestampsError(
            f"delta_timestamps must be a dict from feature key to a list of seconds, got {type(delta_timestamps).__name__}."
        )
    offsets = {}
    for key, deltas in delta_timestamps.items():
        if key not in features:
            raise InvalidDeltaTimestampsError(
                f"delta_timestamps names {key!r}, which is not a feature of this dataset. "
                f"Features: {sorted(features)}."
            )
        if isinstance(deltas, (int, float)):
            deltas = [deltas]
        deltas = np.asarray(list(deltas), dtype=np.float64)
        if deltas.ndim != 1 or len(deltas) == 0:
            raise InvalidDeltaTimestampsError(
                f"delta_timestamps[{key!r}] must be a non-empty list of seconds."
            )
        frames = np.round(deltas * fps)
        bad = np.abs(frames / fps - deltas) > tolerance_s
        if bad.any():
            raise InvalidDeltaTimestampsError(
                f"delta_timestamps[{key!r}] holds {deltas[bad].tolist()}, which are not multiples of 1/fps = "
                f"{1 / fps:.6g} s within tolerance_s={tolerance_s}. Use values like "
                f"{[round(i / fps, 6) for i in (-1, 0, 1)]}, or raise tolerance_s."
            )
        offsets[key] = frames.astype(np.int64)
    return offsets


class LeRobotDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        repo_id: str,
        root: str | Path | None = None,
        episodes: Sequence[int] | None = None,
        delta_timestamps: dict[str, Sequence[float]] | None = None,
        image_transforms: Callable | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        revision: str | None = None,
        download_videos: bool = True,
        local_files_only: bool = False,
        decoded_frame_cache: bool | str | Path = "auto",
    ):
        """
        Args:
            repo_id: `namespace/name` on the Hugging Face Hub, e.g. "lerobot/pusht". Also names local folders.
            root: the dataset folder (or a folder holding `<repo_id>/`). Defaults to `$DATA_DIR/<repo_id>` when
                DATA_DIR is set, else `$HF_LEROBOT_HOME/<repo_id>` if it exists, else the Hub is asked.
            episodes: episode indices to load (all by default). Only their files are downloaded.
            delta_timestamps: per feature key, the times (seconds, relative to the indexed frame) to return; e.g.
                {"observation.image": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]}. Each key then comes back stacked along
                a new first axis, with a `<key>_is_pad` mask marking times outside the episode (those repeat the
                episode's first/last frame).
            image_transforms: applied to every camera frame (after stacking) of each item.
            tolerance_s: how far a timestamp may be from a multiple of 1/fps (delta validation, timestamp sync
                check at load, and video frame matching).
            revision: Hub revision (branch, tag or commit); defaults to the tag matching the dataset's format.
            download_videos: set False to fetch only tables and metadata (camera frames then cannot be read).
            local_files_only: never call the network, even to download (same as HF_HUB_OFFLINE=1).
            decoded_frame_cache: cache decoded video frames on disk so that later epochs skip video decoding.
                "auto" (default) caches when the decoded frames fit in $LEROBOT_FRAME_CACHE_MAX_GB (default 20)
                and the disk has room; True always; False never; a path caches there.
        """
        super().__init__()
        self.repo_id = validate_repo_id(repo_id)
        self.image_transforms = image_transforms
        self.tolerance_s = tolerance_s
        self.revision = revision
        self.download_videos = download_videos
        self.delta_timestamps = delta_timestamps

        from lerobot.common.datasets.hub import resolve_dataset_root

        self.root = resolve_dataset_root(
            repo_id,
            root,
            revision=revision,
            episodes=episodes,
            download_videos=download_videos,
            local_files_only=local_files_only,
        )
        self._decoded_frame_cache_setting = decoded_frame_cache
        self._load(episodes)
        self.delta_indices = (
            check_delta_timestamps(delta_timestamps, self.fps, tolerance_s, self.features)
            if delta_timestamps is not None
            else None
        )

    # ---------------------------------------------------------------- loading

    def _load(self, episodes: Sequence[int] | None) -> None:
        self.meta: DatasetMetadata = load_metadata(self.root)
        available = self.meta.episodes
        if episodes is None:
            selected = list(available)
        else:
            selected = sorted({int(e) for e in episodes})
            missing = [e for e in selected if e not in available]
            if missing:
                have = sorted(available)
                span = f"{have[0]}..{have[-1]}" if have else "none"
                raise EpisodeNotFoundError(
                    f"Episode(s) {missing} are not in {self.repo_id} at {self.root} (it has {len(have)} episodes: {span})."
                )
        self.episodes = selected
        self._read_rows()
        self._check_timestamps_sync()
        self._hf_dataset = None
        self._frame_reader = None
        self._video_paths: dict[str, Path] = {}

    def _data_files(self) -> list[str]:
        if self.meta.codebase_version.startswith("v1."):
            return list(self.meta.info["data_files"])
        files: list[str] = []
        for ep in self.episodes:
            path = self.meta.episodes[ep].data_path
            if path not in files:
                files.append(path)
        return files

    def _read_rows(self) -> None:
        """Read the low-dimensional columns of the selected episodes into numpy, in episode order."""
        files = self._data_files()
        image_keys = set(self.meta.image_keys)
        video_keys = set(self.meta.video_keys)
        tables = []
        for rel in files:
            path = safe_join(self.root, rel)
            names = read_schema(path).names
            wanted = [c for c in names if c not in image_keys and c not in video_keys]
            tables.append(read_table(path, columns=wanted))
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        if "episode_index" not in table.column_names:
            raise CorruptFileError(f"The data files {files} of {self.root} have no 'episode_index' column.")

        episode_col = table.column("episode_index").to_numpy()
        selected = np.asarray(self.episodes, dtype=np.int64)
        if len(selected) == len(self.meta.episodes) and np.isin(episode_col, selected).all():
            rows = np.arange(len(table))
        else:
            rows = np.flatnonzero(np.isin(episode_col, selected))
        episode_col = episode_col[rows]
        if len(episode_col) > 1 and (np.diff(episode_col) < 0).any():
            order = np.argsort(episode_col, kind="stable")
            rows, episode_col = rows[order], episode_col[order]
        self._table_rows = rows  # positions, inside the concatenated files, of the rows we serve

        lengths = np.bincount(np.searchsorted(selected, episode_col), minlength=len(selected))
        for ep, n in zip(self.episodes, lengths.tolist(), strict=True):
            expected = self.meta.episodes[ep].length
            if n != expected:
                raise CorruptFileError(
                    f"Episode {ep} of {self.repo_id} has {n} rows in {files} but the metadata says {expected}. "
                    "The data file is truncated or out of date: re-download or re-convert the dataset."
                )
        ends = np.cumsum(lengths)
        self._ep_from = np.r_[0, ends[:-1]].astype(np.int64)
        self._ep_to = ends.astype(np.int64)
        self._episode_pos_of_row = np.repeat(np.arange(len(selected)), lengths)

        self._columns: dict[str, np.ndarray] = {}
        self._strings: dict[str, list] = {}
        for name in table.column_names:
            column = table.column(name)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                self._strings[name] = column.take(pa.array(rows)).to_pylist()
                continue
            self._columns[name] = column_to_numpy(column, name, files)[rows]
        if "timestamp" not in self._columns:
            frame = self._columns.get(
                "frame_index", np.arange(len(rows)) - self._ep_from[self._episode_pos_of_row]
            )
            self._columns["timestamp"] = (frame / self.fps).astype(np.float32)
        self._timestamps = self._columns["timestamp"].astype(np.float64).reshape(-1)

    def _check_timestamps_sync(self) -> None:
        """Consecutive timestamps inside an episode must be 1/fps apart, else deltas would pick wrong frames."""
        ts = self._timestamps
        if len(ts) < 2:
            return
        diffs = np.diff(ts)
        inside = np.ones(len(diffs), dtype=bool)
        inside[self._ep_to[:-1] - 1] = False  # episode boundaries are allowed to jump
        bad = np.flatnonzero(inside & (np.abs(diffs - 1 / self.fps) > self.tolerance_s))
        if len(bad):
            examples = []
            for i in bad[:5].tolist():
                ep = self.episodes[self._episode_pos_of_row[i]]
                examples.append(f"episode {ep} row {i}: {ts[i]:.6f} -> {ts[i + 1]:.6f}")
            raise TimestampSyncError(
                f"{len(bad)} consecutive timestamps of {self.repo_id} are not 1/fps = {1 / self.fps:.6g} s apart "
                f"within tolerance_s={self.tolerance_s} ({'; '.join(examples)}). The recording probably dropped "
                "frames. Pass a larger tolerance_s to load it anyway, or re-record the affected episodes."
            )

    # ---------------------------------------------------------------- attributes

    @property
    def fps(self) -> float:
        return self.meta.fps

    @property
    def features(self) -> dict[str, dict]:
        return self.meta.features

    @property
    def info(self) -> dict:
        return self.meta.info

    @property
    def stats(self) -> dict[str, dict[str, torch.Tensor]]:
        return {
            k: {s: torch.as_tensor(np.asarray(v)) for s, v in d.items()} for k, d in self.meta.stats.items()
        }

    @property
    def camera_keys(self) -> list[str]:
        return self.meta.camera_keys

    @property
    def video_keys(self) -> list[str]:
        return self.meta.video_keys

    @property
    def image_keys(self) -> list[str]:
        return self.meta.image_keys

    @property
    def video(self) -> bool:
        return len(self.video_keys) > 0

    @property
    def videos_dir(self) -> Path:
        return self.root / "videos"

    @property
    def tasks(self) -> dict[int, str]:
        return self.meta.tasks

    @property
    def codebase_version(self) -> str:
        return self.meta.codebase_version

    @property
    def num_samples(self) -> int:
        return len(self._timestamps)

    num_frames = num_samples

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def episode_data_index(self) -> dict[str, torch.Tensor]:
        """Row range [from, to) of each loaded episode, in this dataset's own indexing."""
        return {"from": torch.from_numpy(self._ep_from.copy()), "to": torch.from_numpy(self._ep_to.copy())}

    @property
    def hf_dataset(self):
        """The rows as a Hugging Face `datasets.Dataset`, backed by memory-mapped Arrow files."""
        if self._hf_dataset is None:
            from lerobot.common.datasets.hf_compat import load_hf_dataset

            self._hf_dataset = load_hf_dataset(
                [safe_join(self.root, f) for f in self._data_files()], self._table_rows, self.meta.video_keys
            )
        return self._hf_dataset

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(repo_id={self.repo_id!r}, root='{self.root}', version={self.codebase_version}, "
            f"episodes={self.num_episodes}, frames={self.num_samples}, fps={self.fps}, "
            f"cameras={self.camera_keys}, features={[k for k in self.features if k not in self.camera_keys]})"
        )

    # ---------------------------------------------------------------- items

    def _query_indices(self, idx: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        pos = self._episode_pos_of_row[idx]
        start, end = self._ep_from[pos], self._ep_to[pos]
        out = {}
        for key, offsets in (self.delta_indices or {}).items():
            query = idx + offsets
            out[key] = (np.clip(query, start, end - 1), (query < start) | (query >= end))
        return out

    def __getitem__(self, idx: int) -> dict:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"Index {idx} is out of range for {self.repo_id}, which has {n} frames.")
        idx = int(idx) % n
        queries = self._query_indices(idx)
        item: dict = {}
        for key, column in self._columns.items():
            if key in queries:
                item[key] = torch.from_numpy(column[queries[key][0]])
            else:
                item[key] = torch.from_numpy(np.array(column[idx]))
        for key, values in self._strings.items():
            item[key] = values[idx]
        for key in self.camera_keys:
            rows = queries[key][0] if key in queries else np.array([idx])
            frames = self._read_frames(key, rows)  # (T, C, H, W) float32 in [0, 1]
            item[key] = frames if key in queries else frames[0]
        for key, (_, pad) in queries.items():
            item[f"{key}_is_pad"] = torch.from_numpy(pad)
        if "task_index" in item and self.meta.tasks:
            item["task"] = self.meta.tasks.get(int(item["task_index"]), "")
        if self.image_transforms is not None:
            for key in self.camera_keys:
                item[key] = self.image_transforms(item[key])
        return item

    def _read_frames(self, key: str, rows: np.ndarray) -> torch.Tensor:
        if self.features[key]["dtype"] == "image":
            return self._read_images(key, rows)
        episode = self.meta.episodes[self.episodes[self._episode_pos_of_row[rows[0]]]]
        segment = episode.videos[key]
        timestamps = (segment.from_timestamp + self._timestamps[rows]).tolist()
        path = self._video_paths.get(segment.path)
        if path is None:
            path = self._video_paths[segment.path] = safe_join(self.root, segment.path)
        frames = self._video_reader().get_frames(path, timestamps, self.tolerance_s, segment)
        return to_unit_float(frames.numpy())

    def _read_images(self, key: str, rows: np.ndarray) -> torch.Tensor:
        from PIL import Image

        table = self.hf_dataset.data  # memory-mapped Arrow
        column = table.column(key)
        frames = []
        for row in rows.tolist():
            value = column[row].as_py()
            data = value["bytes"] if value.get("bytes") else safe_join(self.root, value["path"]).read_bytes()
            with Image.open(io.BytesIO(data)) as img:
                frames.append(np.asarray(img.convert("RGB")))
        return to_unit_float(np.stack(frames).transpose(0, 3, 1, 2))

    def _video_reader(self):
        if self._frame_reader is None:
            from lerobot.common.datasets.video_reader import make_video_reader

            self._frame_reader = make_video_reader(self, self._decoded_frame_cache_setting)
        return self._frame_reader

    # ---------------------------------------------------------------- writing (see writer.py)

    @classmethod
    def create(cls, repo_id: str, fps: float, features: dict, root: str | Path | None = None, **kwargs):
        """Start a new dataset on disk; returns a `LeRobotDatasetWriter` (add_frame, save_episode, finalize)."""
        from lerobot.common.datasets.writer import LeRobotDatasetWriter

        return LeRobotDatasetWriter.create(repo_id, fps=fps, features=features, root=root, **kwargs)

    def push_to_hub(self, **kwargs) -> str:
        from lerobot.common.datasets.hub import push_dataset_to_hub

        return push_dataset_to_hub(self.root, self.repo_id, **kwargs)


def to_unit_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]. Done in numpy: torch splits such small ops over threads, which costs
    milliseconds per call when the cores are busy (e.g. with DataLoader workers). One pass, same values as
    `x.float() / 255`. The output's memory is recycled once the sample is gone (see recycled_buffers.py)."""
    out = frame_buffers.empty(frames.shape, np.float32)
    np.divide(frames, np.float32(255), out=out, dtype=np.float32)
    return torch.from_numpy(out)


def column_to_numpy(column: pa.ChunkedArray, name: str, files: list[str]) -> np.ndarray:
    """Arrow column -> numpy: scalars (N,), fixed or variable lists (N, D), nested lists (N, D1, D2...)."""
    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    typ = column.type
    if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        shape = []
        values = column
        while (
            pa.types.is_fixed_size_list(values.type)
            or pa.types.is_list(values.type)
            or pa.types.is_large_list(values.type)
        ):
            if len(values) == 0:
                break
            lengths = (
                values.value_lengths().to_numpy(zero_copy_only=False)
                if not pa.types.is_fixed_size_list(values.type)
                else None
            )
            width = values.type.list_size if lengths is None else int(lengths[0])
            if lengths is not None and (lengths != width).any():
                raise CorruptFileError(
                    f"Column {name!r} in {files} has rows of different lengths; expected fixed size."
                )
            shape.append(width)
            values = values.flatten()
        flat = values.to_numpy(zero_copy_only=False)
        return flat.reshape(len(column), *shape)
    if pa.types.is_boolean(typ):
        return column.to_numpy(zero_copy_only=False).astype(bool)
    if pa.types.is_struct(typ):
        raise CorruptFileError(
            f"Column {name!r} in {files} is a struct that is not a declared camera feature."
        )
    return column.to_numpy(zero_copy_only=False)
