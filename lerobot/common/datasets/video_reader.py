"""Choosing how a dataset reads video frames: decode on every access, or through the decoded-frame cache."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch

from lerobot.common.datasets.metadata import VideoSegment
from lerobot.common.datasets.video_decoding import decode_video_frames

logger = logging.getLogger(__name__)

DEFAULT_CACHE_BUDGET_GB = 20.0


class DirectVideoReader:
    """Decode the requested frames from the mp4 every time (PyAV, seeking to the nearest keyframe)."""

    def get_frames(
        self, path: Path, timestamps: list[float], tolerance_s: float, segment: VideoSegment
    ) -> torch.Tensor:
        return decode_video_frames(path, timestamps, tolerance_s)


class CachedVideoReader:
    """Decode each episode segment once, then serve frames from raw uint8 files on disk."""

    def __init__(self, cache_dir: Path):
        from lerobot.common.datasets.frame_cache import DecodedFrameCache

        self.cache = DecodedFrameCache(cache_dir)

    def get_frames(
        self, path: Path, timestamps: list[float], tolerance_s: float, segment: VideoSegment
    ) -> torch.Tensor:
        # v1.x videos hold one episode each and record no span: cache the whole file.
        span = None if segment.to_timestamp is None else (segment.from_timestamp, segment.to_timestamp)
        return self.cache.get_frames(path, timestamps, tolerance_s, segment=span)


def decoded_size_bytes(dataset) -> int:
    total = 0
    for key in dataset.video_keys:
        h, w, c = dataset.features[key]["shape"]
        total += h * w * c * dataset.num_samples
    return total


def make_video_reader(dataset, setting: bool | str | Path):
    """Resolve the `decoded_frame_cache` argument of LeRobotDataset into a reader."""
    if setting is False or setting is None:
        return DirectVideoReader()
    from lerobot.common.datasets.frame_cache import default_frame_cache_dir

    if isinstance(setting, (str, Path)) and str(setting) != "auto":
        return CachedVideoReader(Path(setting))
    cache_dir = default_frame_cache_dir()
    if setting is True:
        return CachedVideoReader(cache_dir)
    # "auto": only when the decoded frames fit the budget and leave the disk at least half free of them.
    need = decoded_size_bytes(dataset)
    budget = float(os.environ.get("LEROBOT_FRAME_CACHE_MAX_GB", DEFAULT_CACHE_BUDGET_GB)) * 1024**3
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need <= budget and need * 2 <= free:
        logger.info(
            "Caching decoded video frames of %s in %s (up to %.2f GB; set decoded_frame_cache=False or "
            "LEROBOT_FRAME_CACHE_MAX_GB=0 to disable).",
            dataset.repo_id,
            cache_dir,
            need / 1024**3,
        )
        return CachedVideoReader(cache_dir)
    return DirectVideoReader()
