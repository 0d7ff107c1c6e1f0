"""Encode, inspect and concatenate the mp4 videos that hold LeRobot camera streams (PyAV only).

LeRobot stores each camera as an mp4 where frame `i` of an episode sits at timestamp `from_timestamp + i / fps`.
Random-access decoding of these files (the hot path of data loading) lives in `video_decoding`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from lerobot.common.datasets.errors import (
    DatasetExistsError,
    MissingFileError,
    VideoDecodingError,
)
from lerobot.common.datasets.utils import atomic_path

# Encoder names we accept, mapped to the FFmpeg encoder that PyAV opens.
_ENCODERS = {"libsvtav1": "libsvtav1", "libx264": "libx264", "h264": "libx264"}
_REJECTED_ENCODERS = {"libx265", "hevc", "h265", "x265", "hevc_nvenc", "hevc_vaapi"}
_PNG_NAME = re.compile(r"^frame[-_](\d+)\.png$")


# --------------------------------------------------------------------------------------------------- encoding


def _iter_png_dir(directory: Path) -> Iterator[np.ndarray]:
    from PIL import Image

    numbered = []
    for p in directory.iterdir():
        m = _PNG_NAME.match(p.name)
        if m:
            numbered.append((int(m.group(1)), p))
    if not numbered:
        raise MissingFileError(
            f"No frames named 'frame-000000.png' or 'frame_000000.png' in {directory}; "
            "write the images there first or pass the frames as numpy arrays."
        )
    for _, p in sorted(numbered):
        with Image.open(p) as img:
            yield np.asarray(img.convert("RGB"))


def _validate_frame(frame: Any, index: int, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(
            f"Frame {index} has shape {arr.shape}; encode_video_frames expects HxWx3 RGB arrays."
        )
    if arr.dtype != np.uint8:
        raise ValueError(
            f"Frame {index} has dtype {arr.dtype}; expected uint8 in [0, 255] "
            "(convert float images with (img * 255).round().astype(np.uint8))."
        )
    if shape is not None and arr.shape != shape:
        raise ValueError(
            f"Frame {index} has shape {arr.shape} but frame 0 had {shape}; all frames must match."
        )
    return np.ascontiguousarray(arr)


def _encoder_options(
    encoder: str, crf: int, preset: int | str | None, fast_decode: int | None
) -> dict[str, str]:
    opts = {"crf": str(crf)}
    if encoder == "libsvtav1":
        if preset is not None:
            opts["preset"] = str(preset)
        if fast_decode is not None:
            opts["svtav1-params"] = f"fast-decode={int(fast_decode)}"
    else:
        # x264 already uses closed GOPs; B-frames are disabled via max_b_frames so that every frame's
        # decode order equals its presentation order and seeking to a keyframe is exact.
        if preset is not None:
            opts["preset"] = str(preset)
        if fast_decode:
            opts["tune"] = "fastdecode"
    return opts


def encode_video_frames(
    frames: Iterable[np.ndarray] | str | os.PathLike,
    video_path: str | os.PathLike,
    fps: int | float,
    *,
    vcodec: str = "libsvtav1",
    pix_fmt: str = "yuv420p",
    g: int = 2,
    crf: int = 30,
    preset: int | str | None = None,
    fast_decode: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Encode RGB frames into an mp4 where frame `i` has timestamp exactly `i / fps`.

    `frames` is an iterable of HxWx3 uint8 arrays or a directory of `frame-000000.png` images. A keyframe every
    `g` frames keeps random access cheap (the decoder never starts more than `g - 1` frames before a target).
    The file appears atomically: a crash leaves no half-written video behind.
    """
    video_path = Path(video_path)
    if vcodec in _REJECTED_ENCODERS:
        raise ValueError(
            f"vcodec={vcodec!r} is not supported: x265 uses open-GOP B-frames, so frames right after a keyframe "
            "can reference frames before it and exact random access (seek + decode) breaks. "
            "Use 'libsvtav1' (default) or 'libx264'."
        )
    if vcodec not in _ENCODERS:
        raise ValueError(f"Unknown vcodec {vcodec!r}; choose one of {sorted(_ENCODERS)}.")
    encoder = _ENCODERS[vcodec]
    if encoder == "libsvtav1" and not pix_fmt.startswith("yuv420p"):
        raise ValueError(
            f"libsvtav1 only encodes 4:2:0 video, not pix_fmt={pix_fmt!r}; use pix_fmt='yuv420p' or "
            "vcodec='libx264' for yuv444p."
        )
    if not isinstance(g, int) or g < 1:
        raise ValueError(f"g (keyframe interval) must be a positive integer, got {g!r}.")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}.")
    if video_path.exists() and not overwrite:
        raise DatasetExistsError(f"{video_path} already exists; pass overwrite=True to replace it.")

    if isinstance(frames, (str, os.PathLike)):
        frame_dir = Path(frames)
        if not frame_dir.is_dir():
            raise MissingFileError(f"Frame directory {frame_dir} does not exist (or is not a directory).")
        frames = _iter_png_dir(frame_dir)
    frame_iter = iter(frames)
    try:
        first = _validate_frame(next(frame_iter), 0, None)
    except StopIteration:
        raise ValueError(f"No frames given to encode into {video_path}.") from None
    height, width = first.shape[:2]
    chroma_subsampled = pix_fmt.startswith(("yuv420", "yuv422", "nv12", "nv21", "nv16"))
    if encoder == "libx264" and chroma_subsampled and (width % 2 or height % 2):
        raise ValueError(
            f"libx264 cannot encode {width}x{height} frames as {pix_fmt}: chroma subsampling needs even width and "
            "height. Crop or pad the images to even sizes, use pix_fmt='yuv444p', or use vcodec='libsvtav1'."
        )

    # SVT-AV1 prints its whole configuration at info level for every file; keep only errors unless asked.
    os.environ.setdefault("SVT_LOG", "1")
    rate = Fraction(fps).limit_denominator(100_000)
    options = _encoder_options(encoder, crf, preset, fast_decode)
    with atomic_path(video_path) as tmp:
        try:
            with av.open(str(tmp), mode="w", format="mp4") as container:
                stream = container.add_stream(encoder, rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
                stream.time_base = 1 / rate
                stream.codec_context.gop_size = g
                stream.codec_context.max_b_frames = 0
                stream.codec_context.options = options
                index = 0
                frame = first
                while True:
                    vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                    vf.pts = index
                    for packet in stream.encode(vf):
                        container.mux(packet)
                    index += 1
                    try:
                        frame = _validate_frame(next(frame_iter), index, first.shape)
                    except StopIteration:
                        break
                for packet in stream.encode(None):
                    container.mux(packet)
        except av.FFmpegError as e:
            raise RuntimeError(
                f"Encoding {video_path} with {encoder} (pix_fmt={pix_fmt}, options={options}, "
                f"{width}x{height}) failed: {e}"
            ) from e
    return video_path


# --------------------------------------------------------------------------------------------- inspection


def _open_input(video_path: Path) -> av.container.InputContainer:
    if not video_path.is_file():
        raise MissingFileError(
            f"Video file {video_path} does not exist; download the dataset's videos again "
            "(or check the path template in info.json)."
        )
    try:
        container = av.open(str(video_path))
    except av.FFmpegError as e:
        raise VideoDecodingError(
            f"PyAV cannot open {video_path} ({e}); the file is probably truncated or corrupt. "
            "Re-download it or re-encode it from the source frames."
        ) from e
    if not container.streams.video:
        container.close()
        raise VideoDecodingError(f"{video_path} holds no video stream; re-download or re-encode it.")
    return container


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise VideoDecodingError(f"Cannot determine the frame rate of {stream.container.name}.")
    return Fraction(rate)


def get_video_info(video_path: str | os.PathLike) -> dict[str, Any]:
    """Describe a video the way LeRobot's `info.json` stores it under each video feature's `info` key."""
    video_path = Path(video_path)
    container = _open_input(video_path)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        pix_fmt = cc.pix_fmt or (cc.format.name if cc.format else None)
        channels = len(av.VideoFormat(pix_fmt).components) if pix_fmt else 3
        return {
            "video.fps": float(_stream_fps(stream)),
            "video.height": cc.height,
            "video.width": cc.width,
            "video.channels": channels,
            "video.codec": cc.codec.canonical_name,
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "has_audio": len(container.streams.audio) > 0,
        }
    finally:
        container.close()


def get_video_num_frames_and_duration(video_path: str | os.PathLike) -> tuple[int, float]:
    """Return (number of frames, n_frames / fps): the span LeRobot records as `to_timestamp - from_timestamp`.

    Counts packets when the container does not store a frame count, which costs a demux but no decoding.
    """
    video_path = Path(video_path)
    container = _open_input(video_path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        n = stream.frames
        if not n:
            n = sum(1 for p in container.demux(stream) if p.pts is not None)
        return int(n), float(n / fps)
    finally:
        container.close()


# ------------------------------------------------------------------------------------------ concatenation


def concatenate_videos(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, overwrite: bool = False
) -> list[tuple[float, float]]:
    """Remux mp4 files (same codec, size, fps and encoder settings) back to back into one mp4, without re-encoding.

    Returns each input's (from_timestamp, to_timestamp) in the output, with to = from + n_frames / fps: frame
    `i` of input `k` is at `from_k + i / fps`, which is how format v3.0 addresses episodes in shared files.
    """
    inputs = [Path(p) for p in inputs]
    output = Path(output)
    if not inputs:
        raise ValueError("concatenate_videos needs at least one input video.")
    if output.exists() and not overwrite:
        raise DatasetExistsError(f"{output} already exists; pass overwrite=True to replace it.")
    if any(p.resolve() == output.resolve() for p in inputs if p.exists()):
        raise ValueError(f"The output {output} is also one of the inputs; write to a new path.")

    containers = [_open_input(p) for p in inputs]
    try:
        ref = containers[0].streams.video[0]
        ref_fps = _stream_fps(ref)
        ref_sig = _stream_signature(ref)
        for path, c in zip(inputs[1:], containers[1:]):
            sig = _stream_signature(c.streams.video[0])
            if sig != ref_sig:
                raise ValueError(
                    f"Cannot concatenate {path} after {inputs[0]} without re-encoding: "
                    f"{_describe_mismatch(ref_sig, sig)}. Re-encode both with the same encode_video_frames settings."
                )
        out_tb = Fraction(ref.time_base)
        spans: list[tuple[float, float]] = []
        frames_before = 0
        last_dts = None
        with atomic_path(output) as tmp, av.open(str(tmp), mode="w", format="mp4") as out:
            out_stream = out.add_stream_from_template(ref, opaque=True)
            out_stream.time_base = ref.time_base
            ticks_per_frame = max(1, round(1 / ref_fps / out_tb))
            for path, c in zip(inputs, containers):
                stream = c.streams.video[0]
                in_tb = Fraction(stream.time_base)
                offset = round(Fraction(frames_before) / ref_fps / out_tb)
                start = None
                n_frames = 0
                for packet in c.demux(stream):
                    if packet.pts is None or packet.dts is None:
                        continue
                    if start is None:
                        start = min(packet.pts, packet.dts)
                    pts = round((packet.pts - start) * in_tb / out_tb) + offset
                    dts = round((packet.dts - start) * in_tb / out_tb) + offset
                    if last_dts is not None and dts <= last_dts:
                        raise ValueError(
                            f"{path} has packets whose decode timestamps overlap the previous input (B-frames "
                            "or irregular timing); re-encode it with encode_video_frames before concatenating."
                        )
                    last_dts = dts
                    packet.pts, packet.dts = pts, dts
                    packet.duration = ticks_per_frame
                    packet.time_base = out_tb
                    packet.stream = out_stream
                    out.mux(packet)
                    n_frames += 1
                from_ts = float(offset * out_tb)
                spans.append((from_ts, from_ts + n_frames / float(ref_fps)))
                frames_before += n_frames
    finally:
        for c in containers:
            c.close()
    return spans


def _stream_signature(stream: av.video.stream.VideoStream) -> tuple:
    cc = stream.codec_context
    return (
        cc.codec.canonical_name,
        cc.width,
        cc.height,
        cc.pix_fmt,
        _stream_fps(stream),
        bytes(cc.extradata or b""),
    )


def _describe_mismatch(a: tuple, b: tuple) -> str:
    names = ("codec", "width", "height", "pix_fmt", "fps", "codec extradata (encoder settings)")
    diffs = [
        f"{n} {x!r} vs {y!r}" if n != names[-1] else n + " differs" for n, x, y in zip(names, a, b) if x != y
    ]
    return ", ".join(diffs)
