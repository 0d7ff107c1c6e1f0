"""Finding datasets locally, in the Hub cache offline, downloading the right revision, and pushing."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from lerobot.common.datasets import hub
from lerobot.common.datasets.errors import DatasetNotFoundError, InvalidRepoIdError
from lerobot.common.datasets.lerobot_dataset import LeRobotDataset
from tests.datasets.helpers import record


@pytest.fixture(scope="module")
def tiny_v3(tmp_path_factory):
    root = tmp_path_factory.mktemp("src") / "tiny"
    record(root, (4, 3), "v3.0")
    return root


@pytest.fixture(scope="module")
def tiny_v21(tmp_path_factory):
    root = tmp_path_factory.mktemp("src21") / "tiny"
    record(root, (4, 3, 2), "v2.1")
    return root


def test_root_is_dataset_folder_or_parent(tiny_v3, tmp_path):
    assert LeRobotDataset("test/tiny", root=tiny_v3).root == tiny_v3
    parent = tmp_path / "parent"
    shutil.copytree(tiny_v3, parent / "test" / "tiny")
    assert LeRobotDataset("test/tiny", root=parent).root == parent / "test" / "tiny"


def test_data_dir_and_lerobot_home(tiny_v3, tmp_path, monkeypatch):
    shutil.copytree(tiny_v3, tmp_path / "dd" / "test" / "tiny")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "dd"))
    assert LeRobotDataset("test/tiny").root == tmp_path / "dd" / "test" / "tiny"
    monkeypatch.delenv("DATA_DIR")
    home = tmp_path / "home"
    shutil.copytree(tiny_v3, home / "test" / "tiny")
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    assert LeRobotDataset("test/tiny").root == home / "test" / "tiny"


def populate_hub_cache(cache: Path, repo_id: str, ref: str, source: Path, sha: str) -> Path:
    repo_dir = cache / f"datasets--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / ref).write_text(sha)
    snapshot = repo_dir / "snapshots" / sha
    shutil.copytree(source, snapshot)
    return snapshot


def test_offline_hub_cache_picks_newest_version(tiny_v3, tiny_v21, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    populate_hub_cache(cache, "test/tiny", "v2.1", tiny_v21, "a" * 40)
    snap = populate_hub_cache(cache, "test/tiny", "v3.0", tiny_v3, "b" * 40)
    ds = LeRobotDataset("test/tiny")
    assert ds.root == snap and ds.codebase_version == "v3.0" and len(ds) == 7
    old = LeRobotDataset("test/tiny", revision="v2.1")
    assert old.codebase_version == "v2.1" and len(old) == 9


def test_offline_missing_dataset_is_clear(monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="HF_HUB_OFFLINE"):
        LeRobotDataset("nobody/nothing")


@pytest.mark.parametrize("bad", ["../etc", "a/../b", "a/b/c", "noslash", "a/.hidden", "", "a/b c"])
def test_bad_repo_ids(bad):
    with pytest.raises(InvalidRepoIdError):
        LeRobotDataset(bad)


def test_download_uses_version_ref_and_episode_subset(tiny_v21, tmp_path, monkeypatch):
    """Online path with the Hub replaced by a folder: revision choice and per-episode allow patterns."""
    import fnmatch

    calls = []

    def fake_snapshot_download(repo_id, repo_type, revision, local_dir=None, allow_patterns=None, **kwargs):
        if kwargs.get("local_files_only"):
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError("not cached")
        calls.append((revision, allow_patterns))
        for path in tiny_v21.rglob("*"):
            rel = path.relative_to(tiny_v21).as_posix()
            if path.is_file() and (
                allow_patterns is None or any(fnmatch.fnmatch(rel, p) for p in allow_patterns)
            ):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, Path(local_dir) / rel)

    refs = SimpleNamespace(
        branches=[SimpleNamespace(name="main"), SimpleNamespace(name="v1.6")],
        tags=[SimpleNamespace(name="v2.1"), SimpleNamespace(name="v9.0")],
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    monkeypatch.setattr("huggingface_hub.HfApi.list_repo_refs", lambda self, *a, **k: refs)
    ds = LeRobotDataset("test/tiny", episodes=[1])
    assert ds.root == Path(hub.default_lerobot_home()) / "test" / "tiny"
    assert len(ds) == 3 and ds.episodes == [1]
    assert [c[0] for c in calls] == ["v2.1", "v2.1"]  # v9.0 is newer than we read; v2.1 beats v1.6 and main
    patterns = calls[1][1]
    assert "data/chunk-000/episode_000001.parquet" in patterns
    assert "data/chunk-000/episode_000000.parquet" not in patterns
    assert not (ds.root / "data" / "chunk-000" / "episode_000000.parquet").exists()


def test_push_to_hub_up_to_upload(tiny_v3, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args, kwargs))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    (tiny_v3 / "images").mkdir(exist_ok=True)
    url = LeRobotDataset("test/tiny", root=tiny_v3).push_to_hub(tags=["sim"], private=True)
    assert url.endswith("datasets/test/tiny")
    names = [c[0] for c in calls]
    assert names == ["create_repo", "upload_folder", "upload_file", "create_tag"]
    assert calls[0][2]["private"] is True and calls[0][2]["repo_type"] == "dataset"
    assert "images/*" in calls[1][2]["ignore_patterns"]
    card = calls[2][2]["path_or_fileobj"].decode()
    assert card.startswith("---\nlicense: apache-2.0") and "- robotics" in card and "- LeRobot" in card
    assert "- sim" in card and "episodes: 2, frames: 7" in card
    assert calls[3][2]["tag"] == "v3.0"


def test_push_refuses_offline(tiny_v3):
    with pytest.raises(DatasetNotFoundError, match="HF_HUB_OFFLINE"):
        LeRobotDataset("test/tiny", root=tiny_v3).push_to_hub()
