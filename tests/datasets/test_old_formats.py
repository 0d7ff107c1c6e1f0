"""Formats v1.6 (parquet layout, video or embedded PNG images) and v2.0, built by the tests themselves."""

import json

import datasets
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from tests.conftest import require_shared_data
from tests.datasets.helpers import FPS, frame_image, record


def write_v16_images(root, lengths=(4, 3)):
    """A v1.6 dataset as pushed to the Hub: data/train-*.parquet with PNG images inside, meta_data/."""
    rows = {
        "observation.image": [],
        "observation.state": [],
        "action": [],
        "episode_index": [],
        "frame_index": [],
    }
    rows |= {"timestamp": [], "index": [], "next.done": []}
    index = 0
    for ep, n in enumerate(lengths):
        for i in range(n):
            rows["observation.image"].append(frame_image(ep, i))
            rows["observation.state"].append([ep, i])
            rows["action"].append([i * 0.5, -i])
            rows["episode_index"].append(ep)
            rows["frame_index"].append(i)
            rows["timestamp"].append(i / FPS)
            rows["index"].append(index)
            rows["next.done"].append(i == n - 1)
            index += 1
    features = datasets.Features(
        {
            "observation.image": datasets.Image(),
            "observation.state": datasets.Sequence(datasets.Value("float32"), length=2),
            "action": datasets.Sequence(datasets.Value("float32"), length=2),
            "episode_index": datasets.Value("int64"),
            "frame_index": datasets.Value("int64"),
            "timestamp": datasets.Value("float32"),
            "index": datasets.Value("int64"),
            "next.done": datasets.Value("bool"),
        }
    )
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(
        root / "data" / "train-00000-of-00001.parquet"
    )
    (root / "meta_data").mkdir()
    (root / "meta_data" / "info.json").write_text(
        json.dumps({"codebase_version": "v1.6", "fps": FPS, "video": False})
    )
    ends = np.cumsum(lengths)
    save_file(
        {"from": np.r_[0, ends[:-1]].astype(np.int64), "to": ends.astype(np.int64)},
        str(root / "meta_data" / "episode_data_index.safetensors"),
    )
    save_file(
        {"action/mean": np.zeros(2, np.float32), "action/std": np.ones(2, np.float32)},
        str(root / "meta_data" / "stats.safetensors"),
    )


def test_v16_parquet_with_embedded_png(tmp_path):
    write_v16_images(tmp_path / "ds")
    ds = LeRobotDataset(
        "lerobot/old", root=tmp_path / "ds", delta_timestamps={"observation.image": [-0.1, 0]}
    )
    assert ds.codebase_version == "v1.6" and ds.image_keys == ["observation.image"]
    assert ds.features["observation.image"]["shape"] == (24, 32, 3)
    assert ds.num_episodes == 2 and len(ds) == 7
    item = ds[5]  # episode 1, frame 1
    assert item["observation.image"].shape == (2, 3, 24, 32)
    got = (item["observation.image"][1] * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(got, frame_image(1, 1))
    assert item["observation.state"].tolist() == [1, 1]
    assert ds[4]["observation.image_is_pad"].tolist() == [True, False]
    assert ds.stats["action"]["std"].tolist() == [1, 1]


def test_v16_parquet_with_video_frames(tmp_path):
    """The v1.3 pusht arrow table re-saved as a v1.6 Hub-layout parquet: VideoFrame structs pointing at mp4s."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    src = require_shared_data("lerobot_v1.3", "datasets", "pusht")
    root = tmp_path / "pusht"
    shutil.copytree(src / "videos", root / "videos")
    shutil.copytree(src / "meta_data", root / "meta_data")
    info = json.loads((root / "meta_data" / "info.json").read_text())
    (root / "meta_data" / "info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pa.memory_map(str(src / "train" / "data-00000-of-00001.arrow")) as f:
        table = pa.ipc.open_stream(f).read_all()
    (root / "data").mkdir()
    pq.write_table(table, root / "data" / "train-00000-of-00001.parquet")
    old = LeRobotDataset("lerobot/pusht", root=src, decoded_frame_cache=False)
    new = LeRobotDataset("lerobot/pusht", root=root, decoded_frame_cache=False)
    assert new.codebase_version == "v1.6" and len(new) == len(old) == 161
    for i in (0, 80, 160):
        a, b = old[i], new[i]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_v20_reads_like_v21(tmp_path):
    root = tmp_path / "ds"
    record(root, (4, 3), "v2.1", "image")
    v21 = LeRobotDataset("test/tiny", root=root)
    items = [v21[i] for i in range(len(v21))]
    # v2.0 had global stats.json and no per-episode stats.
    (root / "meta" / "episodes_stats.jsonl").unlink()
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": "v2.0"}))
    v20 = LeRobotDataset("test/tiny", root=root)
    assert v20.codebase_version == "v2.0"
    for i, expected in enumerate(items):
        got = v20[i]
        assert all(
            torch.equal(got[k], v) if isinstance(v, torch.Tensor) else got[k] == v
            for k, v in expected.items()
        )
    assert set(v20.stats) == set(v21.stats)


def test_v21_without_global_stats_aggregates_episode_stats(tmp_path):
    root = tmp_path / "ds"
    record(root, (4, 3), "v2.1", "image")
    expected = LeRobotDataset("test/tiny", root=root).stats
    (root / "meta" / "stats.json").unlink()
    got = LeRobotDataset("test/tiny", root=root).stats
    for key in ("observation.state", "action"):
        for name in ("mean", "std", "min", "max"):
            assert torch.allclose(got[key][name].float(), expected[key][name].float(), atol=1e-5)


def test_hf_dataset_is_memory_mapped(tmp_path):
    root = tmp_path / "ds"
    record(root, (4, 3), "v3.0", "image")
    hf = LeRobotDataset("test/tiny", root=root, episodes=[1]).hf_dataset
    assert hf.cache_files, "expected Arrow cache files backing the dataset"
    assert len(hf) == 3 and hf[0]["episode_index"] == 1


@pytest.mark.parametrize("version", ["v2.1", "v3.0"])
def test_hf_dataset_columns_match_items(tmp_path, version):
    root = tmp_path / "ds"
    record(root, (4, 3), version, "video")
    ds = LeRobotDataset("test/tiny", root=root, decoded_frame_cache=False)
    hf = ds.hf_dataset.with_format("numpy")
    assert np.allclose(
        hf["observation.state"], np.stack([ds[i]["observation.state"].numpy() for i in range(len(ds))])
    )
