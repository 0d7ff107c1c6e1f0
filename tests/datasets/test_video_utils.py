"""Tests of video encoding, inspection, random-access decoding and remuxing (PyAV only, tiny videos)."""

from __future__ import annotations

import glob
import os
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.frame import PictureType

from lerobot.common.datasets import video_decoding
from lerobot.common.datasets.errors import (
    DatasetExistsError,
    MissingFileError,
    TimestampSyncError,
    VideoDecodingError,
)
from lerobot.common.datasets.video_decoding import close_video_readers, decode_video_frames, iter_video_frames
from lerobot.common.datasets.video_utils import (
    concatenate_videos,
    encode_video_frames,
    get_video_info,
    get_video_num_frames_and_duration,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
V13 = DATA / "lerobot_v1.3"
G1_VIDEO = DATA / "g1_lerobot_v2.1/videos/chunk-000/observation.images.cam_high/episode_000029.mp4"
CODECS = ["libsvtav1", "libx264"]
TOL = 1e-4


# ---------------------------------------------------------------------------------------------- helpers


def coded_frame(i: int, h: int = 64, w: int = 64) -> np.ndarray:
    """A frame whose 4x4 grid of flat blocks spells `i` in binary, robust to lossy compression."""
    frame = np.empty((h, w, 3), dtype=np.uint8)
    bh, bw = h // 4, w // 4
    for b in range(16):
        r, c = divmod(b, 4)
        frame[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 220 if (i >> b) & 1 else 30
    return frame


def read_code(chw: torch.Tensor) -> int:
    img = chw.float().mean(0).numpy()
    h, w = img.shape
    bh, bw = h // 4, w // 4
    value = 0
    for b in range(16):
        r, c = divmod(b, 4)
        block = img[r * bh + 2 : (r + 1) * bh - 2, c * bw + 2 : (c + 1) * bw - 2]
        value |= int(block.mean() > 125) << b
    return value


def smooth_frame(i: int, h: int = 64, w: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack(
        [xx * 200 / w + 20, yy * 200 / h + 20, 128 + 60 * np.sin((xx + yy) / 12 + i / 3)], axis=-1
    ).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float(10 * np.log10(255**2 / mse))


@pytest.fixture(autouse=True)
def _fresh_readers():
    close_video_readers()
    yield
    close_video_readers()


@pytest.fixture(scope="module")
def coded_videos(tmp_path_factory) -> dict[str, Path]:
    """30 coded frames at 15 fps, keyframe every 2, for each codec."""
    root = tmp_path_factory.mktemp("coded")
    return {
        codec: encode_video_frames(
            (coded_frame(i) for i in range(30)), root / f"{codec}.mp4", 15, vcodec=codec
        )
        for codec in CODECS
    }


# --------------------------------------------------------------------------------------------- encoding


def test_x264_yuv444_lossless_roundtrip_is_within_2_levels(tmp_path):
    # Measured: max |error| = 2 (the RGB -> limited-range YUV -> RGB rounding), PSNR ~52 dB.
    frames = [smooth_frame(i) for i in range(4)]
    path = encode_video_frames(frames, tmp_path / "v.mp4", 10, vcodec="libx264", pix_fmt="yuv444p", crf=0)
    out = decode_video_frames(path, [i / 10 for i in range(4)], TOL).permute(0, 2, 3, 1).numpy()
    err = np.abs(out.astype(int) - np.stack(frames).astype(int)).max()
    assert err <= 2
    assert psnr(out, np.stack(frames)) > 48


def test_av1_crf30_roundtrip_psnr(tmp_path):
    frames = [smooth_frame(i) for i in range(4)]
    path = encode_video_frames(frames, tmp_path / "v.mp4", 10)  # libsvtav1, yuv420p, crf 30
    out = decode_video_frames(path, [i / 10 for i in range(4)], TOL).permute(0, 2, 3, 1).numpy()
    assert out.dtype == np.uint8
    assert psnr(out, np.stack(frames)) > 30  # measured ~39 dB


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("g", [2, 5])
def test_keyframe_interval_and_exact_timestamps(tmp_path, codec, g):
    path = encode_video_frames([coded_frame(i) for i in range(12)], tmp_path / "v.mp4", 30, vcodec=codec, g=g)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = list(c.decode(s))
        assert all(f.pict_type != PictureType.B for f in frames)
        assert [f.pts * s.time_base for f in frames] == [Fraction(i, 30) for i in range(12)]
        for i, f in enumerate(frames):
            if i % g == 0:
                assert f.key_frame, f"frame {i} should be a keyframe (g={g})"
        assert c.format.name.startswith("mov,mp4")


def test_png_directory_input(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(5):
        Image.fromarray(coded_frame(i)).save(tmp_path / "imgs" / f"frame_{i:06d}.png")
    path = encode_video_frames(tmp_path / "imgs", tmp_path / "v.mp4", 10, vcodec="libx264")
    out = decode_video_frames(path, [i / 10 for i in range(5)], TOL)
    assert [read_code(f) for f in out] == list(range(5))
    with pytest.raises(MissingFileError, match="frame-000000.png"):
        encode_video_frames(tmp_path, tmp_path / "w.mp4", 10)


def test_overwrite_refused_then_allowed(tmp_path):
    path = encode_video_frames([coded_frame(1)] * 2, tmp_path / "v.mp4", 10, vcodec="libx264")
    before = path.read_bytes()
    with pytest.raises(DatasetExistsError, match="overwrite=True"):
        encode_video_frames([coded_frame(2)] * 2, path, 10, vcodec="libx264")
    assert path.read_bytes() == before
    encode_video_frames([coded_frame(2)] * 2, path, 10, vcodec="libx264", overwrite=True)
    assert read_code(decode_video_frames(path, [0.0], TOL)[0]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temp file left behind


def test_encode_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="open-GOP"):
        encode_video_frames([coded_frame(0)], tmp_path / "a.mp4", 10, vcodec="libx265")
    with pytest.raises(ValueError, match="Unknown vcodec"):
        encode_video_frames([coded_frame(0)], tmp_path / "a.mp4", 10, vcodec="mpeg4")
    with pytest.raises(ValueError, match="4:2:0"):
        encode_video_frames([coded_frame(0)], tmp_path / "a.mp4", 10, pix_fmt="yuv444p")
    with pytest.raises(ValueError, match="uint8"):
        encode_video_frames([coded_frame(0).astype(np.float32)], tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="all frames must match"):
        encode_video_frames([coded_frame(0), coded_frame(0, 32, 32)], tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="No frames"):
        encode_video_frames([], tmp_path / "a.mp4", 10)
    with pytest.raises(ValueError, match="even width and height"):
        encode_video_frames([np.zeros((33, 45, 3), np.uint8)], tmp_path / "a.mp4", 10, vcodec="h264")
    assert not list(tmp_path.iterdir())


def test_odd_size_av1_and_x264_yuv444(tmp_path):
    frame = np.zeros((33, 45, 3), np.uint8)
    frame[:, :20] = 200
    for codec, pix in [("libsvtav1", "yuv420p"), ("libx264", "yuv444p")]:
        path = encode_video_frames([frame] * 3, tmp_path / f"{codec}.mp4", 10, vcodec=codec, pix_fmt=pix)
        info = get_video_info(path)
        assert (info["video.height"], info["video.width"]) == (33, 45)
        out = decode_video_frames(path, [0.1], TOL)
        assert out.shape == (1, 3, 33, 45)
        assert np.abs(out[0].permute(1, 2, 0).numpy().astype(int) - frame).mean() < 3


# ------------------------------------------------------------------------------------------- inspection


def test_get_video_info_synthetic(tmp_path):
    path = encode_video_frames([coded_frame(i, 48, 80) for i in range(4)], tmp_path / "v.mp4", 15)
    assert get_video_info(path) == {
        "video.fps": 15.0,
        "video.height": 48,
        "video.width": 80,
        "video.channels": 3,
        "video.codec": "av1",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "has_audio": False,
    }
    assert get_video_num_frames_and_duration(path) == (4, 4 / 15)
    x264 = encode_video_frames([coded_frame(0)] * 2, tmp_path / "h.mp4", 10, vcodec="h264", pix_fmt="yuv444p")
    info = get_video_info(x264)
    assert (info["video.codec"], info["video.pix_fmt"]) == ("h264", "yuv444p")


@pytest.mark.skipif(not V13.is_dir() or not G1_VIDEO.is_file(), reason="shared real data absent")
def test_get_video_info_real():
    pusht = get_video_info(V13 / "datasets/pusht/videos/observation.image_episode_000000.mp4")
    assert pusht["video.fps"] == 10.0
    assert (pusht["video.height"], pusht["video.width"], pusht["video.channels"]) == (96, 96, 3)
    assert (pusht["video.codec"], pusht["video.pix_fmt"], pusht["has_audio"]) == ("h264", "yuv444p", False)
    g1 = get_video_info(G1_VIDEO)
    assert (g1["video.codec"], g1["video.pix_fmt"], g1["video.fps"]) == ("av1", "yuv420p", 30.0)
    assert (g1["video.height"], g1["video.width"]) == (480, 640)
    assert get_video_num_frames_and_duration(G1_VIDEO)[0] == 221


# --------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("codec", CODECS)
def test_random_access_returns_the_right_frames(coded_videos, codec):
    path = coded_videos[codec]
    rng = random.Random(0)
    for _ in range(25):
        idx = [rng.randrange(30) for _ in range(rng.choice([1, 2, 3, 5]))]
        jitter = [rng.uniform(-0.3, 0.3) / 15 for _ in idx]  # within half a frame: still the same frame
        out = decode_video_frames(path, [i / 15 + j for i, j in zip(idx, jitter)], tolerance_s=0.35 / 15)
        assert out.shape == (len(idx), 3, 64, 64) and out.dtype == torch.uint8
        assert [read_code(f) for f in out] == idx


@pytest.mark.parametrize("codec", CODECS)
def test_forward_continuation_matches_fresh_decode(coded_videos, codec):
    path = coded_videos[codec]
    sequential = [decode_video_frames(path, [i / 15, (i + 1) / 15], TOL) for i in range(0, 28, 3)]
    for k, i in enumerate(range(0, 28, 3)):
        close_video_readers()
        assert torch.equal(sequential[k], decode_video_frames(path, [i / 15, (i + 1) / 15], TOL))
    # Backwards requests after forward ones must seek again, not reuse stale state.
    assert read_code(decode_video_frames(path, [29 / 15], TOL)[0]) == 29
    assert read_code(decode_video_frames(path, [3 / 15], TOL)[0]) == 3
    assert read_code(decode_video_frames(path, [29 / 15], TOL)[0]) == 29
    # Past the end (drains the decoder), then back to the start: the reader must recover with a seek.
    assert read_code(decode_video_frames(path, [2.5], tolerance_s=1.0)[0]) == 29
    assert read_code(decode_video_frames(path, [2.6], tolerance_s=1.0)[0]) == 29
    assert read_code(decode_video_frames(path, [0.0, 1 / 15], TOL)[1]) == 1


def test_tolerance_error_names_everything(coded_videos):
    path = coded_videos["libx264"]
    with pytest.raises(TimestampSyncError) as err:
        decode_video_frames(path, [0.0, 0.5 / 15 + 0.001], tolerance_s=0.01)
    msg = str(err.value)
    assert str(path) in msg and "0.034333" in msg and "0.0" in msg and "tolerance_s=0.01" in msg
    assert "larger tolerance_s" in msg and "re-encode" in msg
    with pytest.raises(TimestampSyncError, match="1.933333"):  # the last frame is the nearest to t=5s
        decode_video_frames(path, [5.0], tolerance_s=0.01)


def test_duplicates_unsorted_and_empty(coded_videos):
    path = coded_videos["libsvtav1"]
    out = decode_video_frames(path, torch.tensor([0.6, 0.0, 0.6, 0.2]), TOL)
    assert [read_code(f) for f in out] == [9, 0, 9, 3]
    assert torch.equal(out[0], out[2])
    assert decode_video_frames(path, [], TOL).shape == (0, 3, 64, 64)


def test_missing_and_corrupt_files(tmp_path, coded_videos):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MissingFileError, match="nope.mp4"):
        decode_video_frames(missing, [0.0], TOL)
    data = coded_videos["libx264"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodingError, match="truncated.mp4.*(Re-download|re-encode)"):
        decode_video_frames(truncated, [0.0], TOL)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodingError, match="garbage.mp4"):
        get_video_info(garbage)


def test_reader_cache_sees_rewritten_file_and_fork(tmp_path):
    path = encode_video_frames([coded_frame(7)] * 3, tmp_path / "v.mp4", 10, vcodec="libx264")
    assert read_code(decode_video_frames(path, [0.0], TOL)[0]) == 7
    encode_video_frames([coded_frame(8)] * 5, path, 10, vcodec="libx264", overwrite=True)
    assert read_code(decode_video_frames(path, [0.0], TOL)[0]) == 8
    # Simulate running in a forked child: inherited readers must not be reused.
    cache = video_decoding._READERS
    old = next(iter(cache.readers.values()))
    cache.pid = -1
    assert read_code(decode_video_frames(path, [0.1], TOL)[0]) == 8
    assert next(iter(cache.readers.values())) is not old and old in cache._orphans
    cache._orphans.remove(old)
    old.close()


def test_bframe_video_from_elsewhere(tmp_path):
    """x264 with B-frames and a long GOP (typical third-party file): seeking must still be exact."""
    path = tmp_path / "b.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.codec_context.gop_size = 12
        s.codec_context.options = {"crf": "18", "bf": "3"}
        for i in range(40):
            f = av.VideoFrame.from_ndarray(coded_frame(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        ts = [float(f.pts * stream.time_base) for f in frames]
        assert any(f.pict_type == PictureType.B for f in frames)
    rng = random.Random(1)
    for _ in range(15):
        idx = sorted(rng.randrange(40) for _ in range(2))
        out = decode_video_frames(path, [ts[i] for i in idx], TOL)
        assert [read_code(f) for f in out] == idx


def test_iter_video_frames_matches_decode(coded_videos):
    path = coded_videos["libsvtav1"]
    got = list(iter_video_frames(path, start_ts=10 / 15, end_ts=14 / 15))
    assert [round(t * 15) for t, _ in got] == list(range(10, 15))
    direct = decode_video_frames(path, [t for t, _ in got], TOL)
    assert all(np.array_equal(img, d.permute(1, 2, 0).numpy()) for (_, img), d in zip(got, direct))


@pytest.mark.parametrize("codec", CODECS)
def test_iter_video_frames_channels_first_equals_the_packed_frames(coded_videos, codec):
    # Channel-first frames come from swscale's planar RGB output; they must equal the packed ones transposed.
    path = coded_videos[codec]
    packed = list(iter_video_frames(path))
    planar = list(iter_video_frames(path, channels_first=True))
    assert [t for t, _ in planar] == [t for t, _ in packed]
    for (_, hwc), (_, chw) in zip(packed, planar):
        assert chw.shape == (3, *hwc.shape[:2]) and chw.flags["C_CONTIGUOUS"]
        assert np.array_equal(chw, hwc.transpose(2, 0, 1))


def test_iter_video_frames_falls_back_when_planar_output_differs(coded_videos, monkeypatch):
    from lerobot.common.datasets import video_decoding

    planes = video_decoding.frame_to_rgb_planes
    calls = []

    def off_by_one(frame, reformatter, out=None):
        calls.append(1)
        return planes(frame, reformatter, out) ^ np.uint8(1)

    monkeypatch.setattr(video_decoding, "frame_to_rgb_planes", off_by_one)
    path = coded_videos["libx264"]
    packed = list(iter_video_frames(path))
    planar = list(iter_video_frames(path, channels_first=True))
    assert len(calls) == 1  # checked on the first frame only, then the packed conversion throughout
    assert all(np.array_equal(chw, hwc.transpose(2, 0, 1)) for (_, hwc), (_, chw) in zip(packed, planar))
    video_decoding.close_video_readers()  # random access too: a fresh reader checks its first frame
    decoded = decode_video_frames(path, [t for t, _ in packed[:6]], TOL)
    assert len(calls) == 2
    assert all(np.array_equal(d.numpy(), hwc.transpose(2, 0, 1)) for d, (_, hwc) in zip(decoded, packed))


@pytest.mark.skipif(not V13.is_dir(), reason="shared data absent")
def test_iter_video_frames_channels_first_on_real_videos():
    videos = sorted(V13.glob("datasets/*/videos/*.mp4"))[:10] + ([G1_VIDEO] if G1_VIDEO.exists() else [])
    assert videos
    for path in videos:
        packed = [f for _, f in zip(range(20), iter_video_frames(path))]
        planar = [f for _, f in zip(range(20), iter_video_frames(path, channels_first=True))]
        for (_, hwc), (_, chw) in zip(packed, planar):
            assert np.array_equal(chw, hwc.transpose(2, 0, 1)), path


# ------------------------------------------------------------------------------------ golden references

GOLDEN = [
    ("pusht", "observation.image", 10, [0, 1, 80, 81, 159, 160]),
    ("xarm_lift_medium", "observation.image", 15, [0, 1, 12, 13, 23, 24]),
    ("aloha_sim_insertion_human", "observation.images.top", 50, [0, 1, 250, 251, 498, 499]),
]


@pytest.mark.skipif(not (V13 / "golden_frames").is_dir(), reason="shared golden frames absent")
@pytest.mark.parametrize(("name", "key", "fps", "indices"), GOLDEN)
def test_matches_reference_loader_golden_frames(name, key, fps, indices):
    from safetensors.torch import load_file

    video = V13 / "datasets" / name / "videos" / f"{key}_episode_000000.mp4"
    out = decode_video_frames(video, [i / fps for i in indices], tolerance_s=1e-4).float() / 255
    for i, frame in zip(indices, out):
        golden = load_file(V13 / "golden_frames/lerobot" / name / f"frame_{i}.safetensors")[key]
        assert (frame - golden).abs().max().item() <= 1 / 255 + 1e-7


@pytest.mark.skipif(not G1_VIDEO.is_file(), reason="shared real data absent")
def test_real_av1_random_access_equals_sequential():
    with av.open(str(G1_VIDEO)) as c:
        s = c.streams.video[0]
        ref = [f for _, f in zip(range(24), c.decode(s))]
        ref = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in ref]
    for i in [17, 3, 4, 11, 23, 0]:
        out = decode_video_frames(G1_VIDEO, [i / 30], TOL)
        assert np.array_equal(out[0].permute(1, 2, 0).numpy(), ref[i][1])


# ---------------------------------------------------------------------------------------- concatenation


@pytest.mark.parametrize("codec", CODECS)
def test_concatenate_videos_offsets(tmp_path, codec):
    lengths = [7, 10, 4]
    inputs, first = [], 0
    for k, n in enumerate(lengths):
        frames = [coded_frame(first + i) for i in range(n)]
        inputs.append(encode_video_frames(frames, tmp_path / f"ep{k}.mp4", 15, vcodec=codec))
        first += n
    spans = concatenate_videos(inputs, tmp_path / "all.mp4")
    assert spans[0] == (0.0, 7 / 15)
    for k, (start, end) in enumerate(spans):
        assert start == pytest.approx(sum(lengths[:k]) / 15, abs=1e-9)
        assert end == pytest.approx(start + lengths[k] / 15, abs=1e-12)
    assert get_video_num_frames_and_duration(tmp_path / "all.mp4")[0] == sum(lengths)
    for k, (path, (start, _)) in enumerate(zip(inputs, spans)):
        n = lengths[k]
        direct = decode_video_frames(path, [i / 15 for i in range(n)], TOL)
        shared = decode_video_frames(tmp_path / "all.mp4", [start + i / 15 for i in range(n)], TOL)
        assert torch.equal(direct, shared)
        assert [read_code(f) for f in shared] == [sum(lengths[:k]) + i for i in range(n)]


def test_concatenate_videos_refuses_mismatch_and_overwrite(tmp_path):
    a = encode_video_frames([coded_frame(0)] * 2, tmp_path / "a.mp4", 15, vcodec="libx264")
    b = encode_video_frames([coded_frame(0, 32, 32)] * 2, tmp_path / "b.mp4", 15, vcodec="libx264")
    with pytest.raises(ValueError, match="width 64 vs 32"):
        concatenate_videos([a, b], tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    concatenate_videos([a, a], tmp_path / "out.mp4")
    with pytest.raises(DatasetExistsError):
        concatenate_videos([a, a], tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="also one of the inputs"):
        concatenate_videos([a, tmp_path / "out.mp4"], tmp_path / "out.mp4", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "b.mp4", "out.mp4"]


def test_decoder_threads_policy(monkeypatch):
    assert video_decoding.decoder_thread_count(96, 96) == 1
    assert video_decoding.decoder_thread_count(640, 480) == 0
    monkeypatch.setenv("LEROBOT_VIDEO_DECODE_THREADS", "3")
    assert video_decoding.decoder_thread_count(96, 96) == 3


def test_real_files_glob_skip_safe():
    # Every real video in the shared folder opens and reports a sane frame rate (skips where absent).
    for path in glob.glob(str(V13 / "datasets/*/videos/*.mp4")):
        assert get_video_info(path)["video.fps"] in (10.0, 15.0, 50.0)
