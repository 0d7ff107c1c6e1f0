"""How the writer lays episodes out on disk: format v3.0 (shared files) or v2.1 (one file per episode).

A store commits one whole episode at a time and, after each, leaves a dataset that loads. Order of commits:
data rows, then videos, then the episode's metadata row, tasks, stats and finally info.json. A crash between
two steps leaves extra bytes that no metadata points to, which readers ignore and `load_existing` cleans.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lerobot.common.datasets.metadata import DatasetMetadata
from lerobot.common.datasets.utils import atomic_path, load_jsonlines, write_json, write_jsonlines

V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


@dataclass
class EpisodeData:
    """One episode, ready to be written: numeric/string columns, camera frames as files, one task per frame."""

    episode_index: int
    columns: dict[str, np.ndarray | list]
    timestamps: np.ndarray
    tasks: list[str]
    image_paths: dict[str, list[Path]] = field(default_factory=dict)  # "image" features: PNG files
    images: dict[str, np.ndarray] = field(default_factory=dict)  # "image" features: uint8 (T, H, W, C) frames
    video_frame_dirs: dict[str, Path] = field(default_factory=dict)  # "video" features: folder of PNG frames
    video_files: dict[str, Path] = field(
        default_factory=dict
    )  # "video" features already encoded (converters)

    @property
    def length(self) -> int:
        return len(self.timestamps)


def new_info(
    codebase_version: str,
    *,
    fps,
    features,
    robot_type,
    chunks_size,
    data_files_size_in_mb,
    video_files_size_in_mb,
) -> dict:
    info = {
        "codebase_version": codebase_version,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {},
        "features": features,
    }
    if codebase_version == "v3.0":
        info["data_files_size_in_mb"] = data_files_size_in_mb
        info["video_files_size_in_mb"] = video_files_size_in_mb
        info["data_path"] = V3_DATA_PATH
        info["video_path"] = V3_VIDEO_PATH if any(f["dtype"] == "video" for f in features.values()) else None
    else:
        info["total_videos"] = 0
        info["total_chunks"] = 0
        info["data_path"] = V21_DATA_PATH
        info["video_path"] = V21_VIDEO_PATH if any(f["dtype"] == "video" for f in features.values()) else None
    return info


def hf_features_json(features: dict) -> str:
    """The `huggingface` schema metadata of our parquet files, so `datasets` restores images and list lengths."""
    import datasets

    hf = {}
    for key, spec in features.items():
        dtype, shape = spec["dtype"], tuple(spec["shape"])
        if dtype == "video":
            continue
        if dtype == "image":
            hf[key] = datasets.Image()
        elif dtype == "string":
            hf[key] = datasets.Value("string")
        elif shape == (1,):
            hf[key] = datasets.Value(dtype)
        elif len(shape) == 1:
            hf[key] = datasets.List(datasets.Value(dtype), length=shape[0])
        else:
            inner = datasets.Value(dtype)
            for size in reversed(shape):
                inner = datasets.List(inner, length=size)
            hf[key] = inner
    return json.dumps({"info": {"features": datasets.Features(hf).to_dict()}})


def info_for_disk(info: dict) -> dict:
    out = dict(info)
    out["features"] = {k: {**f, "shape": list(f["shape"])} for k, f in info["features"].items()}
    return out


def to_jsonable_stats(stats: dict) -> dict:
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


class Store:
    """What both layouts share: info, tasks, per-episode stats, encoding, bookkeeping."""

    def __init__(self, root: Path, info: dict):
        self.root = root
        self.info = info
        self.features = info["features"]
        self.task_to_index: dict[str, int] = {}
        self.episode_stats: dict[int, dict] = {}
        self.num_episodes = 0
        self.num_frames = 0
        self.next_episode_index = 0

    def write_info(self) -> None:
        self.info["total_episodes"] = self.num_episodes
        self.info["total_frames"] = self.num_frames
        self.info["total_tasks"] = len(self.task_to_index)
        self.info["splits"] = {"train": f"0:{self.num_episodes}"} if self.num_episodes else {}
        write_json(info_for_disk(self.info), self.root / "meta" / "info.json")

    def task_indices(self, tasks: list[str]) -> list[int]:
        for t in tasks:
            if t not in self.task_to_index:
                self.task_to_index[t] = len(self.task_to_index)
        return [self.task_to_index[t] for t in tasks]

    def compute_stats(self, episode: EpisodeData, task_indices: list[int]) -> dict:
        from lerobot.common.datasets.compute_stats import compute_episode_stats

        data: dict = {k: v for k, v in episode.columns.items() if self.features[k]["dtype"] != "string"}
        data.update({k: list(v) for k, v in episode.image_paths.items()})
        data.update(episode.images)
        for key, folder in episode.video_frame_dirs.items():
            data[key] = sorted(folder.glob("frame-*.png"))
        for key, path in episode.video_files.items():
            if key not in data:
                data[key] = decode_all_frames(path)
        n = episode.length
        data["timestamp"] = episode.timestamps
        data["frame_index"] = np.arange(n)
        data["episode_index"] = np.full(n, episode.episode_index)
        data["index"] = np.arange(self.num_frames, self.num_frames + n)
        data["task_index"] = np.asarray(task_indices)
        features = {k: f for k, f in self.features.items() if k in data}
        return compute_episode_stats(data, features)

    def encode_videos(self, episode: EpisodeData, encoding: dict) -> dict[str, Path]:
        """Encode each video feature's PNG folder to a temporary mp4 (or take the converter's ready file)."""
        from lerobot.common.datasets.video_utils import encode_video_frames

        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        out = {}
        for key in [k for k, f in self.features.items() if f["dtype"] == "video"]:
            target = tmp / f"{key}-episode-{episode.episode_index:06d}.mp4"
            if target.exists():
                target.unlink()
            if key in episode.video_files:
                shutil.copyfile(episode.video_files[key], target)
            elif key in episode.video_frame_dirs:
                encode_video_frames(
                    episode.video_frame_dirs[key],
                    target,
                    self.info["fps"],
                    vcodec=encoding["vcodec"],
                    crf=encoding["crf"],
                    g=encoding["g"],
                    preset=encoding["preset"],
                )
            else:
                raise ValueError(f"Episode {episode.episode_index} has no frames for video feature {key!r}.")
            out[key] = target
        return out

    def record_video_info(self, key: str, path: Path) -> None:
        if "info" not in self.features[key]:
            from lerobot.common.datasets.video_utils import get_video_info

            self.features[key]["info"] = get_video_info(path)

    def write_tasks_and_stats(self) -> None:
        from lerobot.common.datasets.compute_stats import aggregate_stats

        stats = aggregate_stats(list(self.episode_stats.values()))
        write_json(to_jsonable_stats(stats), self.root / "meta" / "stats.json")

    def load_common(self, meta: DatasetMetadata) -> None:
        self.task_to_index = {t: i for i, t in sorted(meta.tasks.items())}
        self.num_episodes = meta.total_episodes
        self.num_frames = meta.total_frames
        self.next_episode_index = max(meta.episodes, default=-1) + 1
        shutil.rmtree(self.root / "images", ignore_errors=True)
        shutil.rmtree(self.root / ".tmp", ignore_errors=True)


class V3Store(Store):
    def __init__(self, root: Path, info: dict):
        super().__init__(root, info)
        self.episode_rows: list[dict] = []

    def load_existing(self, meta: DatasetMetadata) -> None:
        import pyarrow.parquet as pq

        from lerobot.common.datasets.formats.v3 import episode_stats_columns, read_parquet_dir
        from lerobot.common.datasets.writer import rewrite_parquet_append

        self.load_common(meta)
        table = read_parquet_dir(self.root / "meta" / "episodes", "episode metadata")
        self.episode_rows = table.to_pylist()
        self.episode_stats = episode_stats_columns(table)
        # Rows of an episode whose metadata was never committed (crash mid-save) are dropped here.
        committed = set(meta.episodes)
        for path in sorted((self.root / "data").glob("chunk-*/file-*.parquet")):
            episodes = set(pq.read_table(path, columns=["episode_index"]).column(0).to_pylist())
            if not episodes <= committed:
                if episodes & committed:
                    rewrite_parquet_append(path, None, keep_episodes=committed)
                else:
                    path.unlink()
        self.write_info()

    def _current(self, prefix: str) -> tuple[int, int] | None:
        if not self.episode_rows:
            return None
        last = self.episode_rows[-1]
        return int(last[f"{prefix}/chunk_index"]), int(last[f"{prefix}/file_index"])

    def _next(
        self, current: tuple[int, int] | None, path_of, new_bytes: int, budget_mb: float
    ) -> tuple[int, int]:
        if current is None:
            return (0, 0)
        path = self.root / path_of(*current)
        if path.exists() and path.stat().st_size + new_bytes > budget_mb * 1024**2:
            chunk, file = current
            file += 1
            if file >= self.info["chunks_size"]:
                chunk, file = chunk + 1, 0
            return (chunk, file)
        return current

    def write_episode(self, episode: EpisodeData, encoding: dict) -> int:
        from lerobot.common.datasets.video_utils import concatenate_videos
        from lerobot.common.datasets.writer import episode_table, rewrite_parquet_append

        ep, n = episode.episode_index, episode.length
        task_indices = self.task_indices(episode.tasks)
        table = episode_table(episode, self.features, self.num_frames, task_indices)
        stats = self.compute_stats(episode, task_indices)
        videos = self.encode_videos(episode, encoding)

        def data_path(c: int, f: int) -> str:
            return V3_DATA_PATH.format(chunk_index=c, file_index=f)

        chunk, file = self._next(
            self._current("data"), data_path, table.nbytes, self.info["data_files_size_in_mb"]
        )
        rewrite_parquet_append(self.root / data_path(chunk, file), table)

        row = {
            "episode_index": ep,
            "tasks": sorted(set(episode.tasks), key=episode.tasks.index),
            "length": n,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.num_frames,
            "dataset_to_index": self.num_frames + n,
        }
        for key, tmp in videos.items():

            def video_path(c: int, f: int, key=key) -> str:
                return V3_VIDEO_PATH.format(video_key=key, chunk_index=c, file_index=f)

            current = self._current(f"videos/{key}")
            vchunk, vfile = self._next(
                current, video_path, tmp.stat().st_size, self.info["video_files_size_in_mb"]
            )
            dest = self.root / video_path(vchunk, vfile)
            if dest.exists():
                # Remux (no re-encoding) the shared file plus this episode into a new file, then swap it in.
                joined = tmp.with_name(f"joined-{tmp.name}")
                from_ts, to_ts = concatenate_videos([dest, tmp], joined, overwrite=True)[-1]
                os.replace(joined, dest)
                tmp.unlink()
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
                from_ts, to_ts = 0.0, n / self.info["fps"]
            self.record_video_info(key, dest)
            row.update(
                {
                    f"videos/{key}/chunk_index": vchunk,
                    f"videos/{key}/file_index": vfile,
                    f"videos/{key}/from_timestamp": float(from_ts),
                    f"videos/{key}/to_timestamp": float(to_ts),
                }
            )
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        for feature, s in stats.items():
            for name, value in s.items():
                row[f"stats/{feature}/{name}"] = np.asarray(value).tolist()
        self._commit(row, stats)
        return ep

    def _commit(self, row: dict, stats: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [*self.episode_rows, row]
        with atomic_path(self.root / V3_EPISODES_PATH) as tmp:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
        self.episode_rows = rows
        self.episode_stats[row["episode_index"]] = stats
        self.num_episodes += 1
        self.num_frames += row["length"]
        self.next_episode_index = row["episode_index"] + 1
        tasks = pd.DataFrame(
            {"task_index": list(self.task_to_index.values())},
            index=pd.Index(list(self.task_to_index), name="task"),
        )
        with atomic_path(self.root / "meta" / "tasks.parquet") as tmp:
            tasks.to_parquet(tmp)
        self.write_tasks_and_stats()
        self.write_info()


class V21Store(Store):
    def load_existing(self, meta: DatasetMetadata) -> None:
        from lerobot.common.datasets.formats.v2 import stats_from_json

        self.load_common(meta)
        path = self.root / "meta" / "episodes_stats.jsonl"
        rows = load_jsonlines(path) if path.is_file() else []
        self.episode_stats = {int(r["episode_index"]): stats_from_json(r["stats"]) for r in rows}
        self.write_info()

    def write_episode(self, episode: EpisodeData, encoding: dict) -> int:
        import pyarrow.parquet as pq

        from lerobot.common.datasets.writer import episode_table

        ep, n = episode.episode_index, episode.length
        chunk = ep // self.info["chunks_size"]
        task_indices = self.task_indices(episode.tasks)
        table = episode_table(episode, self.features, self.num_frames, task_indices)
        stats = self.compute_stats(episode, task_indices)
        videos = self.encode_videos(episode, encoding)
        with atomic_path(self.root / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=ep)) as tmp:
            pq.write_table(table, tmp)
        for key, tmp in videos.items():
            dest = self.root / V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=ep)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
            self.record_video_info(key, dest)

        meta = self.root / "meta"
        episodes = load_jsonlines(meta / "episodes.jsonl") if (meta / "episodes.jsonl").is_file() else []
        tasks = sorted(set(episode.tasks), key=episode.tasks.index)
        write_jsonlines(
            [*episodes, {"episode_index": ep, "tasks": tasks, "length": n}], meta / "episodes.jsonl"
        )
        ep_stats = (
            load_jsonlines(meta / "episodes_stats.jsonl") if (meta / "episodes_stats.jsonl").is_file() else []
        )
        ep_stats.append({"episode_index": ep, "stats": to_jsonable_stats(stats)})
        write_jsonlines(ep_stats, meta / "episodes_stats.jsonl")
        write_jsonlines(
            [{"task_index": i, "task": t} for t, i in self.task_to_index.items()], meta / "tasks.jsonl"
        )
        self.episode_stats[ep] = stats
        self.num_episodes += 1
        self.num_frames += n
        self.next_episode_index = ep + 1
        self.info["total_videos"] = self.num_episodes * len(videos)
        self.info["total_chunks"] = chunk + 1
        self.write_tasks_and_stats()
        self.write_info()
        return ep


def make_store(root: Path, info: dict) -> Store:
    return V3Store(root, info) if info["codebase_version"] == "v3.0" else V21Store(root, info)


def decode_all_frames(path: Path) -> np.ndarray:
    """All frames of a (short, per-episode) video as uint8 (T, H, W, C), for stats of converted datasets."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
