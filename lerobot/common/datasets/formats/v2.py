"""Formats v2.0 and v2.1 (2024-11 to 2025-09): one parquet and one mp4 per episode, JSON-lines metadata.

meta/info.json            features, fps, path templates, chunks_size
meta/episodes.jsonl       {"episode_index", "tasks", "length"} per line
meta/tasks.jsonl          {"task_index", "task"} per line
meta/stats.json           global stats (v2.0; v2.1 may drop it in favour of ...)
meta/episodes_stats.jsonl per-episode stats (v2.1)
data/chunk-XXX/episode_XXXXXX.parquet
videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lerobot.common.datasets.errors import MetadataError, MissingFileError
from lerobot.common.datasets.metadata import (
    DatasetMetadata,
    EpisodeRecord,
    VideoSegment,
    normalize_feature,
    require_keys,
)
from lerobot.common.datasets.utils import load_json, load_jsonlines

REQUIRED_INFO_KEYS = ["fps", "features", "data_path", "chunks_size"]


def stats_from_json(raw: dict) -> dict[str, dict[str, np.ndarray]]:
    return {
        key: {
            name: np.asarray(value, dtype=np.float64 if name == "count" else np.float32)
            for name, value in s.items()
        }
        for key, s in raw.items()
    }


def format_template(template: str, path: Path, **kwargs) -> str:
    try:
        return template.format(**kwargs)
    except (KeyError, IndexError, ValueError) as e:
        raise MetadataError(f"{path}: cannot fill the path template {template!r} ({e!r}).") from e


def load_info(root: Path) -> tuple[Path, dict, dict]:
    """`meta/info.json` of a v2+ dataset, checked, with its features normalised (shared with the v3.0 reader)."""
    info_path = root / "meta" / "info.json"
    info = load_json(info_path)
    if "features" not in info and "keys" in info:
        raise MetadataError(
            f"{info_path} uses the pre-release v2.0 schema (keys/video_keys/shapes instead of 'features'). "
            "Re-download the dataset at its current revision."
        )
    require_keys(info, REQUIRED_INFO_KEYS, info_path)
    features = {k: normalize_feature(k, f, info_path) for k, f in info["features"].items()}
    if any(f["dtype"] == "video" for f in features.values()) and not info.get("video_path"):
        raise MetadataError(f"{info_path} declares video features but no 'video_path' template.")
    return info_path, info, features


def load_metadata(root: Path, version: str) -> DatasetMetadata:
    info_path, info, features = load_info(root)
    video_template = info.get("video_path")

    episodes_path = root / "meta" / "episodes.jsonl"
    if not episodes_path.is_file():
        raise MissingFileError(f"{episodes_path} is missing; a v2 dataset lists its episodes there.")
    rows = sorted(load_jsonlines(episodes_path), key=lambda r: r.get("episode_index", -1))
    tasks_path = root / "meta" / "tasks.jsonl"
    tasks = {}
    if tasks_path.is_file():
        tasks = {int(r["task_index"]): r["task"] for r in load_jsonlines(tasks_path)}

    chunks_size = int(info["chunks_size"])
    episodes = {}
    start = 0
    for row in rows:
        for key in ("episode_index", "length"):
            if key not in row:
                raise MetadataError(f"{episodes_path}: an episode line lacks {key!r}: {row}.")
        ep, length = int(row["episode_index"]), int(row["length"])
        chunk = ep // chunks_size
        data_path = format_template(info["data_path"], info_path, episode_chunk=chunk, episode_index=ep)
        videos = {
            key: VideoSegment(
                format_template(
                    video_template, info_path, episode_chunk=chunk, video_key=key, episode_index=ep
                ),
                0.0,
                length / info["fps"],
            )
            for key, f in features.items()
            if f["dtype"] == "video"
        }
        tasks_of_ep = row.get("tasks", [])
        episodes[ep] = EpisodeRecord(ep, length, list(tasks_of_ep), start, start + length, data_path, videos)
        start += length

    stats = {}
    if (root / "meta" / "stats.json").is_file():
        stats = stats_from_json(load_json(root / "meta" / "stats.json"))
    elif (root / "meta" / "episodes_stats.jsonl").is_file():
        from lerobot.common.datasets.compute_stats import aggregate_stats

        per_episode = load_jsonlines(root / "meta" / "episodes_stats.jsonl")
        stats = aggregate_stats([stats_from_json(r["stats"]) for r in per_episode])

    return DatasetMetadata(
        root=root,
        codebase_version=version,
        fps=info["fps"],
        features=features,
        episodes=episodes,
        tasks=tasks,
        stats=stats,
        info=info,
        robot_type=info.get("robot_type"),
    )
