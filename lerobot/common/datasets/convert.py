"""Convert a dataset of any readable version (v1.x, v2.0, v2.1, v3.0) to v3.0 or v2.1.

Video is re-encoded only when it has to be: an episode that already sits alone in an AV1 or H.264 mp4 with
exactly one frame per row (v1.x and v2.x layouts) is copied (and, for v3.0, remuxed into the shared file) as
is. Episodes cut out of a shared v3.0 file, or in codecs we refuse to store (HEVC), are decoded and
re-encoded with the writer's settings.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lerobot.common.datasets.layout import EpisodeData
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.metadata import DEFAULT_FEATURES
from lerobot.common.datasets.utils import safe_join
from lerobot.common.datasets.writer import LeRobotDatasetWriter, write_png

logger = logging.getLogger(__name__)

REUSABLE_CODECS = ("av1", "h264")


def reusable_video(src: LeRobotDataset, episode: int, key: str) -> Path | None:
    """The source mp4 of this episode if it can be copied without re-encoding, else None."""
    from lerobot.common.datasets.video_utils import get_video_info, get_video_num_frames_and_duration

    segment = src.meta.episodes[episode].videos[key]
    path = safe_join(src.root, segment.path)
    if segment.from_timestamp != 0.0:
        return None
    shared = sum(
        1 for ep in src.meta.episodes.values() if key in ep.videos and ep.videos[key].path == segment.path
    )
    if shared > 1:
        return None
    if get_video_info(path)["video.codec"] not in REUSABLE_CODECS:
        return None
    n_frames, _ = get_video_num_frames_and_duration(path)
    return path if n_frames == src.meta.episodes[episode].length else None


def episode_from_source(
    src: LeRobotDataset, position: int, single_task: str | None, scratch: Path
) -> EpisodeData:
    episode = src.episodes[position]
    start, end = int(src._ep_from[position]), int(src._ep_to[position])
    rows = np.arange(start, end)
    columns: dict = {}
    for key, spec in src.features.items():
        if key in DEFAULT_FEATURES or spec["dtype"] in ("image", "video"):
            continue
        columns[key] = src._strings[key][start:end] if spec["dtype"] == "string" else src._columns[key][rows]

    if "task_index" in src._columns and src.tasks:
        tasks = [src.tasks[int(i)] for i in src._columns["task_index"][rows]]
    elif "language_instruction" in src._strings:
        tasks = src._strings["language_instruction"][start:end]
    else:
        tasks = [single_task if single_task is not None else src.repo_id.split("/")[-1]] * len(rows)

    data = EpisodeData(
        episode_index=episode,
        columns=columns,
        timestamps=src._timestamps[rows].astype(np.float32),
        tasks=tasks,
    )
    for key in src.image_keys:
        frames = src._read_images(key, rows)
        data.images[key] = (frames * 255).round().to(dtype=torch.uint8).permute(0, 2, 3, 1).numpy()
    for key in src.video_keys:
        path = reusable_video(src, episode, key)
        if path is not None:
            data.video_files[key] = path
            continue
        folder = scratch / key / f"episode-{episode:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, row in enumerate(rows):
            frame = src._read_frames(key, np.array([row]))[0]
            write_png((frame * 255).round().byte().permute(1, 2, 0).numpy(), folder / f"frame-{i:06d}.png")
        data.video_frame_dirs[key] = folder
    return data


def convert_dataset(
    repo_id: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    to_version: str = "v3.0",
    single_task: str | None = None,
    episodes: list[int] | None = None,
    overwrite: bool = False,
    vcodec: str = "libsvtav1",
    progress: bool = True,
) -> Path:
    """Read `root` (any version) and write a copy in `to_version` to `out_dir`; returns `out_dir`."""
    src = LeRobotDataset(
        repo_id, root=root, episodes=episodes, decoded_frame_cache=False, local_files_only=True
    )
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(src.root).resolve():
        raise ValueError(f"--out-dir {out_dir} is the source dataset itself; write the conversion elsewhere.")
    features = {k: dict(f) for k, f in src.features.items() if k not in DEFAULT_FEATURES}
    for f in features.values():
        f.pop("info", None)
    writer = LeRobotDatasetWriter.create(
        repo_id,
        fps=src.fps,
        features=features,
        root=out_dir,
        robot_type=src.meta.robot_type,
        codebase_version=to_version,
        vcodec=vcodec,
        overwrite=overwrite,
    )
    with tempfile.TemporaryDirectory(prefix=".convert-", dir=out_dir) as scratch:
        bar = tqdm(
            range(src.num_episodes),
            desc=f"{repo_id} {src.codebase_version}->{to_version}",
            disable=not progress,
        )
        for position in bar:
            episode = episode_from_source(src, position, single_task, Path(scratch))
            writer.add_episode(episode)
            for folder in episode.video_frame_dirs.values():
                shutil.rmtree(folder, ignore_errors=True)
    writer.finalize()
    return out_dir
