"""Random-access decoding of the mp4 videos that hold LeRobot camera streams (PyAV only).

LeRobot stores each camera as an mp4 where frame `i` of an episode sits at timestamp `from_timestamp + i / fps`.
Training reads a handful of frames at arbitrary timestamps for every sample, so decoding is the hot path of
data loading: `decode_video_frames` keeps demuxers open between calls, continues decoding forward instead of
seeking when the next request lies just ahead, and picks for every query the decoded frame whose presentation
timestamp (`frame.pts * time_base`) is nearest, refusing matches farther than `tolerance_s`.

Colours: frames are converted to RGB with PyAV's default swscale conversion, the same one the reference
implementation used (through torchvision's PyAV backend), so decoded pixels are bit-identical to it.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from lerobot.common.datasets.errors import (
    MissingFileError,
    TimestampSyncError,
    VideoDecodingError,
)
from lerobot.common.datasets.video_utils import _open_input, _stream_fps

# How many demuxers a process keeps open; a dataset usually reads one file per camera per episode at a time.
_MAX_OPEN_READERS = int(os.environ.get("LEROBOT_VIDEO_READER_CACHE_SIZE", "16"))
# Continue decoding forward (instead of seeking) when the next request is at most this many frames ahead and
# the file index cannot tell us where the keyframes are.
_FORWARD_WITHOUT_INDEX_FRAMES = 30
# Timestamps closer than this are the same instant (float rounding of i / fps); far below any frame interval.
_SEEK_SLACK_S = Fraction(1, 1_000_000)


# ------------------------------------------------------------------------------------ timestamp matching


def nearest_frame_indices(frame_timestamps: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the frame nearest to each query in sorted `frame_timestamps`; ties go to the earlier frame.

    The streaming matcher in `decode_video_frames` applies exactly the same rule, so the decoded-frame cache
    (which matches against a stored timestamp table) returns the very same frames.
    """
    ts = np.asarray(frame_timestamps, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    right = np.minimum(np.searchsorted(ts, q, side="left"), len(ts) - 1)
    left = np.maximum(right - 1, 0)
    take_right = (ts[right] - q) < (q - ts[left])
    # When the query is before the first frame, left == right == 0 and either choice is the same frame.
    return np.where(take_right | (right == 0), right, left)


def check_tolerance(
    video_path: str | os.PathLike, queries: np.ndarray, found: np.ndarray, tolerance_s: float
) -> None:
    """Raise TimestampSyncError if any query was matched to a frame farther than `tolerance_s` away."""
    queries = np.asarray(queries, dtype=np.float64)
    found = np.asarray(found, dtype=np.float64)
    bad = np.abs(found - queries) > tolerance_s
    if bad.any():
        q_bad = [round(float(x), 6) for x in queries[bad][:10]]
        f_bad = [round(float(x), 6) for x in found[bad][:10]]
        more = f" (and {int(bad.sum()) - 10} more)" if bad.sum() > 10 else ""
        raise TimestampSyncError(
            f"In {video_path}, no frame lies within tolerance_s={tolerance_s} of the requested timestamps "
            f"{q_bad}{more}; the nearest frames are at {f_bad}. The video may have dropped frames or be "
            "re-encoded at another fps, or the timestamps are outside the video; pass a larger tolerance_s or "
            "re-encode the video from the source frames."
        )


def _as_query_array(timestamps: Any) -> np.ndarray:
    if isinstance(timestamps, torch.Tensor):
        timestamps = timestamps.detach().cpu().double().numpy()
    q = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if not np.isfinite(q).all():
        raise ValueError(f"Timestamps must be finite numbers, got {q.tolist()}.")
    return q


# ------------------------------------------------------------------------------------------------ decoding


def decoder_thread_count(width: int, height: int) -> int:
    """How many threads a decoder should use: 0 lets FFmpeg pick, 1 disables threading.

    Small frames decode faster single-threaded (handing work to threads costs more than it saves), and inside
    a DataLoader worker the workers themselves already use the cores. `LEROBOT_VIDEO_DECODE_THREADS` overrides.
    """
    env = os.environ.get("LEROBOT_VIDEO_DECODE_THREADS")
    if env:
        return max(0, int(env))
    if width * height <= 256 * 256:
        return 1
    if torch.utils.data.get_worker_info() is not None:
        return 1
    return 0


def configure_decoder(stream: av.video.stream.VideoStream, *, sequential: bool = False) -> None:
    """Apply the threading policy of `decoder_thread_count` to a stream before its first decode.

    For random access (`sequential=False`) dav1d is limited to one frame in flight: with frame pipelining it
    consumes several packets past the target before returning anything, work that the next seek throws away.
    Measured on a 640x480 AV1 file: ~200 random frames/s with the limit vs ~140 without.
    """
    cc = stream.codec_context
    threads = decoder_thread_count(cc.width, cc.height)
    cc.thread_count = threads
    cc.thread_type = "AUTO" if threads != 1 else "SLICE"
    if not sequential and cc.codec.name == "libdav1d":
        cc.options = {**cc.options, "max_frame_delay": "1"}


def frame_to_rgb(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB with PyAV's default conversion (the one the reference implementation used).

    Pass a long-lived `reformatter`: it keeps its swscale context between frames, which makes the conversion
    several times faster than `frame.to_ndarray(format="rgb24")` (that builds a new context on every call) while
    producing identical pixels.
    """
    if reformatter is None:
        return frame.to_ndarray(format="rgb24")
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def frame_to_rgb_planes(
    frame: av.VideoFrame, reformatter: VideoReformatter, out: np.ndarray | None = None
) -> np.ndarray:
    """3xHxW uint8 RGB (into `out` if given): `frame_to_rgb` channel-first, converted by swscale to planar RGB (its
    GBR planes) instead of packed RGB then transposed, 0.25-0.4 ms against 0.6-0.7 ms for a 640x480 frame.
    swscale's planar and packed outputs share its conversion; readers still check them equal on the first frame
    of each file (`_VideoReader.to_chw`)."""
    planar = reformatter.reformat(frame, format="gbrp")
    height, width = planar.height, planar.width
    out = np.empty((3, height, width), dtype=np.uint8) if out is None else out
    for channel, plane in zip(out, (planar.planes[2], planar.planes[0], planar.planes[1])):  # R, G, B
        channel[...] = np.frombuffer(plane, dtype=np.uint8).reshape(height, plane.line_size)[:, :width]
    return out


class _VideoReader:
    """An open demuxer + decoder over one file that remembers where it stopped decoding."""

    def __init__(self, path: Path, signature: tuple[int, int], *, sequential: bool = False):
        self.path = path
        self.signature = signature
        self.lock = threading.Lock()
        self.closed = False
        self.container = _open_input(path)
        self.stream = self.container.streams.video[0]
        configure_decoder(self.stream, sequential=sequential)
        self.reformatter = VideoReformatter()
        self.time_base = Fraction(self.stream.time_base)
        self.fps = _stream_fps(self.stream)
        try:
            entries = self.stream.index_entries
            keyframes = [e.timestamp for e in entries if e.is_keyframe and not e.is_discard]
        except (AttributeError, av.FFmpegError):
            keyframes = []
        # Keyframe times from the container index (decode timestamps; equal to presentation ones without
        # B-frames). Only used to decide between seeking and decoding forward, never for correctness.
        self.keyframe_ts = np.sort(np.array(keyframes, dtype=np.float64) * float(self.time_base))
        self._frames: Iterator[av.VideoFrame] | None = None
        self._last: tuple[float, av.VideoFrame] | None = None  # last frame pulled from the decoder
        # Whether swscale's planar RGB equals its packed RGB for this file: checked on the first frame.
        self.planar: bool | None = None

    def to_chw(self, frame: av.VideoFrame, out: np.ndarray | None = None) -> np.ndarray:
        """3xHxW uint8 RGB, pixels identical to `frame_to_rgb` (the reference's conversion), into `out` if given:
        swscale's planar output once the first frame showed it equal to the packed one, else packed then
        transposed."""
        if self.planar is not False:
            chw = frame_to_rgb_planes(frame, self.reformatter, out)
            if self.planar is None:
                self.planar = bool(np.array_equal(chw, frame_to_rgb(frame).transpose(2, 0, 1)))
            if self.planar:
                return chw
        packed = frame_to_rgb(frame, self.reformatter).transpose(2, 0, 1)
        if out is None:
            return np.ascontiguousarray(packed)
        out[...] = packed
        return out

    def close(self) -> None:
        """Close the demuxer; the caller must hold `self.lock` (or be the only user)."""
        if not self.closed:
            self.closed = True
            self._frames = None
            self._last = None
            self.container.close()

    def _decode_iter(self) -> Iterator[av.VideoFrame]:
        for packet in self.container.demux(self.stream):
            yield from packet.decode()

    def _seek(self, ts: float) -> None:
        # `i / fps` computed in floating point can land a hair before frame i's exact time; without the slack
        # the seek would start at the previous keyframe and decode up to g extra frames.
        target = math.floor((Fraction(ts) + _SEEK_SLACK_S) / self.time_base) if ts > 0 else 0
        self.container.seek(max(0, target), stream=self.stream, backward=True, any_frame=False)
        self._frames = self._decode_iter()
        self._last = None

    def _seek_before(self, tmin: float) -> tuple[float, av.VideoFrame] | None:
        """Seek so that the first decoded frame is at or before `tmin` (or is the first frame of the file).

        The demuxer seeks by decode timestamp; with B-frames the keyframe it lands on can be presented after
        `tmin`, in which case frames just before `tmin` would be missed, so step back further and retry.
        """
        back = 0.0
        while True:
            target = tmin - back
            self._seek(target)
            first = self._next(None)
            if first is None or first[0] <= tmin + _SEEK_SLACK_S or target <= 0:
                return first
            back = max(2 * back, 0.5)

    def _can_continue(self, tmin: float) -> bool:
        if self._frames is None or self._last is None:
            return False
        last_ts = self._last[0]
        if last_ts > tmin + float(_SEEK_SLACK_S):
            return False  # frames between the keyframe and `last_ts` could be nearer; they are gone
        if (tmin - last_ts) * self.fps <= 2:
            return True
        if len(self.keyframe_ts) == 0:
            return (tmin - last_ts) * self.fps <= _FORWARD_WITHOUT_INDEX_FRAMES
        # Continue when no keyframe lies between where we stopped and where we must start.
        i = np.searchsorted(self.keyframe_ts, tmin + float(_SEEK_SLACK_S), side="right") - 1
        return i < 0 or self.keyframe_ts[i] <= last_ts

    def _next(self, prev_ts: float | None) -> tuple[float, av.VideoFrame] | None:
        assert self._frames is not None
        for frame in self._frames:
            if frame.pts is None:
                if prev_ts is None:
                    continue
                ts = prev_ts + float(1 / self.fps)
            else:
                ts = float(frame.pts * self.time_base)
            return ts, frame
        self._frames = None  # end of stream; keep `_last` so later requests past the end need no seek
        return None

    def iter_frames(self, start_ts: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """(timestamp, frame) in presentation order, from the keyframe at or before `start_ts` to the end."""
        cur = self._seek_before(start_ts)
        while cur is not None:
            yield cur
            cur = self._next(cur[0])

    def decode(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3, H, W) uint8 RGB frames nearest to each query (in query order) and their timestamps."""
        order = np.argsort(queries, kind="stable")
        tmin = float(queries[order[0]])
        eof_kept = self._frames is None and self._last is not None and self._last[0] <= tmin
        if not eof_kept and not self._can_continue(tmin):
            prev = self._seek_before(tmin)
            if prev is None:
                raise VideoDecodingError(
                    f"{self.path} yielded no frame at or after {tmin:.6f}s; the file is probably truncated. "
                    "Re-download it or re-encode it from the source frames."
                )
        else:
            prev = self._last
        assert prev is not None

        chosen: list[tuple[float, av.VideoFrame]] = [prev] * len(queries)
        j = 0
        cur = prev
        while j < len(order):
            q = float(queries[order[j]])
            if q <= cur[0] and cur is prev:
                chosen[order[j]] = cur  # at or before the first available frame: it is the nearest
                j += 1
                continue
            nxt = self._next(cur[0]) if self._frames is not None else None
            if nxt is None:  # end of stream: the last frame is the nearest to everything left
                for k in order[j:]:
                    chosen[k] = cur
                break
            prev, cur = cur, nxt
            while j < len(order) and float(queries[order[j]]) <= cur[0]:
                q = float(queries[order[j]])
                chosen[order[j]] = cur if (cur[0] - q) < (q - prev[0]) else prev
                j += 1
        self._last = cur

        frame = chosen[0][1]
        images = np.empty((len(chosen), 3, frame.height, frame.width), dtype=np.uint8)
        first: dict[int, int] = {}  # a frame chosen for several queries is converted once
        for i, (_, frame) in enumerate(chosen):
            j = first.setdefault(id(frame), i)
            if j == i:
                self.to_chw(frame, images[i])
            else:
                images[i] = images[j]
        return images, np.array([ts for ts, _ in chosen], dtype=np.float64)


def _stat_video(path: Path) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise MissingFileError(
            f"Video file {path} does not exist; download the dataset's videos again "
            "(or check the path template in info.json)."
        ) from None


class _ReaderCache:
    """Per-process LRU of open readers, dropped wholesale when the process id changes (after a fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.readers: OrderedDict[str, _VideoReader] = OrderedDict()
        self.lock = threading.Lock()
        # Readers inherited through fork are never closed: freeing a decoder whose worker threads did not
        # survive the fork can hang, and closing would disturb the parent's file offsets. We leak them.
        self._orphans: list[_VideoReader] = []

    def get(self, path: Path) -> _VideoReader:
        key = os.path.abspath(path)
        st = _stat_video(path)
        signature = (st.st_mtime_ns, st.st_size)
        evicted: list[_VideoReader] = []
        with self.lock:
            self._forget_if_forked()
            reader = self.readers.get(key)
            if reader is not None and reader.signature == signature:
                self.readers.move_to_end(key)
                return reader
            if reader is not None:  # the file was rewritten since we opened it
                evicted.append(self.readers.pop(key))
            reader = _VideoReader(Path(path), signature)
            self.readers[key] = reader
            while len(self.readers) > _MAX_OPEN_READERS:
                evicted.append(self.readers.popitem(last=False)[1])
        # Close outside the cache lock, each under its own lock, so that a thread still decoding with an
        # evicted reader finishes first (and notices `closed` on its next call).
        for old in evicted:
            with old.lock:
                old.close()
        return reader

    def drop(self, path: Path, reader: _VideoReader) -> None:
        """Forget `reader` (after a decoding error) and close it; the caller holds `reader.lock`."""
        with self.lock:
            key = os.path.abspath(path)
            if self.readers.get(key) is reader:
                del self.readers[key]
        reader.close()

    def clear(self) -> None:
        with self.lock:
            self._forget_if_forked()
            readers, self.readers = list(self.readers.values()), OrderedDict()
        for reader in readers:
            with reader.lock:
                reader.close()

    def _forget_if_forked(self) -> None:
        if self.pid != os.getpid():
            self._orphans.extend(self.readers.values())
            self.readers = OrderedDict()
            self.pid = os.getpid()


_READERS = _ReaderCache()


def close_video_readers() -> None:
    """Close every cached demuxer of this process (e.g. before deleting or rewriting video files)."""
    _READERS.clear()


def decode_video_frames(
    video_path: str | os.PathLike, timestamps: Sequence[float] | np.ndarray | torch.Tensor, tolerance_s: float
) -> torch.Tensor:
    """Decode the frames nearest to `timestamps` (seconds) as a uint8 tensor of shape (N, 3, H, W).

    Results follow the order of `timestamps` (duplicates allowed). Raises TimestampSyncError when a query has
    no frame within `tolerance_s`, MissingFileError for an absent file and VideoDecodingError for a file that
    cannot be decoded.
    """
    video_path = Path(video_path)
    queries = _as_query_array(timestamps)
    while True:
        reader = _READERS.get(video_path)
        with reader.lock:
            if reader.closed:  # evicted by another thread between get() and lock; fetch a fresh one
                continue
            if len(queries) == 0:
                cc = reader.stream.codec_context
                return torch.empty((0, 3, cc.height, cc.width), dtype=torch.uint8)
            try:
                images, found = reader.decode(queries)
            except av.FFmpegError as e:
                _READERS.drop(video_path, reader)
                raise VideoDecodingError(
                    f"Decoding {video_path} failed ({e}); the file is probably corrupt. "
                    "Re-download it or re-encode it from the source frames."
                ) from e
            break
    check_tolerance(video_path, queries, found, tolerance_s)
    return torch.from_numpy(images)


def iter_video_frames(
    video_path: str | os.PathLike,
    start_ts: float = 0.0,
    end_ts: float | None = None,
    channels_first: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode sequentially (one seek, then no more) and yield (timestamp, HxWx3 uint8 RGB) per frame, or
    3xHxW with `channels_first`.

    Starts at the keyframe at or before `start_ts` (so the first frames may precede it) and stops after the
    first frame at or past `end_ts`. Pixels are identical to `decode_video_frames`'s. Uses its own demuxer, with
    decoder threading tuned for throughput rather than for random access.
    """
    video_path = Path(video_path)
    st = _stat_video(video_path)
    reader = _VideoReader(video_path, (st.st_mtime_ns, st.st_size), sequential=True)
    try:
        for ts, frame in reader.iter_frames(start_ts):
            if channels_first:
                yield ts, reader.to_chw(frame)
            else:
                yield ts, frame_to_rgb(frame, reformatter=reader.reformatter)
            if end_ts is not None and ts >= end_ts:
                break
    except av.FFmpegError as e:
        raise VideoDecodingError(
            f"Decoding {video_path} failed ({e}); the file is probably corrupt. "
            "Re-download it or re-encode it from the source frames."
        ) from e
    finally:
        reader.close()
