"""Recording a LeRobot dataset frame by frame, in format v3.0 (default) or v2.1.

    writer = LeRobotDataset.create("me/pick_cube", fps=30, features=FEATURES, root="data/pick_cube")
    for episode in ...:
        for frame in episode:
            writer.add_frame({"observation.images.top": hwc_uint8, "observation.state": state, "action": action})
        writer.save_episode(task="Pick the cube")
    writer.finalize()

Crash safety: every file is written to a temporary name and renamed into place, and `save_episode` leaves a
complete dataset on disk, so a process killed mid-recording loses only the episode in progress. (In v3.0 an
episode's rows are committed to the shared data file before its metadata row; rows that never got a metadata
row are invisible to readers and removed by `LeRobotDatasetWriter.resume`.) `finalize()` only tidies up.
"""

from __future__ import annotations

import io
import logging
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from lerobot.common.datasets import layout
from lerobot.common.datasets.errors import (
    BackwardCompatibilityError,
    DatasetExistsError,
    FeatureMismatchError,
    MetadataError,
)
from lerobot.common.datasets.metadata import DEFAULT_FEATURES, VISUAL_DTYPES, load_metadata
from lerobot.common.datasets.utils import WRITABLE_VERSIONS, default_lerobot_home, validate_repo_id

logger = logging.getLogger(__name__)

NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
ALLOWED_DTYPES = (*NUMERIC_DTYPES, "string", "image", "video")


def validate_features(features: dict, use_videos: bool) -> dict:
    out = {}
    for key, spec in features.items():
        if key in DEFAULT_FEATURES:
            continue
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise FeatureMismatchError(
                f"Feature {key!r} must be a dict with 'dtype' and 'shape', got {spec!r}."
            )
        if "/" in key:
            raise FeatureMismatchError(f"Feature key {key!r} may not contain '/' (it separates stats keys).")
        dtype = spec["dtype"]
        if dtype not in ALLOWED_DTYPES:
            raise FeatureMismatchError(f"Feature {key!r} has dtype {dtype!r}; allowed: {ALLOWED_DTYPES}.")
        shape = tuple(int(s) for s in spec["shape"])
        if dtype in VISUAL_DTYPES:
            if len(shape) != 3 or shape[2] not in (1, 3):
                raise FeatureMismatchError(
                    f"Camera feature {key!r} needs shape (height, width, channels), got {shape}."
                )
            if dtype == "video" and not use_videos:
                dtype = "image"
        names = spec.get("names")
        if dtype in VISUAL_DTYPES and names is None:
            names = ["height", "width", "channels"]
        out[key] = {"dtype": dtype, "shape": shape, "names": names}
    for key, spec in DEFAULT_FEATURES.items():
        out[key] = dict(spec)
    return out


def to_hwc_uint8(key: str, value, shape: tuple[int, int, int]) -> np.ndarray:
    """Accept HWC uint8, CHW/HWC float in [0, 1], torch tensors or PIL images; return HWC uint8."""
    if isinstance(value, Image.Image):
        value = np.asarray(value)
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape != shape and arr.shape == (shape[2], shape[0], shape[1]):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2 and shape[2] == 1:
        arr = arr[..., None]
    if arr.shape != shape:
        raise FeatureMismatchError(
            f"Frame value for {key!r} has shape {arr.shape}; the feature declares {shape} (H, W, C)."
        )
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise FeatureMismatchError(
                    f"Float image for {key!r} must be in [0, 1]; got [{arr.min()}, {arr.max()}]."
                )
            arr = np.round(arr * 255)
        arr = arr.astype(np.uint8)
    return arr


class LeRobotDatasetWriter:
    def __init__(self):
        raise TypeError("Use LeRobotDataset.create(...) or LeRobotDatasetWriter.resume(...).")

    @classmethod
    def create(
        cls,
        repo_id: str,
        fps: float,
        features: dict,
        root: str | Path | None = None,
        *,
        robot_type: str | None = None,
        use_videos: bool = True,
        codebase_version: str = "v3.0",
        vcodec: str = "libsvtav1",
        crf: int = 30,
        g: int = 2,
        preset: int | None = None,
        image_writer_threads: int = 4,
        data_files_size_in_mb: float = 100,
        video_files_size_in_mb: float = 200,
        chunks_size: int = 1000,
        overwrite: bool = False,
    ) -> LeRobotDatasetWriter:
        """Start a new dataset in `root` (default $HF_LEROBOT_HOME/<repo_id>); refuses a non-empty folder."""
        validate_repo_id(repo_id)
        if codebase_version not in WRITABLE_VERSIONS:
            raise BackwardCompatibilityError(
                f"Cannot write format {codebase_version!r}; the writer produces {WRITABLE_VERSIONS}."
            )
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise MetadataError(f"fps must be a positive number, got {fps!r}.")
        root = Path(root).expanduser() if root is not None else default_lerobot_home() / repo_id
        if root.exists() and any(root.iterdir()):
            if not overwrite:
                raise DatasetExistsError(
                    f"{root} already exists and is not empty. Pick another root, resume recording into it with "
                    "LeRobotDatasetWriter.resume(...), or pass overwrite=True to delete it."
                )
            shutil.rmtree(root)
        self = object.__new__(cls)
        self._setup(
            repo_id,
            root,
            layout.new_info(
                codebase_version,
                fps=fps,
                features=validate_features(features, use_videos),
                robot_type=robot_type,
                chunks_size=chunks_size,
                data_files_size_in_mb=data_files_size_in_mb,
                video_files_size_in_mb=video_files_size_in_mb,
            ),
            encoding={"vcodec": vcodec, "crf": crf, "g": g, "preset": preset},
            image_writer_threads=image_writer_threads,
        )
        self.store.write_info()
        return self

    @classmethod
    def resume(
        cls,
        repo_id: str,
        root: str | Path,
        *,
        vcodec: str = "libsvtav1",
        crf: int = 30,
        g: int = 2,
        preset: int | None = None,
        image_writer_threads: int = 4,
    ) -> LeRobotDatasetWriter:
        """Reopen a dataset (v3.0 or v2.1) to append episodes, e.g. after an interrupted recording."""
        validate_repo_id(repo_id)
        root = Path(root).expanduser()
        meta = load_metadata(root)
        if meta.codebase_version not in WRITABLE_VERSIONS:
            raise BackwardCompatibilityError(
                f"{root} is format {meta.codebase_version}; convert it first: "
                f"python lerobot/scripts/convert_dataset.py --repo-id {repo_id} --root {root} --out-dir NEW_DIR"
            )
        self = object.__new__(cls)
        info = dict(meta.info)
        info["features"] = {k: {**f, "shape": tuple(f["shape"])} for k, f in meta.features.items()}
        self._setup(
            repo_id,
            root,
            info,
            encoding={"vcodec": vcodec, "crf": crf, "g": g, "preset": preset},
            image_writer_threads=image_writer_threads,
        )
        self.store.load_existing(meta)
        self._reset_buffer()
        return self

    def _setup(self, repo_id: str, root: Path, info: dict, encoding: dict, image_writer_threads: int) -> None:
        self.repo_id = repo_id
        self.root = root
        self.encoding = encoding
        self.store = layout.make_store(root, info)
        self.features = info["features"]
        self.fps = info["fps"]
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, image_writer_threads), thread_name_prefix="png"
        )
        self._pending: list[Future] = []
        self._reset_buffer()

    # ------------------------------------------------------------------ recording

    @property
    def num_episodes(self) -> int:
        return self.store.num_episodes

    @property
    def num_frames(self) -> int:
        return self.store.num_frames

    @property
    def user_keys(self) -> list[str]:
        return [k for k in self.features if k not in DEFAULT_FEATURES]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k in self.user_keys if self.features[k]["dtype"] in VISUAL_DTYPES]

    def _reset_buffer(self) -> None:
        self.episode_index = self.store.next_episode_index
        self._frames: dict[str, list] = {k: [] for k in self.user_keys if k not in self.camera_keys}
        self._image_paths: dict[str, list[Path]] = {k: [] for k in self.camera_keys}
        self._tasks: list[str | None] = []
        self._timestamps: list[float] = []

    @property
    def episode_buffer_size(self) -> int:
        return len(self._timestamps)

    def image_path(self, key: str, frame_index: int) -> Path:
        return (
            self.root / "images" / key / f"episode-{self.episode_index:06d}" / f"frame-{frame_index:06d}.png"
        )

    def add_frame(self, frame: dict, task: str | None = None) -> None:
        """Buffer one frame. Keys: every declared feature; optional 'task' (str) and 'timestamp' (seconds)."""
        frame = dict(frame)
        task = frame.pop("task", task)
        timestamp = frame.pop("timestamp", None)
        expected = set(self.user_keys)
        missing, extra = expected - set(frame), set(frame) - expected
        if missing or extra:
            raise FeatureMismatchError(
                f"Frame keys do not match the features: missing {sorted(missing)}, unexpected {sorted(extra)}."
            )
        i = self.episode_buffer_size
        for key in self.user_keys:
            spec = self.features[key]
            if spec["dtype"] in VISUAL_DTYPES:
                image = to_hwc_uint8(key, frame[key], spec["shape"])
                path = self.image_path(key, i)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._pending.append(self._executor.submit(write_png, image, path))
                self._image_paths[key].append(path)
            elif spec["dtype"] == "string":
                self._frames[key].append(str(frame[key]))
            else:
                value = np.asarray(frame[key].detach().cpu() if hasattr(frame[key], "detach") else frame[key])
                value = value.astype(np.dtype(spec["dtype"]), copy=False)
                if value.shape != spec["shape"] and not (value.size == 1 and spec["shape"] == (1,)):
                    raise FeatureMismatchError(
                        f"Frame value for {key!r} has shape {value.shape}; the feature declares {spec['shape']}."
                    )
                self._frames[key].append(value.reshape(spec["shape"]))
        self._tasks.append(task)
        self._timestamps.append(float(timestamp) if timestamp is not None else i / self.fps)

    def clear_episode_buffer(self) -> None:
        """Drop the episode in progress (e.g. to re-record it)."""
        self._wait_for_images()
        shutil.rmtree(self.root / "images", ignore_errors=True)
        self._reset_buffer()

    def _wait_for_images(self) -> None:
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def save_episode(self, task: str | None = None) -> int:
        """Write the buffered episode to disk (data, videos, metadata, stats); returns its episode index."""
        n = self.episode_buffer_size
        if n == 0:
            raise FeatureMismatchError("save_episode() called with no frames; call add_frame() first.")
        tasks = [t if t is not None else task for t in self._tasks]
        if any(t is None for t in tasks):
            raise FeatureMismatchError(
                "Every frame needs a task: pass save_episode(task='...') or add a 'task' string to each frame."
            )
        self._wait_for_images()
        columns = {
            k: np.stack(v) if self.features[k]["dtype"] != "string" else v for k, v in self._frames.items()
        }
        episode = layout.EpisodeData(
            episode_index=self.episode_index,
            columns=columns,
            timestamps=np.asarray(self._timestamps, dtype=np.float32),
            tasks=tasks,
            image_paths={k: v for k, v in self._image_paths.items() if self.features[k]["dtype"] == "image"},
            video_frame_dirs={
                k: self.image_path(k, 0).parent
                for k in self.camera_keys
                if self.features[k]["dtype"] == "video"
            },
        )
        index = self.store.write_episode(episode, self.encoding)
        shutil.rmtree(self.root / "images", ignore_errors=True)
        self._reset_buffer()
        return index

    def add_episode(self, episode: layout.EpisodeData) -> int:
        """Write a whole episode at once (converters use this to copy already-encoded videos)."""
        if self.episode_buffer_size:
            raise FeatureMismatchError("add_episode() needs an empty frame buffer; save or clear it first.")
        episode.episode_index = self.episode_index
        index = self.store.write_episode(episode, self.encoding)
        self._reset_buffer()
        return index

    def finalize(self) -> None:
        """Finish: wait for background writes, drop temporary images. The dataset was already complete."""
        if self.episode_buffer_size:
            logger.warning(
                "finalize(): dropping %d unsaved frames of the episode in progress.", self.episode_buffer_size
            )
        self._wait_for_images()
        shutil.rmtree(self.root / "images", ignore_errors=True)
        self._executor.shutdown(wait=True)
        self.store.write_info()

    def as_dataset(self, **kwargs):
        from lerobot.common.datasets.lerobot_dataset import LeRobotDataset

        return LeRobotDataset(self.repo_id, root=self.root, **kwargs)


def encode_png(image: np.ndarray) -> bytes:
    """HWC uint8 -> PNG bytes. compress_level=1: level 6 costs 5-10x the time for ~10% smaller files."""
    buffer = io.BytesIO()
    Image.fromarray(image if image.shape[2] == 3 else image[..., 0]).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def write_png(image: np.ndarray, path: Path) -> None:
    path.write_bytes(encode_png(image))


def episode_table(
    episode: layout.EpisodeData, features: dict, first_index: int, task_indices: list[int]
) -> pa.Table:
    """The parquet rows of one episode, with the Hugging Face features schema that `datasets` expects."""
    n = len(episode.timestamps)
    arrays = {}
    for key, spec in features.items():
        if key in DEFAULT_FEATURES or spec["dtype"] == "video":
            continue
        if spec["dtype"] == "image":
            if key in episode.images:
                pngs = [encode_png(frame) for frame in episode.images[key]]
            else:
                pngs = [p.read_bytes() for p in episode.image_paths[key]]
            arrays[key] = pa.array(
                [{"bytes": png, "path": None} for png in pngs],
                type=pa.struct({"bytes": pa.binary(), "path": pa.string()}),
            )
            continue
        values = episode.columns[key]
        if spec["dtype"] == "string":
            arrays[key] = pa.array(list(values), type=pa.string())
            continue
        values = np.asarray(values).reshape(n, *spec["shape"])
        if spec["shape"] == (1,):
            arrays[key] = pa.array(values.reshape(n))
        else:
            flat = pa.array(values.reshape(-1))
            for size in reversed(spec["shape"]):
                flat = pa.FixedSizeListArray.from_arrays(flat, size)
            arrays[key] = flat
    arrays["timestamp"] = pa.array(episode.timestamps.astype(np.float32))
    arrays["frame_index"] = pa.array(np.arange(n, dtype=np.int64))
    arrays["episode_index"] = pa.array(np.full(n, episode.episode_index, dtype=np.int64))
    arrays["index"] = pa.array(np.arange(first_index, first_index + n, dtype=np.int64))
    arrays["task_index"] = pa.array(np.asarray(task_indices, dtype=np.int64))
    table = pa.table(arrays)
    return table.replace_schema_metadata({b"huggingface": layout.hf_features_json(features).encode()})


def rewrite_parquet_append(path: Path, new: pa.Table, keep_episodes: set[int] | None = None) -> None:
    """Atomically rewrite `path` as its current row groups (optionally only some episodes) + `new`."""
    from lerobot.common.datasets.utils import atomic_path

    with atomic_path(path) as tmp:
        writer = None
        if path.exists():
            source = pq.ParquetFile(path)
            for i in range(source.num_row_groups):
                group = source.read_row_group(i)
                if keep_episodes is not None:
                    mask = np.isin(group.column("episode_index").to_numpy(), list(keep_episodes))
                    if not mask.all():
                        group = group.filter(pa.array(mask))
                if group.num_rows == 0:
                    continue
                if writer is None:
                    writer = pq.ParquetWriter(tmp, new.schema if new is not None else group.schema)
                writer.write_table(group.cast(writer.schema))
        if new is not None:
            if writer is None:
                writer = pq.ParquetWriter(tmp, new.schema)
            writer.write_table(new.cast(writer.schema), row_group_size=max(1, new.num_rows))
        if writer is None:
            raise FeatureMismatchError(f"Refusing to write an empty parquet file at {path}.")
        writer.close()
