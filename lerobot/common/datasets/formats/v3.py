"""Format v3.0 (2025-09, current): many episodes per parquet and per mp4 file, parquet metadata.

    meta/info.json
    meta/stats.json
    meta/tasks.parquet                                  task strings (index or 'task' column) -> task_index
    meta/episodes/chunk-XXX/file-XXX.parquet            one row per episode
    data/chunk-XXX/file-XXX.parquet                     rows of many episodes
    videos/<video_key>/chunk-XXX/file-XXX.mp4           frames of many episodes, one after the other

An episode's rows are the global range [dataset_from_index, dataset_to_index); its frame at episode time t for
camera k is at `videos/<k>/from_timestamp + t` inside the shared mp4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerobot.common.datasets.errors import CorruptFileError, MetadataError, MissingFileError
from lerobot.common.datasets.formats.v2 import format_template, load_info, stats_from_json
from lerobot.common.datasets.metadata import (
    DatasetMetadata,
    EpisodeRecord,
    VideoSegment,
)
from lerobot.common.datasets.utils import load_json

EPISODE_COLUMNS = ["episode_index", "length", "dataset_from_index", "dataset_to_index"]


def read_parquet_dir(folder: Path, what: str) -> pa.Table:
    files = sorted(folder.glob("chunk-*/file-*.parquet"))
    if not files:
        raise MissingFileError(
            f"No {what} files under {folder}; a v3.0 dataset stores them as chunk-XXX/file-XXX.parquet."
        )
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (pa.ArrowInvalid, OSError) as e:
            raise CorruptFileError(
                f"Cannot read {f} ({e}); it is truncated or corrupt. Restore or re-download it."
            ) from e
    return pa.concat_tables(tables, promote_options="permissive")


def read_tasks(path: Path) -> dict[int, str]:
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise CorruptFileError(f"Cannot read {path} ({e}).") from e
    df = table.to_pandas()
    if "task" in df.columns:
        tasks = df["task"].tolist()
    else:  # the official writer keeps the task string as the pandas index
        tasks = df.index.tolist()
    if "task_index" not in df.columns:
        raise MetadataError(f"{path} has no 'task_index' column.")
    return {int(i): str(t) for i, t in zip(df["task_index"].tolist(), tasks, strict=True)}


def load_metadata(root: Path, version: str) -> DatasetMetadata:
    info_path, info, features = load_info(root)
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]

    table = read_parquet_dir(root / "meta" / "episodes", "episode metadata")
    needed = EPISODE_COLUMNS + ["data/chunk_index", "data/file_index"]
    for key in video_keys:
        needed += [
            f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise MetadataError(
            f"The episode metadata under {root / 'meta' / 'episodes'} lacks the column(s) {missing}."
        )
    cols = {c: table.column(c).to_pylist() for c in needed}
    tasks_col = table.column("tasks").to_pylist() if "tasks" in table.column_names else [[]] * len(table)

    episodes = {}
    for i in range(len(table)):
        ep = int(cols["episode_index"][i])
        data_path = format_template(
            info["data_path"],
            info_path,
            chunk_index=cols["data/chunk_index"][i],
            file_index=cols["data/file_index"][i],
            episode_chunk=cols["data/chunk_index"][i],
            episode_index=ep,
        )
        videos = {}
        for key in video_keys:
            path = format_template(
                info["video_path"],
                info_path,
                video_key=key,
                chunk_index=cols[f"videos/{key}/chunk_index"][i],
                file_index=cols[f"videos/{key}/file_index"][i],
            )
            videos[key] = VideoSegment(
                path,
                float(cols[f"videos/{key}/from_timestamp"][i]),
                float(cols[f"videos/{key}/to_timestamp"][i]),
            )
        episodes[ep] = EpisodeRecord(
            episode_index=ep,
            length=int(cols["length"][i]),
            tasks=list(tasks_col[i] or []),
            dataset_from_index=int(cols["dataset_from_index"][i]),
            dataset_to_index=int(cols["dataset_to_index"][i]),
            data_path=data_path,
            videos=videos,
        )
    episodes = dict(sorted(episodes.items()))

    stats = {}
    if (root / "meta" / "stats.json").is_file():
        stats = stats_from_json(load_json(root / "meta" / "stats.json"))

    return DatasetMetadata(
        root=root,
        codebase_version=version,
        fps=info["fps"],
        features=features,
        episodes=episodes,
        tasks=read_tasks(root / "meta" / "tasks.parquet"),
        stats=stats,
        info=info,
        robot_type=info.get("robot_type"),
    )


def episode_stats_columns(table: pa.Table) -> dict[int, dict[str, dict[str, np.ndarray]]]:
    """Per-episode stats stored as flattened `stats/<feature>/<stat>` columns of the episode metadata."""
    out: dict[int, dict] = {}
    stat_cols = [c for c in table.column_names if c.startswith("stats/")]
    episode_col = table.column("episode_index").to_pylist()
    for c in stat_cols:
        _, *feature_parts, stat = c.split("/")
        feature = "/".join(feature_parts)
        values = table.column(c).to_pylist()
        for ep, v in zip(episode_col, values, strict=True):
            if v is not None:
                out.setdefault(int(ep), {}).setdefault(feature, {})[stat] = np.asarray(v)
    return out
