"""Bad input gets a specific exception naming the file or key and what to do."""

import json
import string

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerobot.common.datasets import errors
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset, check_delta_timestamps
from lerobot.common.datasets.metadata import detect_version, image_shape_hwc
from lerobot.common.datasets.utils import flatten_dict, safe_join, unflatten_dict, validate_repo_id
from tests.datasets.helpers import FPS, record


@pytest.fixture
def v21_video(tmp_path):
    record(tmp_path / "ds", (4, 3), "v2.1", "video")
    return tmp_path / "ds"


@pytest.fixture
def v30_image(tmp_path):
    record(tmp_path / "ds", (4, 3), "v3.0", "image")
    return tmp_path / "ds"


def edit_info(root, **changes):
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            info.pop(key)
        else:
            info[key] = value
    path.write_text(json.dumps(info))


def test_missing_video(v21_video):
    video = next((v21_video / "videos").rglob("episode_000001.mp4"))
    video.unlink()
    ds = LeRobotDataset("test/tiny", root=v21_video, decoded_frame_cache=False)
    ds[0]
    with pytest.raises(errors.MissingFileError, match="episode_000001.mp4"):
        ds[5]


def test_corrupt_video(v21_video):
    video = next((v21_video / "videos").rglob("episode_000000.mp4"))
    video.write_bytes(video.read_bytes()[:200])
    ds = LeRobotDataset("test/tiny", root=v21_video, decoded_frame_cache=False)
    with pytest.raises(errors.VideoDecodingError, match="episode_000000.mp4"):
        ds[0]


def test_truncated_parquet(v30_image):
    data = next((v30_image / "data").rglob("*.parquet"))
    data.write_bytes(data.read_bytes()[:-100])
    with pytest.raises(errors.CorruptFileError, match=data.name):
        LeRobotDataset("test/tiny", root=v30_image)


def test_parquet_with_missing_rows(v30_image):
    data = next((v30_image / "data").rglob("*.parquet"))
    pq.write_table(pq.read_table(data).slice(0, 5), data)
    with pytest.raises(errors.CorruptFileError, match="Episode 1 .* 1 rows .* metadata says 3"):
        LeRobotDataset("test/tiny", root=v30_image)


@pytest.mark.parametrize("key", ["fps", "features", "data_path"])
def test_info_missing_keys(v30_image, key):
    edit_info(v30_image, **{key: None})
    with pytest.raises(errors.MetadataError, match=key):
        LeRobotDataset("test/tiny", root=v30_image)


def test_info_not_json(v30_image):
    (v30_image / "meta" / "info.json").write_text("{not json")
    with pytest.raises(errors.CorruptFileError, match="info.json"):
        LeRobotDataset("test/tiny", root=v30_image)


def test_newer_and_unknown_versions(v30_image):
    edit_info(v30_image, codebase_version="v4.0")
    with pytest.raises(errors.ForwardCompatibilityError, match="v4.0.*Upgrade"):
        LeRobotDataset("test/tiny", root=v30_image)
    edit_info(v30_image, codebase_version="v2.7")
    with pytest.raises(errors.MetadataError, match="unknown codebase_version"):
        LeRobotDataset("test/tiny", root=v30_image)
    edit_info(v30_image, codebase_version=None)
    with pytest.raises(errors.MetadataError, match="codebase_version"):
        LeRobotDataset("test/tiny", root=v30_image)


def test_timestamps_out_of_sync(v30_image):
    data = next((v30_image / "data").rglob("*.parquet"))
    table = pq.read_table(data)
    ts = table.column("timestamp").to_pylist()
    ts[2] += 0.05  # a dropped/late frame inside episode 0
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", [ts])
    pq.write_table(table, data)
    with pytest.raises(errors.TimestampSyncError, match="episode 0 row 1.*tolerance_s"):
        LeRobotDataset("test/tiny", root=v30_image)
    assert len(LeRobotDataset("test/tiny", root=v30_image, tolerance_s=0.06)) == 7


def test_video_frame_outside_tolerance(v21_video):
    # The table claims a timestamp that no frame of the video has.
    data = next((v21_video / "data").rglob("episode_000000.parquet"))
    table = pq.read_table(data)
    ts = [t + 0.5 / FPS for t in table.column("timestamp").to_pylist()]
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", [ts])
    pq.write_table(table, data)
    ds = LeRobotDataset("test/tiny", root=v21_video, decoded_frame_cache=False)
    with pytest.raises(errors.TimestampSyncError, match="episode_000000.mp4"):
        ds[0]


def test_path_escape_in_metadata(v30_image):
    edit_info(v30_image, data_path="../../outside/file-{file_index:03d}.parquet")
    with pytest.raises(errors.UnsafePathError, match="escapes"):
        LeRobotDataset("test/tiny", root=v30_image)


def test_bad_delta_timestamps(v30_image):
    with pytest.raises(errors.InvalidDeltaTimestampsError, match="not a feature"):
        LeRobotDataset("test/tiny", root=v30_image, delta_timestamps={"bogus": [0]})
    with pytest.raises(errors.InvalidDeltaTimestampsError, match="multiples of 1/fps"):
        LeRobotDataset("test/tiny", root=v30_image, delta_timestamps={"action": [0, 0.05]})


def test_unknown_episode(v30_image):
    with pytest.raises(errors.EpisodeNotFoundError, match=r"\[5\]"):
        LeRobotDataset("test/tiny", root=v30_image, episodes=[0, 5])


def test_index_out_of_range(v30_image):
    ds = LeRobotDataset("test/tiny", root=v30_image)
    with pytest.raises(IndexError, match="7 frames"):
        ds[7]
    assert ds[-1]["index"].item() == 6


def test_not_a_dataset(tmp_path):
    with pytest.raises(errors.DatasetNotFoundError, match="meta/info.json"):
        detect_version(tmp_path)


# ------------------------------------------------------------------------------ property-based

part = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)


@given(part, part)
def test_repo_id_rule(a, b):
    ok = not (a.startswith(".") or b.startswith(".") or ".." in a or ".." in b)
    if ok:
        assert validate_repo_id(f"{a}/{b}") == f"{a}/{b}"
    else:
        with pytest.raises(errors.InvalidRepoIdError):
            validate_repo_id(f"{a}/{b}")


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "c.d"]), min_size=1, max_size=6))
@settings(max_examples=200)
def test_safe_join_never_escapes(tmp_path_factory, parts):
    root = tmp_path_factory.getbasetemp() / "root"
    rel = "/".join(parts)
    try:
        joined = safe_join(root, rel)
    except errors.UnsafePathError:
        depth = 0
        for p in parts:
            depth += -1 if p == ".." else 0 if p == "." else 1
            if depth < 0:
                return
        raise AssertionError(f"{rel} stays inside but was refused") from None
    resolved = joined.resolve()
    assert resolved == root.resolve() or root.resolve() in resolved.parents


keys = st.text(string.ascii_lowercase + ".", min_size=1, max_size=8)
leaves = st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
nested = st.recursive(
    st.dictionaries(keys, leaves, min_size=1, max_size=4),
    lambda c: st.dictionaries(keys, c, min_size=1, max_size=4),
    max_leaves=12,
)


@given(nested)
def test_flatten_unflatten_round_trip(d):
    assert unflatten_dict(flatten_dict(d)) == d


@given(
    st.lists(st.integers(-20, 20), min_size=1, max_size=8),
    st.sampled_from([5, 10, 15, 30, 50]),
)
def test_delta_timestamps_accepts_multiples_of_frame_period(frames, fps):
    features = {"action": {"dtype": "float32", "shape": (2,)}}
    out = check_delta_timestamps({"action": [f / fps for f in frames]}, fps, 1e-4, features)
    assert out["action"].tolist() == frames


@given(st.floats(0.001, 0.999), st.sampled_from([10, 30, 50]))
def test_delta_timestamps_rejects_fractions_of_frames(frac, fps):
    features = {"action": {"dtype": "float32", "shape": (2,)}}
    if min(frac, 1 - frac) / fps <= 1e-4 * (1 + 1e-6):  # within tolerance_s (up to float rounding): valid
        return
    with pytest.raises(errors.InvalidDeltaTimestampsError):
        check_delta_timestamps({"action": [frac / fps]}, fps, 1e-4, features)


@given(st.integers(1, 2000), st.integers(1, 2000), st.sampled_from([1, 3]), st.booleans())
def test_camera_shape_is_hwc_whatever_the_stored_order(h, w, c, chw):
    if chw and w in (1, 3):
        return  # (C, H, 1) or (C, H, 3) also reads as a valid (H, W, C): only `names` can decide
    shape = [c, h, w] if chw else [h, w, c]
    assert image_shape_hwc("cam", {"shape": shape}, "info.json") == (h, w, c)
