import numpy as np
import pytest
import torch

from lerobot.common.datasets.errors import MetadataError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from lerobot.common.datasets.multi_dataset import MultiLeRobotDataset
from tests.datasets.helpers import FPS, features, make_frame, record


def test_mixture_keeps_common_keys_and_indexes_sources(tmp_path):
    record(tmp_path / "test" / "a", (4, 3), camera_dtype="image", repo_id="test/a")
    feats = features("image")
    feats["extra"] = {"dtype": "float32", "shape": (1,), "names": None}
    writer = LeRobotDataset.create("test/b", fps=FPS, features=feats, root=tmp_path / "test" / "b")
    for i in range(5):
        writer.add_frame({**make_frame(7, i, 5), "extra": np.float32(i)}, task="b")
    writer.save_episode()
    multi = MultiLeRobotDataset(
        ["test/a", "test/b"], root=tmp_path, delta_timestamps={"action": [0, 1 / FPS]}
    )
    assert len(multi) == 12 and multi.num_episodes == 3
    assert multi.disabled_features == ["extra"]
    assert multi.episode_data_index["from"].tolist() == [0, 4, 7]
    item = multi[8]
    assert item["dataset_index"].item() == 1 and "extra" not in item
    assert item["observation.state"].tolist() == [7, 1, 701]
    assert item["action"].shape == (2, 2) and item["action_is_pad"].tolist() == [False, False]
    assert multi[6]["action_is_pad"].tolist() == [False, True]
    stats = multi.stats
    assert stats["observation.state"]["count"].item() == 12
    all_states = torch.stack([multi[i]["observation.state"] for i in range(12)])
    assert torch.allclose(stats["observation.state"]["mean"], all_states.mean(0).double(), atol=1e-4)
    assert stats["observation.state"]["max"].tolist() == [7, 4, 704]


def test_mixture_rejects_different_fps(tmp_path):
    record(tmp_path / "test" / "a", (2,), camera_dtype="image", repo_id="test/a")
    writer = LeRobotDataset.create(
        "test/b", fps=FPS * 2, features=features("image"), root=tmp_path / "test" / "b"
    )
    writer.add_frame(make_frame(0, 0, 1), task="t")
    writer.save_episode()
    with pytest.raises(MetadataError, match="fps"):
        MultiLeRobotDataset(["test/a", "test/b"], root=tmp_path)
