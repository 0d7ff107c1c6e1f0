"""The contract every registered policy keeps; a new policy joins by adding its tiny config to helpers.py."""

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch

from lerobot.common.policies.factory import (
    available_policies,
    get_policy_classes,
    load_policy,
    make_policy,
    make_policy_config,
    shapes_from_features,
)
from lerobot.common.policies.pretrained import PretrainedPolicyNotFoundError
from tests.policies.helpers import TINY_CONFIGS, make_batch, make_stats, observation

POLICIES = available_policies()


def tiny_policy(name: str, seed: int = 0):
    config = make_policy_config(name, **TINY_CONFIGS[name])
    torch.manual_seed(seed)
    return make_policy(config, dataset_stats=make_stats({**config.input_shapes, **config.output_shapes}))


def test_every_policy_has_a_tiny_test_config():
    assert set(TINY_CONFIGS) == set(POLICIES)


@pytest.mark.parametrize("name", POLICIES)
def test_registry(name):
    config_class, policy_class = get_policy_classes(name)
    assert config_class.type == name and policy_class.name == name
    assert policy_class.config_class is config_class
    config = config_class()
    assert config_class.from_dict(config.to_dict()) == config
    json.dumps(config.to_dict())  # config.json must be plain JSON


@pytest.mark.parametrize("name", POLICIES)
def test_training_step_and_rollout(name):
    policy = tiny_policy(name)
    policy.train()
    batch = make_batch(policy.config)
    before = {k: v.clone() for k, v in batch.items()}
    out = policy(batch)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    out["loss"].backward()
    assert all(torch.equal(batch[k], before[k]) for k in before) and batch.keys() == before.keys()

    policy.eval()
    policy.reset()
    obs = observation(batch, policy.config)
    action_dim = policy.config.output_shapes["action"][0]
    for _ in range(3):
        action = policy.select_action(obs)
        assert action.shape == (2, action_dim) and torch.isfinite(action).all()


@pytest.mark.parametrize("name", POLICIES)
def test_save_and_load_any_policy(name, tmp_path):
    policy = tiny_policy(name).eval()
    obs = observation(make_batch(policy.config), policy.config)
    policy.save_pretrained(tmp_path)
    loaded = load_policy(tmp_path)
    assert type(loaded) is type(policy) and loaded.config == policy.config
    policy.reset()
    torch.manual_seed(0)
    expected = policy.select_action(obs)
    torch.manual_seed(0)
    assert torch.equal(loaded.select_action(obs), expected)


def test_loading_refuses_folders_without_a_checkpoint(tmp_path):
    policy = tiny_policy(POLICIES[0])
    with pytest.raises(PretrainedPolicyNotFoundError, match=r"lacks \['config.json', 'model.safetensors'\]"):
        type(policy).from_pretrained(tmp_path)
    policy.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(PretrainedPolicyNotFoundError, match=r"lacks \['model.safetensors'\]"):
        load_policy(tmp_path)
    with pytest.raises(PretrainedPolicyNotFoundError, match="is a file"):
        load_policy(tmp_path / "config.json")
    with pytest.raises(PretrainedPolicyNotFoundError, match="not a Hub repo id"):
        load_policy(tmp_path / "missing")
    with pytest.raises(PretrainedPolicyNotFoundError, match="not in the local Hub cache"):
        load_policy("nobody/no-such-policy", local_files_only=True)


def test_from_hub_repo_id(tmp_path, monkeypatch):
    policy = tiny_policy(POLICIES[0])
    policy.save_pretrained(tmp_path / "snapshot")
    fetched = []

    def fake_download(repo_id, filename, *, revision=None, **kwargs):
        fetched.append((repo_id, filename, revision))
        return str(tmp_path / "snapshot" / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = load_policy("lerobot/tiny", revision="v1")
    assert loaded.config == policy.config
    assert sorted(fetched) == [
        ("lerobot/tiny", "config.json", "v1"),
        ("lerobot/tiny", "model.safetensors", "v1"),
    ]


def test_push_to_hub(monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create_repo"] = (repo_id, kwargs)
            return f"https://huggingface.co/{repo_id}"

        def create_branch(self, repo_id, branch, **kwargs):
            calls["branch"] = branch

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["card"] = (Path(folder_path) / "README.md").read_text()
            calls["revision"] = kwargs["revision"]

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    policy = tiny_policy(POLICIES[0])
    url = policy.push_to_hub("me/policy", token="t", branch="dev", datasets=["lerobot/pusht"])
    assert url == "https://huggingface.co/me/policy"
    assert calls["files"] == ["README.md", "config.json", "model.safetensors"]
    assert calls["branch"] == calls["revision"] == "dev"
    assert calls["create_repo"][1]["exist_ok"] is True
    assert "- lerobot/pusht" in calls["card"]


def test_factory_errors():
    with pytest.raises(ValueError, match="Unknown policy 'actt'"):
        make_policy("actt")
    config = make_policy_config("act", **TINY_CONFIGS["act"])
    with pytest.raises(TypeError, match="chunk_size"):
        make_policy(config, chunk_size=3)
    assert make_policy("act", **TINY_CONFIGS["act"]).config == config


def test_shapes_from_dataset_features():
    features = {
        "observation.images.top": {
            "dtype": "video",
            "shape": (480, 640, 3),
            "names": ["height", "width", "channels"],
        },
        "observation.image": {
            "dtype": "image",
            "shape": (3, 96, 96),
            "names": ["channels", "height", "width"],
        },
        "observation.state": {"dtype": "float32", "shape": (14,), "names": None},
        "action": {"dtype": "float32", "shape": (14,), "names": None},
        "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
    }
    inputs, outputs = shapes_from_features(features)
    assert inputs == {
        "observation.images.top": [3, 480, 640],
        "observation.image": [3, 96, 96],
        "observation.state": [14],
    }
    assert outputs == {"action": [14]}
