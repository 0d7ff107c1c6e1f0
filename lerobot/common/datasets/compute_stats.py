"""Per-feature statistics in the layout LeRobot formats v2.1 / v3.0 store them.

Every non-string feature gets `min`, `max`, `mean`, `std`, `count` and the quantiles `q01`, `q10`, `q50`,
`q90`, `q99`. Policies normalise their inputs and outputs with these (mean/std or min/max, and the quantiles
for robust normalisation), so the shapes follow what the normalisers broadcast against:

* vector features of shape (D,) -> stats of shape (D,); scalar features -> shape (1,);
* camera features -> stats of shape (C, 1, 1), in [0, 1] (pixel values / 255), broadcastable over (C, H, W);
* `count` -> shape (1,): frames for vectors, sampled frames for cameras.

Stats are computed per episode while recording (`compute_episode_stats`) and merged into dataset stats
(`aggregate_stats`), so adding an episode never requires a pass over the whole dataset. `compute_stats`
does the whole-dataset pass for datasets converted from older formats that have no per-episode stats.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

QUANTILES: tuple[float, ...] = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS: tuple[str, ...] = ("q01", "q10", "q50", "q90", "q99")
_QUANTILE_KEY = re.compile(r"^q\d\d$")
IMAGE_DTYPES = ("image", "video")
# Images are float in [0, 1] in `compute_stats`; quantising them onto this many steps keeps uint8-sourced
# values exact (k / 255 == 4k / 1020) while bounding the error of any other value to 1 / 2040.
_HIST_STEPS = 1020
_MAX_QUANTILE_ROWS = 10_000


# ----------------------------------------------------------------------------------------------------------
# Frame sub-sampling for camera features
# ----------------------------------------------------------------------------------------------------------


def estimate_num_samples(
    num_frames: int, min_num_samples: int = 100, max_num_samples: int = 10_000, power: float = 0.75
) -> int:
    """How many frames of an episode to use for image stats: all of short episodes, ~T**0.75 of long ones.

    Decoding every frame of every episode would dominate recording time, and image statistics converge
    quickly, so the number of frames grows sub-linearly with episode length.
    """
    return max(min(min_num_samples, num_frames), min(int(num_frames**power), max_num_samples))


def sample_indices(num_frames: int) -> list[int]:
    """Evenly spaced frame indices covering the whole episode (first and last frame included)."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be > 0 to sample frames, got {num_frames}.")
    num = estimate_num_samples(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, num)).astype(np.int64)).tolist()


def auto_downsample_height_width(
    img: np.ndarray, target_size: int = 150, max_size_threshold: int = 300
) -> np.ndarray:
    """Stride an (H, W, C) frame so its larger side is about `target_size` when it is >= `max_size_threshold`.

    Plain striding (no filtering) is enough: stats only need an unbiased sample of pixel values.
    """
    height, width = img.shape[:2]
    if max(height, width) < max_size_threshold:
        return img
    step = max(height, width) // target_size
    return img[::step, ::step]


def _load_frame(frame: Any, key: str) -> np.ndarray:
    if isinstance(frame, (str, os.PathLike)):
        with Image.open(frame) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(frame, Image.Image):
        return np.asarray(frame.convert("RGB"))
    arr = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim != 3:
        raise ValueError(f"Feature {key!r}: each frame must be an (H, W, C) array, got shape {arr.shape}.")
    return arr


def sample_images(frames: Any, key: str = "image") -> np.ndarray:
    """Pick `sample_indices(len(frames))` frames, downsample them and stack them as (N, H, W, C) uint8.

    `frames` is a uint8 (T, H, W, C) array or a list of frames: image paths (loaded as RGB with PIL), PIL
    images or (H, W, C) arrays. Only the sampled frames are loaded.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.numpy()
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(
            f"Feature {key!r}: image data must be uint8 frames shaped (T, H, W, C) or a list of image paths, "
            f"got an array of shape {frames.shape}."
        )
    if len(frames) == 0:
        raise ValueError(f"Feature {key!r}: cannot compute stats of an episode with no frames.")
    sampled = [auto_downsample_height_width(_load_frame(frames[i], key)) for i in sample_indices(len(frames))]
    if any(s.shape != sampled[0].shape for s in sampled):
        raise ValueError(f"Feature {key!r}: frames of one episode must all have the same shape.")
    out = np.stack(sampled)
    if out.dtype != np.uint8:
        raise TypeError(
            f"Feature {key!r}: image frames must be uint8 in [0, 255], got dtype {out.dtype}. "
            "Convert float images with `(img * 255).round().astype(np.uint8)`."
        )
    return out


# ----------------------------------------------------------------------------------------------------------
# Per-episode stats
# ----------------------------------------------------------------------------------------------------------


def _quantiles_from_histogram(hist: np.ndarray, values: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """np.quantile (linear method) of the multiset described by `hist` counts of sorted `values`, exactly.

    For `n` sorted samples x, quantile q is x[floor(p)] + frac(p) * (x[floor(p)+1] - x[floor(p)]) with
    p = q (n - 1); x[k] is the first value whose cumulative count exceeds k, found with searchsorted.
    """
    cum = np.cumsum(hist)
    n = int(cum[-1])
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    x_lo = values[np.searchsorted(cum, lo, side="right")]
    x_hi = values[np.searchsorted(cum, hi, side="right")]
    return x_lo + (pos - lo) * (x_hi - x_lo)


def _histogram_stats(hist: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """min/max/mean/std/quantiles per channel from (C, num_values) histograms; exact in float64."""
    stats: dict[str, list[float]] = {k: [] for k in ("min", "max", "mean", "std", *QUANTILE_KEYS)}
    for h in hist:
        n = h.sum()
        nonzero = np.flatnonzero(h)
        mean = float((h * values).sum() / n)
        stats["min"].append(values[nonzero[0]])
        stats["max"].append(values[nonzero[-1]])
        stats["mean"].append(mean)
        stats["std"].append(math.sqrt(float((h * (values - mean) ** 2).sum() / n)))
        for key, q in zip(QUANTILE_KEYS, _quantiles_from_histogram(h, values, QUANTILES)):
            stats[key].append(q)
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 1, 1) for k, v in stats.items()}


def _image_episode_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of (N, H, W, C) uint8 frames per channel, via 256-bin histograms (exact and memory-light)."""
    c = frames.shape[-1]
    hist = np.stack([np.bincount(frames[..., i].ravel(), minlength=256) for i in range(c)])
    stats = _histogram_stats(hist, np.arange(256, dtype=np.float64) / 255.0)
    stats["count"] = np.array([frames.shape[0]], dtype=np.int64)
    return stats


def get_feature_stats(
    array: np.ndarray, axis: int | tuple[int, ...], keepdims: bool
) -> dict[str, np.ndarray]:
    """min/max/mean/(population) std/quantiles of `array` reduced over `axis`, plus `count` = len(array)."""
    arr = np.asarray(array, dtype=np.float64)
    stats = {
        "min": np.min(arr, axis=axis, keepdims=keepdims),
        "max": np.max(arr, axis=axis, keepdims=keepdims),
        "mean": np.mean(arr, axis=axis, keepdims=keepdims),
        "std": np.std(arr, axis=axis, keepdims=keepdims),
        "count": np.array([len(arr)], dtype=np.int64),
    }
    quantiles = np.quantile(arr, QUANTILES, axis=axis, keepdims=keepdims)
    for key, q in zip(QUANTILE_KEYS, quantiles):
        stats[key] = q
    return stats


def _feature_kind(key: str, feature: Mapping[str, Any]) -> str:
    """'skip', 'image' or 'numeric' for a feature spec, with a clear error for anything else."""
    dtype = feature.get("dtype") if isinstance(feature, Mapping) else None
    if dtype == "string":
        return "skip"
    if dtype in IMAGE_DTYPES:
        return "image"
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if dtype is None or np_dtype is None or np_dtype.kind not in "biuf":
        raise ValueError(
            f"Feature {key!r} has dtype {dtype!r}; expected 'string', 'image', 'video' or a numeric dtype "
            "such as 'float32', 'int64' or 'bool'."
        )
    return "numeric"


def compute_episode_stats(
    episode_data: Mapping[str, Any], features: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, np.ndarray]]:
    """Stats of one episode, feature by feature.

    `episode_data[key]` is a (T, ...) numeric array reduced over time, or for image/video features uint8
    (T, H, W, C) frames or a list of image paths, sub-sampled with `sample_images`. String features are
    skipped. Quantiles are exact (over time for vectors, over all sampled pixels for images).
    """
    ep_stats: dict[str, dict[str, np.ndarray]] = {}
    for key, data in episode_data.items():
        if key not in features:
            raise ValueError(
                f"episode_data has key {key!r} that is not among the features {sorted(features)}; "
                "declare it in the features or drop it before computing stats."
            )
        kind = _feature_kind(key, features[key])
        if kind == "skip":
            continue
        if kind == "image":
            ep_stats[key] = _image_episode_stats(sample_images(data, key))
            continue
        arr = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        if arr.ndim == 0 or len(arr) == 0:
            raise ValueError(f"Feature {key!r}: expected a non-empty (T, ...) array, got shape {arr.shape}.")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Feature {key!r}: expected numeric data, got dtype {arr.dtype}.")
        ep_stats[key] = get_feature_stats(arr, axis=0, keepdims=arr.ndim == 1)
    return ep_stats


# ----------------------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------------------


def aggregate_feature_stats(
    stats_ft_list: Sequence[Mapping[str, Any]], key: str = "feature"
) -> dict[str, np.ndarray]:
    """Merge the stats of one feature over several episodes.

    min/max/mean/std/count are exact: the mean is count-weighted and the variance pooled as
    sum_i n_i (std_i^2 + (mean_i - mean)^2) / N. Quantiles cannot be merged exactly from summaries; they are
    approximated by the count-weighted mean of the per-episode quantiles, over the episodes that have them.
    Keys other than these are dropped.
    """
    if not stats_ft_list:
        raise ValueError(f"Cannot aggregate stats of {key!r}: the list of stats is empty.")
    required = ("min", "max", "mean", "std", "count")
    parsed = []
    for i, stats in enumerate(stats_ft_list):
        missing = [k for k in required if k not in stats]
        if missing:
            raise ValueError(f"Stats #{i} of {key!r} lack {missing}; every entry needs {list(required)}.")
        parsed.append({k: np.asarray(v, dtype=np.float64) for k, v in stats.items()})
    shape = parsed[0]["mean"].shape
    for i, stats in enumerate(parsed):
        for k in ("min", "max", "mean", "std"):
            if stats[k].shape != shape:
                raise ValueError(
                    f"Stats #{i} of {key!r} have {k} of shape {stats[k].shape}, but stats #0 have shape {shape}."
                )
        if stats["count"].size != 1 or stats["count"].item() < 0:
            raise ValueError(f"Stats #{i} of {key!r} have an invalid count {stats['count'].tolist()}.")

    counts = np.array([s["count"].item() for s in parsed])
    total = counts.sum()
    if total <= 0:
        raise ValueError(f"Cannot aggregate stats of {key!r}: the counts sum to {total}.")
    weights = (counts / total).reshape(-1, *([1] * len(shape)))
    means = np.stack([s["mean"] for s in parsed])
    mean = (weights * means).sum(axis=0)
    variances = np.stack([s["std"] for s in parsed]) ** 2
    variance = (weights * (variances + (means - mean) ** 2)).sum(axis=0)
    out = {
        "min": np.min(np.stack([s["min"] for s in parsed]), axis=0),
        "max": np.max(np.stack([s["max"] for s in parsed]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([round(total)], dtype=np.int64),
    }
    quantile_keys = sorted({k for s in parsed for k in s if _QUANTILE_KEY.match(k)})
    for qk in quantile_keys:
        having = [(s[qk], s["count"].item()) for s in parsed if qk in s]
        q_counts = np.array([c for _, c in having], dtype=np.float64)
        if q_counts.sum() <= 0:
            continue
        q_weights = (q_counts / q_counts.sum()).reshape(-1, *([1] * len(shape)))
        out[qk] = (q_weights * np.stack([q for q, _ in having])).sum(axis=0)
    return out


def aggregate_stats(
    stats_list: Sequence[Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, np.ndarray]]:
    """Merge per-episode stats into dataset stats; a feature is merged over the episodes that have it."""
    if not stats_list:
        raise ValueError("aggregate_stats needs at least one episode's stats, got an empty list.")
    keys: dict[str, None] = {}
    for stats in stats_list:
        keys.update(dict.fromkeys(stats))
    return {k: aggregate_feature_stats([s[k] for s in stats_list if k in s], key=k) for k in keys}


# ----------------------------------------------------------------------------------------------------------
# Whole-dataset pass
# ----------------------------------------------------------------------------------------------------------


class _Running:
    """Streaming min/max/mean/M2 in float64, merged batch by batch with Chan et al.'s parallel update.

    Unlike sum-of-squares, the M2 merge does not lose precision when the mean is large compared to the std.
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, n: int, mean: np.ndarray, m2: np.ndarray, mn: np.ndarray, mx: np.ndarray) -> None:
        if self.mean is None:
            self.n, self.mean, self.m2, self.min, self.max = n, mean, m2, mn, mx
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * n / total)
        self.min = np.minimum(self.min, mn)
        self.max = np.maximum(self.max, mx)
        self.n = total


def _update_image(running: _Running, hist: list, x: torch.Tensor, key: str) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"Camera feature {key!r}: expected batches shaped (B, C, H, W), got {tuple(x.shape)}."
        )
    if not x.is_floating_point():
        raise TypeError(f"Camera feature {key!r}: expected float images in [0, 1], got dtype {x.dtype}.")
    c = x.shape[1]
    pixels = x.detach().cpu().transpose(0, 1).reshape(c, -1).to(torch.float64)
    mean = pixels.mean(dim=1)
    m2 = ((pixels - mean[:, None]) ** 2).sum(dim=1)
    running.update(pixels.shape[1], mean.numpy(), m2.numpy(), pixels.amin(1).numpy(), pixels.amax(1).numpy())
    bins = (pixels * _HIST_STEPS).round_().clamp_(0, _HIST_STEPS).long()
    bins += torch.arange(c)[:, None] * (_HIST_STEPS + 1)
    counts = torch.bincount(bins.reshape(-1), minlength=c * (_HIST_STEPS + 1)).reshape(c, -1).numpy()
    if hist:
        hist[0] = hist[0] + counts
    else:
        hist.append(counts)


def _update_numeric(running: _Running, x: torch.Tensor) -> None:
    rows = x.detach().cpu().reshape(x.shape[0], -1).to(torch.float64)
    mean = rows.mean(dim=0)
    m2 = ((rows - mean) ** 2).sum(dim=0)
    running.update(rows.shape[0], mean.numpy(), m2.numpy(), rows.amin(0).numpy(), rows.amax(0).numpy())


def compute_stats(
    dataset: Any,
    batch_size: int = 32,
    num_workers: int = 0,
    max_num_samples: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """Stats of a whole dataset in one pass, with the same keys and shapes as `compute_episode_stats`.

    `dataset` needs `__len__`, `__getitem__(i) -> dict of tensors` (camera frames float (C, H, W) in [0, 1]),
    `features` and `camera_keys`. `max_num_samples` restricts the pass to a seeded random subset of frames.
    mean/std/min/max are exact (float64 streaming). Quantiles of vector features come from a seeded uniform
    subsample of at most 10_000 frames; those of camera features from a per-channel histogram of every
    pixel on a 1/1020 grid, exact for 8-bit sources. `count` is the number of frames used.
    """
    for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    num_frames = len(dataset)
    if num_frames == 0:
        raise ValueError("Cannot compute stats of an empty dataset.")
    features = dataset.features
    camera_keys = set(getattr(dataset, "camera_keys", []))
    kinds = {}
    for key, ft in features.items():
        kind = "image" if key in camera_keys else _feature_kind(key, ft)
        if kind != "skip":
            kinds[key] = kind

    rng = np.random.default_rng(seed)
    if max_num_samples is None or max_num_samples >= num_frames:
        indices = list(range(num_frames))
    elif isinstance(max_num_samples, bool) or not isinstance(max_num_samples, int) or max_num_samples < 1:
        raise ValueError(f"max_num_samples must be a positive int or None, got {max_num_samples!r}.")
    else:
        indices = np.sort(rng.choice(num_frames, size=max_num_samples, replace=False)).tolist()
    keep = np.zeros(len(indices), dtype=bool)
    keep[rng.choice(len(indices), size=min(len(indices), _MAX_QUANTILE_ROWS), replace=False)] = True

    running = {key: _Running() for key in kinds}
    hists: dict[str, list] = {key: [] for key in kinds}
    kept_rows: dict[str, list[np.ndarray]] = {key: [] for key in kinds}
    frame_counts = dict.fromkeys(kinds, 0)
    shapes: dict[str, tuple[int, ...]] = {}
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=indices, num_workers=num_workers, shuffle=False
    )
    offset = 0
    for batch in loader:
        size = None
        for key, kind in kinds.items():
            if key not in batch:
                continue
            x = batch[key]
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"Feature {key!r}: the dataset must return tensors, got {type(x).__name__}.")
            size = x.shape[0]
            shapes[key] = tuple(x.shape[1:])
            frame_counts[key] += size
            if kind == "image":
                _update_image(running[key], hists[key], x, key)
            else:
                _update_numeric(running[key], x)
                sel = torch.from_numpy(keep[offset : offset + size])
                kept_rows[key].append(
                    x.detach().cpu()[sel].reshape(int(sel.sum()), -1).to(torch.float64).numpy()
                )
        offset += size if size is not None else len(next(iter(batch.values())))

    stats: dict[str, dict[str, np.ndarray]] = {}
    for key, kind in kinds.items():
        r = running[key]
        if r.mean is None:
            continue  # the dataset never returned this feature
        out_shape = (-1, 1, 1) if kind == "image" else (shapes[key] or (1,))
        stats[key] = {
            "min": r.min.reshape(out_shape),
            "max": r.max.reshape(out_shape),
            "mean": r.mean.reshape(out_shape),
            "std": np.sqrt(r.m2 / r.n).reshape(out_shape),
            "count": np.array([frame_counts[key]], dtype=np.int64),
        }
        if kind == "image":
            values = np.arange(_HIST_STEPS + 1, dtype=np.float64) / _HIST_STEPS
            hist_stats = _histogram_stats(hists[key][0], values)
            stats[key].update({k: hist_stats[k] for k in QUANTILE_KEYS})
        else:
            rows = np.concatenate(kept_rows[key])
            for k, q in zip(QUANTILE_KEYS, np.quantile(rows, QUANTILES, axis=0)):
                stats[key][k] = q.reshape(out_shape)
    return stats


# ----------------------------------------------------------------------------------------------------------
# JSON round trip
# ----------------------------------------------------------------------------------------------------------


def serialize_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Nested stats with arrays/tensors -> the same nesting with plain lists and numbers (JSON-ready)."""
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, Mapping):
            out[key] = serialize_stats(value)
        elif isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu().tolist()
        elif isinstance(value, (np.ndarray, np.generic)):
            out[key] = value.tolist()
        elif isinstance(value, (int, float, list, tuple)):
            out[key] = np.asarray(value).tolist()
        else:
            raise TypeError(f"Cannot serialize stats entry {key!r} of type {type(value).__name__}.")
    return out


def cast_stats_to_numpy(json_stats: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `serialize_stats`: float32 arrays for every stat, except `count`, kept as int64.

    float32 is what the normalisers use; counts stay integers because float32 is exact only up to 2**24
    frames, which large datasets exceed.
    """
    out: dict[str, Any] = {}
    for key, value in json_stats.items():
        if isinstance(value, Mapping):
            out[key] = cast_stats_to_numpy(value)
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        try:
            out[key] = np.asarray(value, dtype=np.int64 if key == "count" else np.float32)
        except (TypeError, ValueError) as e:
            raise TypeError(f"Stats entry {key!r} is not numeric: {value!r}.") from e
    return out
