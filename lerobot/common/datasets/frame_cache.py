"""A disk cache of decoded video frames, so that training decodes each episode's video only once.

Random-access video decoding (seek to a keyframe, decode up to the target, convert to RGB) dominates the cost
of loading LeRobot samples. `DecodedFrameCache` decodes a whole segment of a video (a v2.x per-episode file,
or one episode's `[from_timestamp, to_timestamp)` span inside a shared v3.0 file) sequentially on first use and
stores the raw RGB frames; later reads are plain `os.pread` calls at computed offsets.

On-disk layout, per entry (`<key>` = hash of the video's absolute path, size, mtime and the segment bounds):
  - `<key>.frames`: uint8 frames in (N, C, H, W) order, C = 3 (RGB), no header. Channel-first is what
    `get_frames` returns, so a read is one `preadv` straight into the output tensor; storing (N, H, W, C) would
    need a strided transpose per frame, measured at ~1.4 ms vs ~0.2 ms per 640x480 frame.
  - `<key>.json`: shape, the source video, and the frames' *absolute* timestamps in seconds inside the video
    file (`frame.pts * time_base`, exactly what `decode_video_frames` matches queries against).
  - `<key>.lock`: the `filelock` that serialises the one-time decode across DataLoader worker processes; a reader
    that finds it held decodes its own frames directly meanwhile instead of waiting.
The sidecar is written after the frames file, both atomically, so its presence means the entry is complete.

Reads use `os.pread` rather than `mmap`: pages read through pread live in the OS page cache and are not
counted in the process's RSS, so many workers can share a hot cache without looking (or being killed as if
they were) memory hungry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from lerobot.common.datasets.errors import (
    CorruptFileError,
    DatasetError,
    MissingFileError,
    TimestampSyncError,
)
from lerobot.common.datasets.utils import atomic_path
from lerobot.common.datasets.video_decoding import (
    _as_query_array,
    check_tolerance,
    decode_video_frames,
    iter_video_frames,
    nearest_frame_indices,
)
from lerobot.common.datasets.video_utils import _open_input, _stream_fps, get_video_num_frames_and_duration

_FORMAT_VERSION = 1
_SUFFIXES = (".frames", ".json", ".lock")
Segment = tuple[float, float]
_HAS_PREADV = hasattr(os, "preadv")
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def default_frame_cache_dir() -> Path:
    """`$LEROBOT_FRAME_CACHE_DIR` if set, else `~/.cache/lerobot/decoded_frames`."""
    env = os.environ.get("LEROBOT_FRAME_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lerobot" / "decoded_frames"


@dataclass
class _Entry:
    fd: int
    timestamps: np.ndarray  # absolute seconds, increasing
    frame_shape: tuple[int, int, int]  # (C, H, W)
    path: Path  # the .frames file, for error messages
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    @property
    def frame_bytes(self) -> int:
        c, h, w = self.frame_shape
        return c * h * w


def _normalise_segment(segment: Sequence[float] | None) -> Segment | None:
    if segment is None:
        return None
    if len(segment) != 2:
        raise ValueError(f"segment must be (from_timestamp, to_timestamp), got {segment!r}.")
    start, end = float(segment[0]), float(segment[1])
    if not (np.isfinite(start) and np.isfinite(end)) or end <= start:
        raise ValueError(f"segment must satisfy from_timestamp < to_timestamp, got {segment!r}.")
    return start, end


class DecodedFrameCache:
    """Decode each video segment once, then serve frames from raw files with `os.pread`.

    `get_frames` returns exactly what `decode_video_frames` returns for the same queries (same frames, same
    bytes, same TimestampSyncError), as long as the queries fall inside the segment: queries are matched only
    against the segment's own frames, never against a neighbouring episode's.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None, *, max_open_entries: int = 256):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_frame_cache_dir()
        self.max_open_entries = max_open_entries
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    # DataLoader workers started with 'spawn' receive a pickled copy: send only the configuration.
    def __getstate__(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir, "max_open_entries": self.max_open_entries}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cache_dir = state["cache_dir"]
        self.max_open_entries = state["max_open_entries"]
        self._init_process_state()

    def _check_pid(self) -> None:
        # After fork the child holds copies of the parent's descriptors; pread needs no shared offset so they
        # would still work, but the child reopens its own so that closing/evicting never touches the parent's.
        if self._pid != os.getpid():
            for entry in self._entries.values():
                with contextlib.suppress(OSError):
                    entry.close()
            self._init_process_state()

    # ------------------------------------------------------------------------------------------- keys

    @staticmethod
    def entry_key(video_path: str | os.PathLike, segment: Sequence[float] | None = None) -> str:
        """Cache key of a (video, segment): changes whenever the video file is replaced or modified."""
        path = os.path.abspath(video_path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise MissingFileError(
                f"Video file {video_path} does not exist; download the dataset's videos again."
            ) from None
        seg = _normalise_segment(segment)
        seg_text = "full" if seg is None else f"{seg[0]:.6f}-{seg[1]:.6f}"
        raw = f"v{_FORMAT_VERSION}\0{path}\0{st.st_size}\0{st.st_mtime_ns}\0{seg_text}"
        return hashlib.sha256(raw.encode()).hexdigest()[:40]

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.cache_dir / key
        return base.with_suffix(".frames"), base.with_suffix(".json"), base.with_suffix(".lock")

    # ------------------------------------------------------------------------------------------ sizes

    @staticmethod
    def estimate_bytes(video_path: str | os.PathLike, segment: Sequence[float] | None = None) -> int:
        """Bytes the entry for (video, segment) will take on disk: H * W * 3 * n_frames."""
        seg = _normalise_segment(segment)
        container = _open_input(Path(video_path))
        try:
            stream = container.streams.video[0]
            h, w = stream.codec_context.height, stream.codec_context.width
            fps = _stream_fps(stream)
        finally:
            container.close()
        if seg is None:
            n_frames, _ = get_video_num_frames_and_duration(video_path)
        else:
            n_frames = round((seg[1] - seg[0]) * float(fps))
        return h * w * 3 * n_frames

    def size_bytes(self) -> int:
        """Bytes the cache currently occupies on disk (frames files and sidecars)."""
        if not self.cache_dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.cache_dir.iterdir() if p.suffix in (".frames", ".json"))

    def clear(self) -> None:
        """Close this process's descriptors and delete every cache entry (only files this class creates)."""
        with self._lock:
            for entry in self._entries.values():
                entry.close()
            self._entries.clear()
        if not self.cache_dir.is_dir():
            return
        for p in self.cache_dir.iterdir():
            stem = p.name.lstrip(".").split(".")[0]
            is_ours = len(stem) == 40 and all(c in "0123456789abcdef" for c in stem)
            if is_ours and (p.suffix in _SUFFIXES or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------- reading

    def get_frames(
        self,
        video_path: str | os.PathLike,
        timestamps: Sequence[float] | np.ndarray | torch.Tensor,
        tolerance_s: float,
        *,
        segment: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """Frames nearest to `timestamps` (absolute seconds in the file) as uint8 (N, 3, H, W), in query order."""
        queries = _as_query_array(timestamps)
        seg = _normalise_segment(segment)
        while True:
            entry = self._get_entry(Path(video_path), seg)
            if entry is None:
                # Another process (a DataLoader worker) is decoding this segment into the cache right now:
                # decode just these frames instead of idling until it is done (seconds for a long episode).
                return decode_video_frames(video_path, queries, tolerance_s)
            c, h, w = entry.frame_shape
            if len(queries) == 0:
                return torch.empty((0, c, h, w), dtype=torch.uint8)
            idx = nearest_frame_indices(entry.timestamps, queries)
            check_tolerance(video_path, queries, entry.timestamps[idx], tolerance_s)
            out = np.empty((len(queries), c, h, w), dtype=np.uint8)
            # Held while reading so that another thread cannot evict and close this descriptor mid-read (its
            # number could be reused for another file). Reads take well under a millisecond.
            with self._lock:
                if entry.closed:  # evicted between _get_entry and here: open it again
                    continue
                # Queries usually ask for consecutive frames: read each run with a single call.
                start = 0
                for stop in range(1, len(idx) + 1):
                    if stop == len(idx) or idx[stop] != idx[stop - 1] + 1:
                        self._read_into(entry, out[start:stop], int(idx[start]))
                        start = stop
            return torch.from_numpy(out)

    @staticmethod
    def _read_into(entry: _Entry, dest: np.ndarray, first_frame: int) -> None:
        want = dest.nbytes
        offset = first_frame * entry.frame_bytes
        view = memoryview(dest).cast("B")
        got = 0
        while got < want:
            if _HAS_PREADV:  # straight into the output buffer, no intermediate bytes object
                n = os.preadv(entry.fd, [view[got:]], offset + got)
            else:
                chunk = os.pread(entry.fd, want - got, offset + got)
                n = len(chunk)
                view[got : got + n] = chunk
            if n == 0:
                raise CorruptFileError(
                    f"Decoded-frame cache file {entry.path} is shorter than its sidecar says; "
                    "delete it (or call DecodedFrameCache.clear()) and it will be rebuilt."
                )
            got += n

    def _get_entry(self, video_path: Path, segment: Segment | None) -> _Entry | None:
        """The open entry of (video, segment), built first if needed; None while another process holds the
        build lock (it is building the entry)."""
        key = self.entry_key(video_path, segment)
        with self._lock:
            self._check_pid()
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = self._open_entry(key)
        if entry is None:
            if not self._build_entry(key, video_path, segment):
                return None
            entry = self._open_entry(key)
            if entry is None:
                raise CorruptFileError(
                    f"The decoded-frame cache entry {key} in {self.cache_dir} was not readable right after "
                    "being written; check that the directory is writable and not shared with another cleaner."
                )
        with self._lock:
            if key in self._entries:  # another thread won the race
                entry.close()
                return self._entries[key]
            self._entries[key] = entry
            while len(self._entries) > self.max_open_entries:
                _, old = self._entries.popitem(last=False)
                old.close()
            return entry

    def _open_entry(self, key: str) -> _Entry | None:
        """Load a complete entry, or None if it is absent or damaged (then it will be rebuilt)."""
        frames_path, meta_path, _ = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            shape = tuple(int(x) for x in meta["shape"])
            timestamps = np.asarray(meta["timestamps"], dtype=np.float64)
            fd = os.open(frames_path, os.O_RDONLY)
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if len(shape) != 4 or len(timestamps) != shape[0] or os.fstat(fd).st_size != int(np.prod(shape)):
            os.close(fd)
            return None
        return _Entry(fd=fd, timestamps=timestamps, frame_shape=shape[1:], path=frames_path)

    # --------------------------------------------------------------------------------------- building

    def _build_entry(self, key: str, video_path: Path, segment: Segment | None) -> bool:
        """Decode the segment once, guarded so that concurrent workers never decode it twice. Returns False,
        without waiting or building, when another process holds the lock (it is building the entry)."""
        frames_path, meta_path, lock_path = self._paths(key)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(lock_path), timeout=0):
                entry = self._open_entry(key)
                if entry is not None:  # built by another process since we looked
                    entry.close()
                    return True
                self._decode_segment(key, video_path, segment, frames_path, meta_path)
        except FileLockTimeout:
            return False
        return True

    def _decode_segment(
        self, key: str, video_path: Path, segment: Segment | None, frames_path: Path, meta_path: Path
    ) -> None:
        container = _open_input(video_path)
        try:
            fps = float(_stream_fps(container.streams.video[0]))
        finally:
            container.close()
        half = 0.5 / fps
        if segment is None:
            start, lo, hi = 0.0, -np.inf, np.inf
        else:
            # Frame i of the segment sits at from + i / fps; the frame at `to` belongs to the next segment.
            start, lo, hi = segment[0] - half, segment[0] - half, segment[1] - half
        timestamps: list[float] = []
        shape: tuple[int, ...] | None = None
        try:
            with atomic_path(frames_path) as tmp, open(tmp, "wb") as f:
                frames = iter_video_frames(
                    video_path, start_ts=max(0.0, start), end_ts=hi, channels_first=True
                )
                for ts, chw in frames:
                    if ts >= hi:
                        break
                    if ts <= lo:
                        continue
                    shape = shape or chw.shape
                    f.write(memoryview(chw).cast("B"))
                    timestamps.append(ts)
                if not timestamps:
                    raise TimestampSyncError(
                        f"Segment {segment} of {video_path} holds no frame (fps={fps}); check the episode's "
                        "from_timestamp/to_timestamp in the dataset metadata against the video's duration."
                    )
                f.flush()
        except OSError as e:
            if isinstance(e, DatasetError) or e.errno not in _DISK_ERRNOS:
                raise
            raise OSError(
                e.errno,
                f"Writing the decoded-frame cache {frames_path} failed ({e.strerror}). Free disk space, point "
                "LEROBOT_FRAME_CACHE_DIR at a larger disk, or disable the frame cache.",
            ) from e
        assert shape is not None
        meta = {
            "format_version": _FORMAT_VERSION,
            "video_path": os.path.abspath(video_path),
            "segment": list(segment) if segment is not None else None,
            "layout": "NCHW",
            "dtype": "uint8",
            "shape": [len(timestamps), *shape],
            "timestamps": timestamps,
        }
        with atomic_path(meta_path) as tmp:
            tmp.write_text(json.dumps(meta))
