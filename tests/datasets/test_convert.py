"""Conversion between versions, on data we write and on the real v1.3 / v2.1 datasets."""

import subprocess
import sys

import pytest
import torch

from lerobot.common.datasets.convert import convert_dataset
from lerobot.common.datasets.errors import DatasetExistsError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from tests.conftest import require_shared_data
from tests.datasets.helpers import record


def assert_same_items(
    a: LeRobotDataset, b: LeRobotDataset, image_atol: float, indices=None, renumbered=False
):
    assert len(a) == len(b)
    skip = ("task", "task_index") + (("episode_index", "index") if renumbered else ())
    for i in indices if indices is not None else range(len(a)):
        x, y = a[i], b[i]
        for key, value in x.items():
            if key in skip:
                continue
            assert key in y, key
            if key in a.camera_keys:
                assert (value - y[key]).abs().max() <= image_atol, (i, key)
            elif isinstance(value, torch.Tensor):
                assert torch.equal(value, y[key]), (i, key, value, y[key])


@pytest.mark.parametrize(("src_version", "dst_version"), [("v3.0", "v2.1"), ("v2.1", "v3.0")])
def test_convert_between_written_versions(tmp_path, src_version, dst_version):
    record(tmp_path / "src", (5, 4), src_version)
    convert_dataset("test/tiny", tmp_path / "src", tmp_path / "dst", to_version=dst_version, progress=False)
    a = LeRobotDataset("test/tiny", root=tmp_path / "src", decoded_frame_cache=False)
    b = LeRobotDataset("test/tiny", root=tmp_path / "dst", decoded_frame_cache=False)
    assert b.codebase_version == dst_version and b.tasks == a.tasks
    # v2.1 -> v3.0 copies the per-episode videos bit for bit; v3.0 -> v2.1 re-encodes (small loss allowed).
    assert_same_items(a, b, image_atol=0 if src_version == "v2.1" else 12 / 255)


@pytest.mark.parametrize(("src_version", "dst_version"), [("v3.0", "v2.1"), ("v2.1", "v3.0")])
def test_convert_embedded_images_losslessly(tmp_path, src_version, dst_version):
    record(tmp_path / "src", (5, 4), src_version, "image")
    convert_dataset("test/tiny", tmp_path / "src", tmp_path / "dst", to_version=dst_version, progress=False)
    a = LeRobotDataset("test/tiny", root=tmp_path / "src")
    b = LeRobotDataset("test/tiny", root=tmp_path / "dst")
    assert b.image_keys == ["observation.image"] and b.codebase_version == dst_version
    assert_same_items(a, b, image_atol=0)
    assert torch.allclose(b.stats["observation.image"]["mean"], a.stats["observation.image"]["mean"])


def test_convert_refuses_existing_output(tmp_path):
    record(tmp_path / "src", (3,))
    record(tmp_path / "dst", (3,))
    with pytest.raises(DatasetExistsError):
        convert_dataset("test/tiny", tmp_path / "src", tmp_path / "dst", progress=False)


@pytest.mark.parametrize("name", ["pusht", "xarm_lift_medium"])
def test_convert_real_v13_to_v30_without_reencoding(tmp_path, name):
    root = require_shared_data("lerobot_v1.3", "datasets", name)
    out = tmp_path / name
    cmd = [
        sys.executable,
        "lerobot/scripts/convert_dataset.py",
        "--repo-id",
        f"lerobot/{name}",
        "--root",
        str(root),
    ]
    subprocess.run([*cmd, "--out-dir", str(out), "--single-task", "do it"], check=True)
    a = LeRobotDataset(f"lerobot/{name}", root=root, decoded_frame_cache=False)
    b = LeRobotDataset(f"lerobot/{name}", root=out, decoded_frame_cache=False)
    assert b.codebase_version == "v3.0" and b.tasks == {0: "do it"}
    assert_same_items(a, b, image_atol=0, indices=[0, 1, len(a) // 2, len(a) - 1])


def test_convert_real_v21_subset(tmp_path):
    root = require_shared_data("g1_lerobot_v2.1")
    convert_dataset("g1/x", root, tmp_path / "g1", episodes=[29], progress=False)
    a = LeRobotDataset("g1/x", root=root, episodes=[29], decoded_frame_cache=False)
    b = LeRobotDataset("g1/x", root=tmp_path / "g1", decoded_frame_cache=False)
    # A converted subset is a dataset of its own: episodes are renumbered from 0.
    assert b.num_episodes == 1 and b.episodes == [0]
    assert b[0]["index"].item() == 0
    assert_same_items(a, b, image_atol=0, indices=[0, 100, len(a) - 1], renumbered=True)
