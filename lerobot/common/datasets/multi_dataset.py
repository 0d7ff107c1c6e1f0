"""`MultiLeRobotDataset`: several LeRobot datasets served as one, for training on a mixture.

Only the features every dataset has are returned (others are dropped, with a warning naming them); each item
carries `dataset_index`, the position of its source in `repo_ids`. Stats are aggregated (count-weighted mean,
pooled variance, min of mins, max of maxes).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lerobot.common.datasets.errors import MetadataError
from lerobot.common.datasets.lerobot_dataset import DEFAULT_TOLERANCE_S, LeRobotDataset

logger = logging.getLogger(__name__)


class MultiLeRobotDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        repo_ids: Sequence[str],
        root: str | Path | None = None,
        episodes: dict[str, Sequence[int]] | None = None,
        delta_timestamps: dict[str, Sequence[float]] | None = None,
        image_transforms: Callable | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        download_videos: bool = True,
        decoded_frame_cache: bool | str | Path = "auto",
    ):
        """`root`, when given, is a folder holding `<repo_id>/` for each dataset."""
        super().__init__()
        if not repo_ids:
            raise ValueError("MultiLeRobotDataset needs at least one repo id.")
        self.repo_ids = list(repo_ids)
        self.datasets = [
            LeRobotDataset(
                repo_id,
                root=Path(root) / repo_id if root is not None else None,
                episodes=(episodes or {}).get(repo_id),
                delta_timestamps=None,
                image_transforms=image_transforms,
                tolerance_s=tolerance_s,
                download_videos=download_videos,
                decoded_frame_cache=decoded_frame_cache,
            )
            for repo_id in self.repo_ids
        ]
        fps = {ds.repo_id: ds.fps for ds in self.datasets}
        if len(set(fps.values())) > 1:
            raise MetadataError(
                f"Datasets must share one fps to be mixed, got {fps}. Resample or train separately."
            )
        common = set.intersection(*(set(ds.features) for ds in self.datasets))
        self.disabled_features = sorted(set.union(*(set(ds.features) for ds in self.datasets)) - common)
        if self.disabled_features:
            logger.warning("Keys not shared by every dataset are dropped: %s", self.disabled_features)
        self.features = {k: v for k, v in self.datasets[0].features.items() if k in common}
        self.delta_timestamps = delta_timestamps
        for ds in self.datasets:  # validate and set the deltas only on the shared keys
            ds.delta_timestamps = delta_timestamps
            if delta_timestamps is not None:
                from lerobot.common.datasets.lerobot_dataset import check_delta_timestamps

                ds.delta_indices = check_delta_timestamps(
                    delta_timestamps, ds.fps, tolerance_s, self.features
                )
        self._ends = np.cumsum([len(ds) for ds in self.datasets]).tolist()

    @property
    def fps(self) -> float:
        return self.datasets[0].fps

    @property
    def camera_keys(self) -> list[str]:
        return [k for k in self.datasets[0].camera_keys if k in self.features]

    @property
    def video(self) -> bool:
        return any(self.features[k]["dtype"] == "video" for k in self.camera_keys)

    @property
    def num_samples(self) -> int:
        return self._ends[-1]

    @property
    def num_episodes(self) -> int:
        return sum(ds.num_episodes for ds in self.datasets)

    @property
    def episode_data_index(self) -> dict[str, torch.Tensor]:
        starts = [0, *self._ends[:-1]]
        return {
            key: torch.cat(
                [ds.episode_data_index[key] + start for ds, start in zip(self.datasets, starts, strict=True)]
            )
            for key in ("from", "to")
        }

    @property
    def stats(self) -> dict[str, dict[str, torch.Tensor]]:
        from lerobot.common.datasets.compute_stats import aggregate_stats

        per_dataset = []
        for ds in self.datasets:
            stats = {}
            for key, s in ds.meta.stats.items():
                if key in self.features:
                    s = {name: np.asarray(v) for name, v in s.items()}
                    s.setdefault("count", np.array([len(ds)]))
                    stats[key] = s
            per_dataset.append(stats)
        merged = aggregate_stats(per_dataset)
        return {k: {s: torch.as_tensor(np.asarray(v)) for s, v in d.items()} for k, d in merged.items()}

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(f"Index {idx} out of range for a MultiLeRobotDataset of {len(self)} frames.")
        which = bisect.bisect_right(self._ends, idx)
        start = self._ends[which - 1] if which else 0
        item = self.datasets[which][idx - start]
        for key in self.disabled_features:
            item.pop(key, None)
            item.pop(f"{key}_is_pad", None)
        item["dataset_index"] = torch.tensor(which)
        return item

    def __repr__(self) -> str:
        return (
            f"MultiLeRobotDataset(repo_ids={self.repo_ids}, frames={len(self)}, episodes={self.num_episodes})"
        )
