"""The Hugging Face `datasets` view of a LeRobot table (the `hf_dataset` attribute).

v1.x datasets declare camera columns with a custom feature type, `VideoFrame` (an Arrow struct
`{path: string, timestamp: float32}`); it is registered here so `datasets` can open those tables.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa


@dataclass
class VideoFrame:
    """A reference to one frame of an mp4: `{"path": "videos/<key>_episode_000000.mp4", "timestamp": 0.1}`."""

    pa_type: ClassVar[Any] = pa.struct({"path": pa.string(), "timestamp": pa.float32()})
    _type: str = field(default="VideoFrame", init=False, repr=False)

    def __call__(self):
        return self.pa_type


def register_video_frame_feature() -> None:
    from datasets.features.features import _FEATURE_TYPES, register_feature

    if "VideoFrame" not in _FEATURE_TYPES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "register_feature is experimental"
            register_feature(VideoFrame, "VideoFrame")


def load_hf_dataset(files: list[Path], rows: np.ndarray, video_keys: list[str]):
    """Open the data files as one memory-mapped `datasets.Dataset`, restricted to `rows`."""
    import datasets

    register_video_frame_feature()
    parts = []
    parquet = [str(f) for f in files if f.suffix == ".parquet"]
    if parquet:
        parts.append(datasets.Dataset.from_parquet(parquet, keep_in_memory=False))
    parts += [datasets.Dataset.from_file(str(f)) for f in files if f.suffix == ".arrow"]
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(rows) != len(dataset) or not np.array_equal(rows, np.arange(len(dataset))):
        dataset = dataset.select(rows.tolist())
    return dataset
