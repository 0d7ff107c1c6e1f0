"""Real datasets recorded by others (../shared/data): the loader must return what the original loader did."""

import pytest
import torch
from safetensors.torch import load_file

from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from tests.conftest import require_shared_data

V13 = ["aloha_sim_insertion_human", "pusht", "xarm_lift_medium"]
ALL_V13 = [
    "aloha_sim_insertion_human",
    "aloha_sim_insertion_scripted",
    "aloha_sim_transfer_cube_human",
    "aloha_sim_transfer_cube_scripted",
    "pusht",
    "umi_cup_in_the_wild",
    "xarm_lift_medium",
    "xarm_lift_medium_replay",
    "xarm_push_medium",
    "xarm_push_medium_replay",
]


@pytest.mark.parametrize("name", V13)
@pytest.mark.parametrize("cache", [False, True])
def test_golden_frames_v13(name, cache, tmp_path):
    root = require_shared_data("lerobot_v1.3", "datasets", name)
    golden_dir = require_shared_data("lerobot_v1.3", "golden_frames", "lerobot", name)
    dataset = LeRobotDataset(f"lerobot/{name}", root=root, decoded_frame_cache=tmp_path if cache else False)
    assert dataset.codebase_version == "v1.3"
    for path in sorted(golden_dir.glob("frame_*.safetensors")):
        index = int(path.stem.split("_")[1])
        expected = load_file(path)
        item = dataset[index]
        for key, value in expected.items():
            assert key in item, f"{name}[{index}] lacks {key}"
            got = item[key]
            assert got.shape == value.shape, (key, got.shape, value.shape)
            assert got.dtype == value.dtype, (key, got.dtype, value.dtype)
            if key in dataset.camera_keys:
                assert (got - value).abs().max() <= 1 / 255 + 1e-6, f"{name}[{index}] {key}"
            else:
                assert torch.equal(got, value), f"{name}[{index}] {key}: {got} != {value}"


@pytest.mark.parametrize("name", ALL_V13)
def test_every_v13_dataset_loads(name):
    root = require_shared_data("lerobot_v1.3", "datasets", name)
    dataset = LeRobotDataset(f"lerobot/{name}", root=root, decoded_frame_cache=False)
    assert dataset.num_episodes == 1
    assert len(dataset) == dataset.episode_data_index["to"][0].item()
    item = dataset[len(dataset) - 1]
    for key in dataset.camera_keys:
        h, w, c = dataset.features[key]["shape"]
        assert item[key].shape == (c, h, w)
        assert item[key].min() >= 0 and item[key].max() <= 1
    assert dataset.stats, "v1 stats.safetensors should be read"
    assert dataset.info["fps"] == dataset.fps


def test_g1_v21_episodes_subset():
    root = require_shared_data("g1_lerobot_v2.1")
    dataset = LeRobotDataset(
        "YifanTian07/G1-policy-train",
        root=root,
        episodes=[29, 30],
        delta_timestamps={"action": [0, 1 / 30, 2 / 30], "observation.images.cam_high": [-1 / 30, 0]},
        decoded_frame_cache=False,
    )
    assert dataset.codebase_version == "v2.1"
    assert dataset.episodes == [29, 30]
    assert dataset.num_episodes == 2
    lengths = dataset.episode_data_index["to"] - dataset.episode_data_index["from"]
    assert lengths.tolist() == [dataset.meta.episodes[29].length, dataset.meta.episodes[30].length]
    first = dataset[0]
    assert first["episode_index"].item() == 29
    assert first["action"].shape == (3, 26)
    assert first["observation.images.cam_high"].shape == (2, 3, 480, 640)
    assert first["observation.images.cam_high_is_pad"].tolist() == [True, False]
    assert torch.equal(first["observation.images.cam_high"][0], first["observation.images.cam_high"][1])
    assert first["task"] == "Pick up the yellow bottle on the table."
    last = dataset[len(dataset) - 1]
    assert last["episode_index"].item() == 30
    assert last["action_is_pad"].tolist() == [False, True, True]
    assert dataset.stats["observation.state"]["mean"].shape == (26,)
