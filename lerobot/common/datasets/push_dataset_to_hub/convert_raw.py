"""Convert a raw dataset (any format in `RAW_FORMATS`) to a LeRobot dataset, and optionally publish it.

The dataset is built in a hidden temporary folder next to `out_dir` and renamed into place only once
complete, so an interrupted conversion never leaves a half-written dataset at `out_dir`, and an existing
dataset there is replaced (with `force_override`) only by a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lerobot.common.datasets.errors import DatasetExistsError, EpisodeNotFoundError, MetadataError
from lerobot.common.datasets.layout import EpisodeData
from lerobot.common.datasets.metadata import DEFAULT_FEATURES
from lerobot.common.datasets.push_dataset_to_hub import get_raw_format
from lerobot.common.datasets.push_dataset_to_hub.pusht_zarr_format import PushTZarrSource
from lerobot.common.datasets.push_dataset_to_hub.utils import RawFormatError, RawSource
from lerobot.common.datasets.utils import default_lerobot_home, validate_repo_id
from lerobot.common.datasets.writer import LeRobotDatasetWriter


@dataclass
class ConversionResult:
    root: Path
    repo_id: str
    raw_format: str
    fps: float
    video: bool
    num_episodes: int
    num_frames: int
    seconds: float
    num_cameras: int = 0
    success_frames: int | None = None  # frames with next.success (formats that record it)
    success_episodes: int | None = None  # episodes with at least one such frame
    url: str | None = None  # set when pushed to the Hub


def check_out_dir(out_dir: Path, raw_dir: Path, force_override: bool) -> None:
    out, raw = out_dir.resolve(), raw_dir.resolve()
    if out == raw or out in raw.parents:
        raise RawFormatError(
            f"--out-dir {out_dir} holds the raw data {raw_dir}; replacing it would destroy the input. "
            "Choose an output folder outside the raw data."
        )
    if out_dir.exists() and (out_dir.is_file() or any(out_dir.iterdir())) and not force_override:
        raise DatasetExistsError(
            f"{out_dir} already exists and is not empty. Pass --force-override 1 (force_override=True) to "
            "replace it, or choose another --out-dir."
        )


def select_episodes(episodes: Sequence[int] | None, num_episodes: int, where: str) -> list[int]:
    if episodes is None:
        return list(range(num_episodes))
    selected = [int(e) for e in episodes]
    bad = [e for e in selected if not 0 <= e < num_episodes]
    if bad:
        raise EpisodeNotFoundError(
            f"Episodes {bad} do not exist in {where}, which holds episodes 0..{num_episodes - 1}."
        )
    if len(set(selected)) != len(selected):
        raise RawFormatError(f"--episodes lists an episode twice: {selected}.")
    if not selected:
        raise RawFormatError("--episodes is empty; list at least one episode, or omit it to convert all.")
    return selected


def check_episode(
    data: dict[str, np.ndarray], features: dict, length: int, where: str
) -> dict[str, np.ndarray]:
    """Check that every feature has `length` rows of its declared shape; return arrays (length, *shape)."""
    expected = [k for k in features if k not in DEFAULT_FEATURES]
    missing, extra = set(expected) - set(data), set(data) - set(expected)
    if missing or extra:
        raise RawFormatError(
            f"{where}: converted keys differ from the features: missing {missing}, extra {extra}."
        )
    out = {}
    for key in expected:
        spec, value = features[key], np.asarray(data[key])
        shape = tuple(spec["shape"])
        if value.ndim == 1 and shape == (1,):
            value = value[:, None]
        if value.shape != (length, *shape):
            raise RawFormatError(
                f"{where}: {key!r} has shape {value.shape}; expected {(length, *shape)} "
                f"({length} frames of {shape})."
            )
        if spec["dtype"] in ("image", "video") and value.dtype != np.uint8:
            raise RawFormatError(f"{where}: camera {key!r} has dtype {value.dtype}; expected uint8 frames.")
        out[key] = value
    return out


def build_episode(
    writer: LeRobotDatasetWriter,
    data: dict[str, np.ndarray],
    fps: float,
    task: str,
    scratch: Path,
    where: str,
) -> EpisodeData:
    n = len(next(iter(data.values())))
    episode = EpisodeData(
        episode_index=writer.episode_index,
        columns={},
        timestamps=(np.arange(n) / fps).astype(np.float32),
        tasks=[task] * n,
    )
    for key, value in data.items():
        dtype = writer.features[key]["dtype"]
        if dtype == "image":
            episode.images[key] = np.ascontiguousarray(value)
        elif dtype == "video":
            from lerobot.common.datasets.video_utils import encode_video_frames

            path = scratch / f"{key}.mp4"
            try:
                encode_video_frames(
                    value,
                    path,
                    fps,
                    vcodec=writer.encoding["vcodec"],
                    crf=writer.encoding["crf"],
                    g=writer.encoding["g"],
                    preset=writer.encoding["preset"],
                    overwrite=True,
                )
            except (ValueError, RuntimeError) as e:  # e.g. odd frame sizes with libx264
                raise RawFormatError(f"{where}: encoding {key!r} as video failed: {e}") from e
            episode.video_files[key] = path
        else:
            episode.columns[key] = value
    return episode


def install(built: Path, out_dir: Path, force_override: bool, trash: Path) -> None:
    """Move the finished dataset to `out_dir`, a previous one aside first (same filesystem: renames)."""
    if out_dir.exists():
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        elif force_override:
            os.replace(out_dir, trash)
        else:
            raise DatasetExistsError(
                f"{out_dir} appeared during the conversion; the new dataset is not installed."
            )
    os.replace(built, out_dir)


def convert_raw_dataset(
    raw_dir: str | Path,
    raw_format: str,
    repo_id: str,
    out_dir: str | Path | None = None,
    *,
    fps: float | None = None,
    video: bool = True,
    episodes: Sequence[int] | None = None,
    force_override: bool = False,
    keypoints_only: bool = False,
    task: str | None = None,
    vcodec: str = "libsvtav1",
    push_to_hub: bool = False,
    progress: bool = True,
) -> ConversionResult:
    """Convert `raw_dir` (format `raw_format`) to a LeRobot v3.0 dataset at `out_dir` (default
    $HF_LEROBOT_HOME/<repo_id>), with stats; `push_to_hub` then uploads it with `hub.push_dataset_to_hub`."""
    start = time.perf_counter()
    validate_repo_id(repo_id)
    source_cls = get_raw_format(raw_format)
    options = {}
    if keypoints_only:
        if source_cls is not PushTZarrSource:
            raise RawFormatError(f"--keypoints-only applies to pusht_zarr only, not {raw_format}.")
        options["keypoints_only"] = True
    raw_dir = Path(raw_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_lerobot_home() / repo_id
    check_out_dir(out_dir, raw_dir, force_override)
    fps = fps if fps is not None else source_cls.default_fps
    if not fps > 0:
        raise MetadataError(f"--fps must be positive, got {fps}.")

    source = source_cls(raw_dir, **options)
    selected = select_episodes(episodes, source.num_episodes, str(raw_dir))
    result = _write(source, selected, repo_id, out_dir, fps, video, force_override, task, vcodec, progress)
    if push_to_hub:
        from lerobot.common.datasets import hub

        result.url = hub.push_dataset_to_hub(out_dir, repo_id, tags=["LeRobot", raw_format])
    result.seconds = time.perf_counter() - start
    return result


def _write(
    source: RawSource,
    selected: list[int],
    repo_id: str,
    out_dir: Path,
    fps: float,
    video: bool,
    force_override: bool,
    task: str | None,
    vcodec: str,
    progress: bool,
) -> ConversionResult:
    features = source.features()
    task = task if task is not None else source.default_task(repo_id)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    success_frames = success_episodes = 0
    try:
        scratch = tmp / "scratch"
        scratch.mkdir()
        writer = LeRobotDatasetWriter.create(
            repo_id,
            fps=fps,
            features=features,
            root=tmp / "dataset",
            robot_type=source.robot_type,
            use_videos=video,
            vcodec=vcodec,
        )
        bar = tqdm(selected, desc=f"{source.format_name} -> {repo_id}", unit="episode", disable=not progress)
        for raw_index in bar:
            where = source.describe_episode(raw_index)
            data = check_episode(
                source.read_episode(raw_index), features, source.episode_lengths[raw_index], where
            )
            writer.add_episode(build_episode(writer, data, fps, task, scratch, where))
            if "next.success" in data:
                success_frames += int(data["next.success"].sum())
                success_episodes += int(data["next.success"].any())
            for leftover in scratch.iterdir():
                leftover.unlink()
        writer.finalize()
        num_episodes, num_frames = writer.num_episodes, writer.num_frames
        install(tmp / "dataset", out_dir, force_override, tmp / "previous")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    has_success = "next.success" in features
    return ConversionResult(
        root=out_dir,
        repo_id=repo_id,
        raw_format=source.format_name,
        fps=fps,
        video=video,
        num_episodes=num_episodes,
        num_frames=num_frames,
        seconds=0.0,
        num_cameras=sum(1 for f in features.values() if f["dtype"] in ("image", "video")),
        success_frames=success_frames if has_success else None,
        success_episodes=success_episodes if has_success else None,
    )
