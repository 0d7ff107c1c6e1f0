"""Look at one episode of a LeRobot dataset (any format version) in the rerun viewer.

    python lerobot/scripts/visualize_dataset.py --repo-id lerobot/pusht --episode-index 0 [--root DIR]

Every camera stream is logged as images, and every dimension of the state, action and other numeric features
(reward, done, success, ...) as a time series, on two timelines: `frame_index` and `timestamp` (seconds).

Modes:
  --mode local (default)   spawn a rerun viewer on this machine;
  --mode distant           serve the recording for a viewer elsewhere: open http://HOST:WEB_PORT in a browser
                           (web viewer), or run `rerun rerun+http://HOST:WS_PORT/proxy` (native viewer);
  --save 1 --output-dir D  write D/<namespace>_<name>_episode_<i>.rrd instead (open it later with `rerun FILE`).

The dataset is looked up like `LeRobotDataset` does: --root, else $DATA_DIR/<repo_id>, else the local cache,
else the Hugging Face Hub. Needs the `viz` extra (rerun-sdk).
"""

from __future__ import annotations

import argparse
import io
import math
import re
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lerobot.common.datasets.errors import DatasetError, DatasetExistsError, EpisodeNotFoundError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.utils import safe_join

# Columns every dataset has that say where a row is, not what the robot did: not worth a plot.
BOOKKEEPING_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
_FRAME_CHUNK = 32  # camera frames decoded per call
_UNSAFE_ENTITY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class UnknownKeyError(DatasetError, ValueError):
    """A feature key asked for on the command line that the dataset does not have."""


class PortInUseError(OSError):
    """A port we were asked to serve on is already taken."""


# ------------------------------------------------------------------------------------- dataset helpers


def check_port_free(host: str, port: int, what: str = "--port") -> None:
    """Raise PortInUseError (saying which option to change) if nothing can listen on host:port."""
    if not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be between 1 and 65535, got {port}.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, int(port)))
        except OSError as e:
            raise PortInUseError(
                f"Cannot listen on {host}:{port} ({e.strerror or e}): the port is in use or not available. "
                f"Pick another one with {what} N."
            ) from e


def load_dataset(repo_id: str, root: str | Path | None, episodes: Sequence[int] | None) -> LeRobotDataset:
    """Open the dataset for viewing: only the requested episodes, no decoded-frame cache written to disk."""
    return LeRobotDataset(repo_id, root=root, episodes=episodes, decoded_frame_cache=False)


def numeric_keys(dataset: LeRobotDataset) -> list[str]:
    """Features worth a time series: numbers that are neither camera frames nor row bookkeeping."""
    out = []
    for key, feature in dataset.features.items():
        dtype = str(feature.get("dtype"))
        if key in BOOKKEEPING_KEYS or dtype in ("image", "video", "string"):
            continue
        out.append(key)
    return out


def select_keys(dataset: LeRobotDataset, keys: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(camera keys, numeric keys) to show: all of them, or those named in `keys` (checked)."""
    cameras, numeric = list(dataset.camera_keys), numeric_keys(dataset)
    if not keys:
        return cameras, numeric
    unknown = [k for k in keys if k not in cameras and k not in numeric]
    if unknown:
        raise UnknownKeyError(
            f"Unknown key(s) {unknown} for {dataset.repo_id} at {dataset.root}. Keys that can be shown: "
            f"cameras {cameras}, series {numeric}."
        )
    return [k for k in cameras if k in keys], [k for k in numeric if k in keys]


def dimension_names(feature: dict) -> list[str]:
    """One label per flattened dimension: the feature's `names` when they fit, else '0', '1', ..."""
    size = math.prod(int(s) for s in feature.get("shape") or (1,))
    names: Any = feature.get("names")
    if isinstance(names, dict) and len(names) == 1:  # v2 style {"motors": [...]}
        names = next(iter(names.values()))
    if (
        isinstance(names, list)
        and len(names) == size
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == size
    ):
        return list(names)
    return [str(i) for i in range(size)]


def episode_position(dataset: LeRobotDataset, episode_index: int) -> int:
    if episode_index not in dataset.episodes:
        have = dataset.episodes
        raise EpisodeNotFoundError(
            f"Episode {episode_index} is not loaded from {dataset.repo_id} at {dataset.root} "
            f"(loaded: {have[:20]}{' ...' if len(have) > 20 else ''})."
        )
    return dataset.episodes.index(episode_index)


def episode_rows(dataset: LeRobotDataset, episode_index: int) -> tuple[int, int]:
    """[from, to) of the episode's rows in `dataset`'s own indexing."""
    pos = episode_position(dataset, episode_index)
    index = dataset.episode_data_index
    return int(index["from"][pos]), int(index["to"][pos])


def episode_columns(
    dataset: LeRobotDataset, episode_index: int, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """`timestamp` and `frame_index` (N,) plus each of `keys` as an (N, D) array, for one episode."""
    lo, hi = episode_rows(dataset, episode_index)
    table = dataset.hf_dataset
    available = set(table.column_names)
    wanted = [k for k in ("timestamp", "frame_index", *keys) if k in available]
    missing = [k for k in keys if k not in available]
    if missing:
        raise UnknownKeyError(
            f"The data files of {dataset.repo_id} at {dataset.root} have no column {missing}."
        )
    rows = table.select_columns(wanted).with_format("numpy")[lo:hi]
    out = {k: np.asarray(rows[k]).reshape(hi - lo, -1) for k in keys}
    n = hi - lo
    if "timestamp" in rows:
        out["timestamp"] = np.asarray(rows["timestamp"], dtype=np.float64).reshape(n)
    else:
        out["timestamp"] = np.arange(n, dtype=np.float64) / dataset.fps
    if "frame_index" in rows:
        out["frame_index"] = np.asarray(rows["frame_index"], dtype=np.int64).reshape(n)
    else:
        out["frame_index"] = np.arange(n, dtype=np.int64)
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image, dtype=np.uint8)


def iter_camera_frames(
    dataset: LeRobotDataset, episode_index: int, key: str, timestamps: np.ndarray
) -> Iterator[np.ndarray]:
    """The episode's frames of camera `key` as HxWx3 uint8 RGB arrays, one per row (decoded in small chunks)."""
    from PIL import Image

    feature = dataset.features[key]
    if feature["dtype"] == "video":
        from lerobot.common.datasets.video_decoding import decode_video_frames

        segment = dataset.meta.episodes[episode_index].videos[key]
        path = safe_join(dataset.root, segment.path)
        for start in range(0, len(timestamps), _FRAME_CHUNK):
            queries = segment.from_timestamp + np.asarray(timestamps[start : start + _FRAME_CHUNK])
            frames = decode_video_frames(path, queries, dataset.tolerance_s)  # (n, 3, H, W) uint8
            for frame in frames.numpy():
                yield _rgb(frame.transpose(1, 2, 0))
        return
    lo, hi = episode_rows(dataset, episode_index)
    column = dataset.hf_dataset.select_columns([key])
    for start in range(lo, hi, _FRAME_CHUNK):
        for value in column[start : min(hi, start + _FRAME_CHUNK)][key]:
            if isinstance(value, dict):  # {"bytes", "path"} when the column lacks the Image feature type
                data = value.get("bytes") or safe_join(dataset.root, value["path"]).read_bytes()
                with Image.open(io.BytesIO(data)) as img:
                    value = img.convert("RGB")
            elif isinstance(value, Image.Image):
                value = value.convert("RGB")
            yield _rgb(np.asarray(value))


def entity_part(text: str) -> str:
    """A rerun entity path part: letters, digits, '_', '-', '.' (anything else becomes '_')."""
    return _UNSAFE_ENTITY_CHARS.sub("_", text) or "_"


# ---------------------------------------------------------------------------------------------- rerun


def import_rerun():
    try:
        import rerun as rr
    except ImportError as e:
        raise ModuleNotFoundError(
            "rerun-sdk is not installed. Install the viewer extra: pip install -e '.[viz]' "
            "(or pip install 'rerun-sdk>=0.21,<0.42')."
        ) from e
    return rr


def _new_recording(rr, application_id: str):
    import inspect

    if "application_id" in inspect.signature(rr.RecordingStream.__init__).parameters:  # rerun >= 0.23
        return rr.RecordingStream(application_id)
    return rr.new_recording(application_id)


def _set_time(rr, rec, frame_index: int, timestamp: float) -> None:
    if hasattr(rr, "set_time"):  # rerun >= 0.23
        rr.set_time("frame_index", sequence=frame_index, recording=rec)
        rr.set_time("timestamp", duration=timestamp, recording=rec)
    else:
        rr.set_time_sequence("frame_index", frame_index, recording=rec)
        rr.set_time_seconds("timestamp", timestamp, recording=rec)


def _scalar(rr, value: float):
    return rr.Scalars([value]) if hasattr(rr, "Scalars") else rr.Scalar(value)


def scalar_entities(dataset: LeRobotDataset, keys: Sequence[str]) -> dict[str, list[str]]:
    """Entity path of every dimension: `key/name` (or `key` alone for an unnamed scalar)."""
    out = {}
    for key in keys:
        feature = dataset.features[key]
        names = dimension_names(feature)
        if len(names) == 1 and not feature.get("names"):
            out[key] = [entity_part(key)]
        else:
            out[key] = [f"{entity_part(key)}/{entity_part(n)}" for n in names]
    return out


def log_episode(
    rr,
    rec,
    dataset: LeRobotDataset,
    episode_index: int,
    cameras: list[str],
    series: list[str],
    jpeg_quality: int,
) -> int:
    """Log the episode into recording `rec`; returns the number of frames logged."""
    from PIL import Image

    columns = episode_columns(dataset, episode_index, series)
    timestamps, frame_indices = columns["timestamp"], columns["frame_index"]
    entities = scalar_entities(dataset, series)
    frames = {key: iter_camera_frames(dataset, episode_index, key, timestamps) for key in cameras}
    tasks = dataset.meta.episodes[episode_index].tasks
    if tasks:
        rr.log("task", rr.TextDocument("\n".join(tasks)), static=True, recording=rec)
    for i in range(len(timestamps)):
        _set_time(rr, rec, int(frame_indices[i]), float(timestamps[i]))
        for key, it in frames.items():
            buffer = io.BytesIO()
            Image.fromarray(next(it)).save(buffer, format="JPEG", quality=jpeg_quality)
            rr.log(
                entity_part(key),
                rr.EncodedImage(contents=buffer.getvalue(), media_type="image/jpeg"),
                recording=rec,
            )
        for key in series:
            values = columns[key][i]
            for path, value in zip(entities[key], values.tolist()):
                rr.log(path, _scalar(rr, float(value)), recording=rec)
    return len(timestamps)


def visualize_dataset(
    repo_id: str,
    episode_index: int,
    root: str | Path | None = None,
    *,
    mode: str = "local",
    web_port: int = 9090,
    ws_port: int = 9087,
    save: bool = False,
    output_dir: str | Path | None = None,
    keys: Sequence[str] | None = None,
    jpeg_quality: int = 90,
    force_override: bool = False,
) -> Path | None:
    """Log one episode to rerun. Returns the .rrd path with `save`, else None (the viewer/servers keep running)."""
    if mode not in ("local", "distant"):
        raise ValueError(f"mode must be 'local' or 'distant', got {mode!r}.")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.")
    rrd_path = None
    if save:
        if output_dir is None:
            raise ValueError("--save 1 needs --output-dir, the folder to write the .rrd file to.")
        rrd_path = Path(output_dir) / f"{repo_id.replace('/', '_')}_episode_{episode_index}.rrd"
        if rrd_path.exists() and not force_override:
            raise DatasetExistsError(f"{rrd_path} already exists; pass --force-override 1 to replace it.")
    elif mode == "distant":
        check_port_free("0.0.0.0", web_port, "--web-port")
        check_port_free("0.0.0.0", ws_port, "--ws-port")
    rr = import_rerun()

    dataset = load_dataset(repo_id, root, [episode_index])
    cameras, series = select_keys(dataset, keys)
    rec = _new_recording(rr, f"lerobot_{repo_id.replace('/', '_')}_episode_{episode_index}")
    if rrd_path is not None:
        rrd_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = rrd_path.with_name(f".{rrd_path.name}.tmp")
        rr.save(str(tmp), recording=rec)
    elif mode == "local":
        rr.spawn(recording=rec)
    elif hasattr(rr, "serve_grpc"):  # rerun >= 0.23
        uri = rr.serve_grpc(grpc_port=ws_port, recording=rec)
        rr.serve_web_viewer(web_port=web_port, open_browser=False, connect_to=uri)
    else:
        rr.serve_web(open_browser=False, web_port=web_port, ws_port=ws_port, recording=rec)

    n = log_episode(rr, rec, dataset, episode_index, cameras, series, jpeg_quality)
    print(f"Logged episode {episode_index} of {repo_id}: {n} frames, cameras {cameras}, series {series}.")
    if rrd_path is not None:
        if hasattr(rec, "flush"):  # rerun >= 0.23; older releases flush when disconnecting
            rec.flush()
        rr.disconnect(recording=rec)  # closes the file
        tmp.replace(rrd_path)
        print(f"Wrote {rrd_path} (open it with: rerun {rrd_path})")
    return rrd_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo-id", required=True, help="namespace/name of the dataset, e.g. lerobot/pusht")
    parser.add_argument("--episode-index", type=int, required=True, help="episode to show")
    parser.add_argument(
        "--root", default=None, help="dataset folder (default: $DATA_DIR/<repo_id>, cache, Hub)"
    )
    parser.add_argument("--mode", default="local", choices=["local", "distant"], help="where the viewer runs")
    parser.add_argument("--web-port", type=int, default=9090, help="distant mode: web viewer HTTP port")
    parser.add_argument("--ws-port", type=int, default=9087, help="distant mode: port the data is served on")
    parser.add_argument("--save", type=int, default=0, choices=[0, 1], help="1: write an .rrd file instead")
    parser.add_argument("--output-dir", default=None, help="folder for the .rrd file (with --save 1)")
    parser.add_argument("--keys", nargs="*", default=None, help="only these cameras/features (default all)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="camera frames are logged as JPEG")
    parser.add_argument("--force-override", type=int, default=0, choices=[0, 1], help="1: replace the .rrd")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        visualize_dataset(
            args.repo_id,
            args.episode_index,
            args.root,
            mode=args.mode,
            web_port=args.web_port,
            ws_port=args.ws_port,
            save=bool(args.save),
            output_dir=args.output_dir,
            keys=args.keys,
            jpeg_quality=args.jpeg_quality,
            force_override=bool(args.force_override),
        )
    except (DatasetError, PortInUseError, ModuleNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.save and args.mode == "distant":
        print(
            f"Serving: open http://<this host>:{args.web_port} in a browser, or run "
            f"`rerun rerun+http://<this host>:{args.ws_port}/proxy`. Ctrl-C to stop."
        )
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
