"""Tests of the decoded-frame cache: same frames as direct decoding, invalidation, one decode per segment."""

from __future__ import annotations

import multiprocessing
import pickle
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from filelock import FileLock

from lerobot.common.datasets import frame_cache as fc
from lerobot.common.datasets.errors import MissingFileError, TimestampSyncError
from lerobot.common.datasets.frame_cache import DecodedFrameCache, default_frame_cache_dir
from lerobot.common.datasets.video_decoding import close_video_readers, decode_video_frames
from lerobot.common.datasets.video_utils import concatenate_videos, encode_video_frames

FPS = 15
TOL = 1e-4


def coded_frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    frame = np.zeros((h, w, 3), dtype=np.uint8)
    frame[..., 0] = (i * 23) % 256
    frame[: (i % h) + 1, :, 1] = 200
    frame[:, : (i % w) + 1, 2] = 120
    return frame


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, object]:
    """Per codec: three episode files, the shared file they were concatenated into, and the spans."""
    root = tmp_path_factory.mktemp("fc_videos")
    out: dict[str, object] = {}
    for codec in ["libsvtav1", "libx264"]:
        lengths, first, episodes = [9, 12, 6], 0, []
        for k, n in enumerate(lengths):
            frames = [coded_frame(first + i) for i in range(n)]
            episodes.append(encode_video_frames(frames, root / f"{codec}_ep{k}.mp4", FPS, vcodec=codec))
            first += n
        spans = concatenate_videos(episodes, root / f"{codec}_shared.mp4")
        out[codec] = (episodes, root / f"{codec}_shared.mp4", spans, lengths)
    return out


@pytest.fixture(autouse=True)
def _fresh_readers():
    close_video_readers()
    yield
    close_video_readers()


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_whole_file_equals_direct_decode(tmp_path, videos, codec):
    episodes, _, _, lengths = videos[codec]
    cache = DecodedFrameCache(tmp_path / "cache")
    rng = random.Random(0)
    for _ in range(10):
        k = rng.randrange(3)
        q = [rng.randrange(lengths[k]) / FPS for _ in range(rng.choice([1, 2, 4]))]
        q.append(q[0])  # duplicates
        cached = cache.get_frames(episodes[k], q, TOL)
        direct = decode_video_frames(episodes[k], q, TOL)
        assert cached.dtype == torch.uint8 and cached.shape == direct.shape
        assert torch.equal(cached, direct)
    # Frames are stored as raw N x 3 x H x W uint8, nothing else: the files are exactly the estimated size.
    for e in episodes:
        cache.get_frames(e, [0.0], TOL)
    sizes = sorted(p.stat().st_size for p in (tmp_path / "cache").glob("*.frames"))
    assert sizes == sorted(DecodedFrameCache.estimate_bytes(e) for e in episodes)


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264"])
def test_segments_of_shared_file_equal_direct_decode(tmp_path, videos, codec):
    _, shared, spans, lengths = videos[codec]
    cache = DecodedFrameCache(tmp_path / "cache")
    for (start, end), n in zip(spans, lengths):
        q = [start + i / FPS for i in range(n)][::-1] + [start + 0.2 / FPS]  # reversed, one jittered
        cached = cache.get_frames(shared, q, 0.3 / FPS, segment=(start, end))
        assert torch.equal(cached, decode_video_frames(shared, q, 0.3 / FPS))
        assert cache.estimate_bytes(shared, (start, end)) == n * 48 * 64 * 3
    sizes = sorted(p.stat().st_size for p in (tmp_path / "cache").glob("*.frames"))
    assert sizes == sorted(n * 48 * 64 * 3 for n in lengths)


def test_same_tolerance_error(tmp_path, videos):
    _, shared, spans, _ = videos["libx264"]
    cache = DecodedFrameCache(tmp_path / "cache")
    start, end = spans[1]
    bad = [start, start + 0.5 / FPS + 0.002]
    with pytest.raises(TimestampSyncError) as direct:
        decode_video_frames(shared, bad, 0.01)
    with pytest.raises(TimestampSyncError) as cached:
        cache.get_frames(shared, bad, 0.01, segment=(start, end))
    assert str(cached.value) == str(direct.value)
    # A query outside the segment is matched against the segment only, so it fails instead of returning a
    # frame of the neighbouring episode.
    with pytest.raises(TimestampSyncError):
        cache.get_frames(shared, [end + 1 / FPS], TOL, segment=(start, end))


def test_invalidated_when_video_changes(tmp_path):
    video = encode_video_frames([coded_frame(3)] * 4, tmp_path / "v.mp4", FPS, vcodec="libx264")
    cache = DecodedFrameCache(tmp_path / "cache")
    first = cache.get_frames(video, [0.0], TOL)
    key_before = cache.entry_key(video)
    time.sleep(0.01)
    encode_video_frames([coded_frame(40)] * 4, video, FPS, vcodec="libx264", overwrite=True)
    assert cache.entry_key(video) != key_before
    second = cache.get_frames(video, [0.0], TOL)
    assert not torch.equal(first, second)
    assert torch.equal(second, decode_video_frames(video, [0.0], TOL))


def test_damaged_entry_is_rebuilt_and_clear(tmp_path, videos):
    episodes = videos["libx264"][0]
    cache = DecodedFrameCache(tmp_path / "cache")
    expected = cache.get_frames(episodes[0], [0.2], TOL)
    key = cache.entry_key(episodes[0])
    (tmp_path / "cache" / f"{key}.json").write_text("{not json")
    fresh = DecodedFrameCache(tmp_path / "cache")
    assert torch.equal(fresh.get_frames(episodes[0], [0.2], TOL), expected)
    assert cache.size_bytes() > 0
    (tmp_path / "cache" / "keep.txt").write_text("not ours")
    cache.clear()
    fresh.clear()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["keep.txt"]
    assert cache.size_bytes() == 0


def test_errors_and_misc(tmp_path, videos, monkeypatch):
    cache = DecodedFrameCache(tmp_path / "cache")
    with pytest.raises(MissingFileError, match="nope.mp4"):
        cache.get_frames(tmp_path / "nope.mp4", [0.0], TOL)
    with pytest.raises(ValueError, match="from_timestamp < to_timestamp"):
        cache.get_frames(videos["libx264"][0][0], [0.0], TOL, segment=(1.0, 0.5))
    assert cache.get_frames(videos["libx264"][0][0], [], TOL).shape == (0, 3, 48, 64)
    monkeypatch.setenv("LEROBOT_FRAME_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert default_frame_cache_dir() == tmp_path / "elsewhere"
    assert DecodedFrameCache().cache_dir == tmp_path / "elsewhere"
    monkeypatch.delenv("LEROBOT_FRAME_CACHE_DIR")
    assert default_frame_cache_dir() == Path.home() / ".cache" / "lerobot" / "decoded_frames"
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.cache_dir == cache.cache_dir and not clone._entries


def _first_touch(cache_dir: str, video: str, segment, counter: str, barrier, results) -> None:
    """Child process: count decodes (slowed down to widen the race) and read one segment."""
    original = DecodedFrameCache._decode_segment

    def counting(self, *args, **kwargs):
        with open(counter, "a") as f:
            f.write("decode\n")
        time.sleep(0.3)
        return original(self, *args, **kwargs)

    DecodedFrameCache._decode_segment = counting
    cache = DecodedFrameCache(cache_dir)
    barrier.wait()
    frames = cache.get_frames(video, [segment[0], segment[0] + 2 / FPS], TOL, segment=segment)
    results.put(frames.numpy().tobytes())


def test_concurrent_first_touch_decodes_once(tmp_path, videos):
    _, shared, spans, _ = videos["libsvtav1"]
    segment = spans[1]
    expected = decode_video_frames(shared, [segment[0], segment[0] + 2 / FPS], TOL).numpy().tobytes()
    close_video_readers()
    # spawn, not fork: forking a pytest-xdist worker that already ran threaded decoders can deadlock the
    # child, which would test the runner rather than the cache's cross-process lock.
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "decodes.txt"
    args = (str(tmp_path / "cache"), str(shared), segment, str(counter), barrier, results)
    procs = [ctx.Process(target=_first_touch, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.read_text().count("decode") == 1
    assert got == [expected, expected]


def test_fork_reopens_descriptors(tmp_path, videos):
    episodes = videos["libx264"][0]
    cache = DecodedFrameCache(tmp_path / "cache")
    expected = cache.get_frames(episodes[1], [0.0, 0.4], TOL)
    old_entry = next(iter(cache._entries.values()))
    cache._pid = -1  # as seen from a forked child
    assert torch.equal(cache.get_frames(episodes[1], [0.0, 0.4], TOL), expected)
    assert cache._pid == fc.os.getpid() and len(cache._entries) == 1
    assert next(iter(cache._entries.values())) is not old_entry  # reopened, not inherited


def test_eviction_with_threads(tmp_path, videos):
    """With room for one open entry, two threads alternating between videos keep evicting each other."""
    from concurrent.futures import ThreadPoolExecutor

    episodes = videos["libx264"][0]
    cache = DecodedFrameCache(tmp_path / "cache", max_open_entries=1)
    expected = [decode_video_frames(e, [0.0, 0.2], TOL) for e in episodes[:2]]

    def work(k: int) -> bool:
        return all(
            torch.equal(cache.get_frames(episodes[k % 2], [0.0, 0.2], TOL), expected[k % 2])
            for _ in range(20)
        )

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(work, range(4)))
    assert len(cache._entries) == 1


def test_segment_being_built_elsewhere_is_decoded_directly(tmp_path, videos):
    # While another worker holds a segment's build lock, a reader decodes just its own frames instead of
    # idling until the whole segment is in the cache (seconds for a long episode).
    _, shared, spans, _ = videos["libx264"]
    segment = spans[1]
    queries = [segment[0], segment[0] + 1 / FPS]
    cache = DecodedFrameCache(tmp_path / "cache")
    lock_path = cache._paths(cache.entry_key(shared, segment))[2]
    lock_path.parent.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def other_worker():
        with FileLock(str(lock_path)):  # filelock locks per thread: this thread stands for another process
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert held.wait(10)
        frames = cache.get_frames(shared, queries, TOL, segment=segment)
        assert torch.equal(frames, decode_video_frames(shared, queries, TOL))
        assert not list((tmp_path / "cache").glob("*.frames"))  # nothing built while the lock is held
    finally:
        release.set()
        thread.join()
    assert torch.equal(cache.get_frames(shared, queries, TOL, segment=segment), frames)
    assert len(list((tmp_path / "cache").glob("*.frames"))) == 1
