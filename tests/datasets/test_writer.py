"""Writing datasets (v3.0 and v2.1) and reading them back."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lerobot.common.datasets.errors import DatasetExistsError, FeatureMismatchError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.writer import LeRobotDatasetWriter
from tests.datasets.helpers import FPS, features, frame_image, make_frame, record

LENGTHS = (7, 5, 9)


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
@pytest.mark.parametrize("camera_dtype", ["video", "image"])
def test_round_trip(tmp_path, version, camera_dtype):
    record(tmp_path / "ds", LENGTHS, version, camera_dtype)
    ds = LeRobotDataset("test/tiny", root=tmp_path / "ds", decoded_frame_cache=False)
    assert ds.codebase_version == version
    assert ds.num_episodes == 3 and len(ds) == sum(LENGTHS)
    assert ds.episode_data_index["from"].tolist() == [0, 7, 12]
    assert ds.episode_data_index["to"].tolist() == [7, 12, 21]
    assert ds.tasks == {0: "task 0", 1: "task 1"}
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and info["total_frames"] == 21 and info["total_tasks"] == 2
    row = 0
    for ep, n in enumerate(LENGTHS):
        for i in range(n):
            item = ds[row]
            expected = make_frame(ep, i, n)
            assert item["episode_index"].item() == ep and item["frame_index"].item() == i
            assert item["index"].item() == row
            assert item["timestamp"].item() == pytest.approx(i / FPS)
            assert torch.equal(item["observation.state"], torch.from_numpy(expected["observation.state"]))
            assert torch.equal(item["action"], torch.from_numpy(expected["action"]))
            assert item["next.done"].item() == (i == n - 1)
            assert item["task"] == f"task {ep % 2}"
            img = (item["observation.image"] * 255).round().permute(1, 2, 0).numpy()
            err = np.abs(img - frame_image(ep, i)).max()
            assert err <= (0 if camera_dtype == "image" else 12), (ep, i, err)
            row += 1
    stats = ds.stats
    assert stats["observation.state"]["max"].tolist() == [2, 8, 208]
    assert stats["observation.image"]["mean"].shape == (3, 1, 1)
    assert stats["action"]["count"].item() == 21
    for q in ("q01", "q10", "q50", "q90", "q99"):
        assert q in stats["action"]


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_both_versions_read_back_identically(tmp_path, version):
    record(tmp_path / "a", LENGTHS, "v3.0")
    record(tmp_path / "b", LENGTHS, "v2.1")
    a = LeRobotDataset("test/tiny", root=tmp_path / "a", decoded_frame_cache=False)
    b = LeRobotDataset("test/tiny", root=tmp_path / "b", decoded_frame_cache=False)
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), (i, k)
            else:
                assert x[k] == y[k]


def test_v3_shares_files_and_rolls_over(tmp_path):
    # A tiny size budget forces a new data/video file for every episode after the first.
    record(tmp_path / "ds", LENGTHS, "v3.0", data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    assert len(list((tmp_path / "ds" / "data").rglob("*.parquet"))) == 3
    assert len(list((tmp_path / "ds" / "videos").rglob("*.mp4"))) == 3
    record(tmp_path / "one", LENGTHS, "v3.0")
    assert len(list((tmp_path / "one" / "data").rglob("*.parquet"))) == 1
    assert len(list((tmp_path / "one" / "videos").rglob("*.mp4"))) == 1
    ds = LeRobotDataset("test/tiny", root=tmp_path / "one", decoded_frame_cache=False)
    seg = ds.meta.episodes[2].videos["observation.image"]
    assert seg.from_timestamp == pytest.approx(12 / FPS)
    item = ds[12 + 4]
    img = (item["observation.image"] * 255).round().permute(1, 2, 0).numpy()
    assert np.abs(img - frame_image(2, 4)).max() <= 12


def test_refuses_to_overwrite(tmp_path):
    record(tmp_path / "ds", (3,))
    with pytest.raises(DatasetExistsError, match="already exists"):
        LeRobotDataset.create("test/tiny", fps=FPS, features=features(), root=tmp_path / "ds")
    writer = LeRobotDataset.create(
        "test/tiny", fps=FPS, features=features(), root=tmp_path / "ds", overwrite=True
    )
    assert writer.num_episodes == 0


def test_frame_validation(tmp_path):
    writer = LeRobotDataset.create("test/tiny", fps=FPS, features=features(), root=tmp_path / "ds")
    frame = make_frame(0, 0, 3)
    with pytest.raises(FeatureMismatchError, match="missing"):
        writer.add_frame({k: v for k, v in frame.items() if k != "action"})
    with pytest.raises(FeatureMismatchError, match="unexpected"):
        writer.add_frame({**frame, "bogus": 1})
    with pytest.raises(FeatureMismatchError, match="observation.state"):
        writer.add_frame({**frame, "observation.state": np.zeros(4, dtype=np.float32)})
    with pytest.raises(FeatureMismatchError, match="observation.image"):
        writer.add_frame({**frame, "observation.image": np.zeros((5, 5, 3), dtype=np.uint8)})
    writer.add_frame(frame)
    with pytest.raises(FeatureMismatchError, match="task"):
        writer.save_episode()
    with pytest.raises(FeatureMismatchError, match="no frames"):
        writer.clear_episode_buffer() or writer.save_episode(task="x")


def test_accepts_chw_float_and_torch(tmp_path):
    writer = LeRobotDataset.create("test/tiny", fps=FPS, features=features("image"), root=tmp_path / "ds")
    img = frame_image(0, 3)
    frame = make_frame(0, 3, 4)
    frame["observation.image"] = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    frame["observation.state"] = torch.from_numpy(frame["observation.state"])
    writer.add_frame(frame, task="t")
    writer.save_episode()
    ds = writer.as_dataset()
    got = (ds[0]["observation.image"] * 255).round().permute(1, 2, 0).numpy()
    assert np.array_equal(got, img)


CRASH_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
from tests.datasets.helpers import make_frame, features
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
w = LeRobotDataset.create("test/tiny", fps=10, features=features(), root={root!r}, codebase_version={version!r})
for ep, n in enumerate([4, 6]):
    for i in range(n):
        w.add_frame(make_frame(ep, i, n))
    w.save_episode(task="t")
for i in range(3):
    w.add_frame(make_frame(2, i, 5))
os._exit(9)  # killed mid-episode: no finalize, no cleanup
"""


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_killed_mid_recording_loses_only_current_episode(tmp_path, version):
    from pathlib import Path

    root = tmp_path / "ds"
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT.format(repo=repo, root=str(root), version=version)]
    )
    assert proc.returncode == 9
    ds = LeRobotDataset("test/tiny", root=root, decoded_frame_cache=False)
    assert ds.num_episodes == 2 and len(ds) == 10
    assert ds[9]["frame_index"].item() == 5
    # Resuming continues with episode 2 and the dataset stays consistent.
    writer = LeRobotDatasetWriter.resume("test/tiny", root)
    assert writer.num_episodes == 2 and writer.episode_index == 2
    for i in range(5):
        writer.add_frame(make_frame(2, i, 5))
    writer.save_episode(task="t")
    writer.finalize()
    ds = LeRobotDataset("test/tiny", root=root, decoded_frame_cache=False)
    assert ds.num_episodes == 3 and len(ds) == 15
    assert ds[14]["index"].item() == 14 and ds[14]["episode_index"].item() == 2


def test_v3_dangling_rows_after_crash_are_ignored_and_cleaned(tmp_path):
    """Rows committed to the data file without their metadata row (a crash between the two) are invisible."""
    import pyarrow.parquet as pq

    from lerobot.common.datasets.layout import V3_EPISODES_PATH

    root = tmp_path / "ds"
    record(root, (4, 6))
    meta_file = root / V3_EPISODES_PATH
    table = pq.read_table(meta_file)
    pq.write_table(table.slice(0, 1), meta_file)  # as if episode 1's metadata never got written
    ds = LeRobotDataset("test/tiny", root=root, decoded_frame_cache=False)
    assert ds.num_episodes == 1 and len(ds) == 4
    writer = LeRobotDatasetWriter.resume("test/tiny", root)
    data = pq.read_table(next((root / "data").rglob("*.parquet")))
    assert set(data.column("episode_index").to_pylist()) == {0}
    for i in range(3):
        writer.add_frame(make_frame(1, i, 3))
    writer.save_episode(task="t")
    ds = LeRobotDataset("test/tiny", root=root, decoded_frame_cache=False)
    assert len(ds) == 7 and ds[6]["frame_index"].item() == 2
