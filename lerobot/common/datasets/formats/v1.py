"""Format v1.x (up to v1.6, 2024): one Arrow/parquet table, `meta_data/` safetensors, one mp4 per episode.

Layouts seen: `train/` written by `datasets.save_to_disk` (Arrow stream files + dataset_info.json + state.json)
or `data/train-*.parquet` as pushed to the Hub. Features are Hugging Face `datasets` features in which cameras
are either `Image` (PNG bytes embedded) or a custom `VideoFrame` struct `{path, timestamp}` pointing into
`videos/<key>_episode_XXXXXX.mp4`. There are no tasks and no per-episode metadata file: episodes are the runs
of equal `episode_index` in the table.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from safetensors.numpy import load_file as load_safetensors

from lerobot.common.datasets.errors import CorruptFileError, MetadataError, MissingFileError
from lerobot.common.datasets.formats.tables import read_schema, read_table
from lerobot.common.datasets.metadata import DatasetMetadata, EpisodeRecord, VideoSegment
from lerobot.common.datasets.utils import load_json, safe_join, unflatten_dict


def find_data_files(root: Path) -> list[str]:
    train = root / "train"
    if (train / "state.json").is_file():
        state = load_json(train / "state.json")
        files = [f["filename"] for f in state.get("_data_files", [])]
        if not files:
            raise MetadataError(f"{train / 'state.json'} lists no '_data_files'.")
        return [f"train/{name}" for name in files]
    files = sorted(p.relative_to(root).as_posix() for p in (root / "data").glob("*.parquet"))
    files = files or sorted(p.relative_to(root).as_posix() for p in train.glob("*.arrow"))
    if not files:
        raise MissingFileError(
            f"No data files in {root}: a v1 dataset keeps its rows in train/*.arrow or data/*.parquet."
        )
    return files


def hf_features(root: Path, data_files: list[str]) -> dict:
    """The Hugging Face `datasets` feature dict, from dataset_info.json or the parquet schema metadata."""
    info_path = root / "train" / "dataset_info.json"
    if info_path.is_file():
        features = load_json(info_path).get("features")
        if features:
            return features
    schema = read_schema(safe_join(root, data_files[0]))
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        raise MetadataError(
            f"{data_files[0]} carries no Hugging Face feature metadata; cannot tell its columns."
        )
    return json.loads(raw)["info"]["features"]


def convert_feature(key: str, hf: dict, table: pa.Table, root: Path) -> dict:
    """Turn a `datasets` feature description into the v2+ `{dtype, shape, names}` form."""
    kind = hf.get("_type")
    if kind == "VideoFrame":
        return {"dtype": "video", "shape": None, "names": ["height", "width", "channels"]}
    if kind == "Image":
        from PIL import Image

        first = table.column(key)[0].as_py()
        with Image.open(io.BytesIO(first["bytes"])) as img:
            w, h = img.size
            c = len(img.getbands())
        return {"dtype": "image", "shape": (h, w, c), "names": ["height", "width", "channels"]}
    if kind == "Value":
        dtype = hf["dtype"]
        return {"dtype": "bool" if dtype == "bool" else dtype, "shape": (1,), "names": None}
    if kind in ("Sequence", "List", "LargeList"):
        inner = hf.get("feature", {})
        length = hf.get("length", -1)
        if length is None or length < 0:
            first = table.column(key)[0].as_py()
            length = len(first)
        return {"dtype": inner.get("dtype", "float32"), "shape": (int(length),), "names": None}
    raise MetadataError(f"Column {key!r} has feature type {kind!r}, which a v1 dataset should not contain.")


def load_metadata(root: Path, version: str) -> DatasetMetadata:
    info_path = root / "meta_data" / "info.json"
    info = load_json(info_path)
    if "fps" not in info:
        raise MetadataError(f"{info_path} is missing the key 'fps'; every dataset records its frame rate.")
    fps = info["fps"]
    data_files = find_data_files(root)
    tables = [read_table(safe_join(root, f)) for f in data_files]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if "episode_index" not in table.column_names:
        raise MetadataError(f"The data files of {root} have no 'episode_index' column.")

    hf = hf_features(root, data_files)
    features = {key: convert_feature(key, spec, table, root) for key, spec in hf.items()}

    episode_col = table.column("episode_index").to_numpy()
    starts = np.flatnonzero(np.r_[True, episode_col[1:] != episode_col[:-1]])
    ends = np.r_[starts[1:], len(episode_col)]
    if len(np.unique(episode_col[starts])) != len(starts):
        raise CorruptFileError(
            f"The rows of {root} are not grouped by episode: episode_index repeats in runs."
        )

    index_col = table.column("index").to_numpy() if "index" in table.column_names else np.arange(len(table))
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]
    video_paths = {k: table.column(k).combine_chunks().field("path") for k in video_keys}
    episodes = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        ep = int(episode_col[start])
        videos = {k: VideoSegment(path=video_paths[k][start].as_py()) for k in video_keys}
        episodes[ep] = EpisodeRecord(
            episode_index=ep,
            length=end - start,
            tasks=[],
            dataset_from_index=int(index_col[start]),
            dataset_to_index=int(index_col[start]) + (end - start),
            data_path="",
            videos=videos,
        )

    # Video shapes are not in the metadata of v1 datasets: read them from the first episode's file.
    for key in video_keys:
        from lerobot.common.datasets.video_utils import get_video_info

        first = next(iter(episodes.values())).videos[key].path
        vinfo = get_video_info(safe_join(root, first))
        features[key]["shape"] = (vinfo["video.height"], vinfo["video.width"], vinfo["video.channels"])
        features[key]["info"] = vinfo

    stats = {}
    stats_path = root / "meta_data" / "stats.safetensors"
    if stats_path.is_file():
        try:
            stats = unflatten_dict(load_safetensors(str(stats_path)))
        except Exception as e:
            raise CorruptFileError(
                f"Cannot read {stats_path} ({e}); restore it from the original dataset."
            ) from e

    if "language_instruction" in table.column_names:
        tasks = sorted(set(pc.unique(table.column("language_instruction")).to_pylist()))
        task_map = dict(enumerate(tasks))
    else:
        task_map = {}

    full_info = {"codebase_version": version, **info, "data_files": data_files}
    return DatasetMetadata(
        root=root,
        codebase_version=version,
        fps=fps,
        features=features,
        episodes=episodes,
        tasks=task_map,
        stats=stats,
        info=full_info,
    )
