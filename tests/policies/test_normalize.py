import numpy as np
import pytest
import torch

from lerobot.common.policies.normalize import (
    NormalizationStatsError,
    Normalize,
    Unnormalize,
    feature_type,
    resolve_modes,
)

SHAPES = {"observation.images.top": [3, 4, 5], "observation.state": [2], "action": [2]}


def stats():
    return {
        "observation.images.top": {
            "mean": torch.tensor([0.4, 0.5, 0.6]).reshape(3, 1, 1),
            "std": torch.tensor([0.2, 0.25, 0.3]).reshape(3, 1, 1),
            "min": torch.zeros(3, 1, 1),
            "max": torch.ones(3, 1, 1),
        },
        "observation.state": {
            "mean": torch.tensor([1.0, -2.0]),
            "std": torch.tensor([2.0, 0.5]),
            "min": torch.tensor([-3.0, -4.0]),
            "max": torch.tensor([5.0, 0.0]),
        },
        "action": {
            "mean": torch.tensor([0.0, 10.0]),
            "std": torch.tensor([1.0, 3.0]),
            "min": torch.tensor([-1.0, 0.0]),
            "max": torch.tensor([1.0, 20.0]),
        },
    }


def batch():
    g = torch.Generator().manual_seed(0)
    return {
        "observation.images.top": torch.rand(2, 3, 4, 5, generator=g),
        "observation.state": torch.randn(2, 2, generator=g) * 3,
        "action": torch.randn(2, 7, 2, generator=g) * 5,  # a chunk of actions broadcasts too
        "index": torch.tensor([3, 4]),
    }


@pytest.mark.parametrize("mode", ["mean_std", "min_max"])
def test_round_trip(mode):
    modes = dict.fromkeys(SHAPES, mode)
    norm, unnorm = Normalize(SHAPES, modes, stats()), Unnormalize(SHAPES, modes, stats())
    b = batch()
    out = norm(b)
    for key in SHAPES:
        assert out[key].shape == b[key].shape
        assert not torch.allclose(out[key], b[key])
        torch.testing.assert_close(unnorm(out)[key], b[key], rtol=1e-5, atol=1e-5)
    assert out["index"] is b["index"]  # keys without a mode pass through


def test_formulas():
    s = stats()["observation.state"]
    x = torch.tensor([[3.0, -1.0]])
    out = Normalize({"observation.state": [2]}, {"observation.state": "mean_std"}, stats())(
        {"observation.state": x}
    )
    torch.testing.assert_close(out["observation.state"], (x - s["mean"]) / (s["std"] + 1e-8))
    out = Normalize({"observation.state": [2]}, {"observation.state": "min_max"}, stats())(
        {"observation.state": torch.stack([s["min"], s["max"]])}
    )
    torch.testing.assert_close(out["observation.state"], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_image_stats_broadcast_per_channel():
    norm = Normalize(SHAPES, {"VISUAL": "mean_std"}, stats())
    assert norm.buffer_observation_images_top.mean.shape == (3, 1, 1)
    img = torch.full((1, 3, 4, 5), 0.5)
    out = norm({"observation.images.top": img})["observation.images.top"]
    expected = (0.5 - torch.tensor([0.4, 0.5, 0.6])) / (torch.tensor([0.2, 0.25, 0.3]) + 1e-8)
    torch.testing.assert_close(out[0, :, 2, 3], expected)


def test_input_batch_is_not_mutated():
    b = batch()
    before = {k: v.clone() for k, v in b.items()}
    Normalize(SHAPES, dict.fromkeys(SHAPES, "mean_std"), stats())(b)
    assert b.keys() == before.keys()
    for key in b:
        assert torch.equal(b[key], before[key])


def test_modes_by_key_and_by_type():
    assert feature_type("observation.images.top") == "VISUAL"
    assert feature_type("observation.image") == "VISUAL"
    assert feature_type("observation.environment_state") == "ENV"
    assert feature_type("observation.state") == "STATE"
    assert feature_type("action") == "ACTION"
    modes = {"VISUAL": "mean_std", "STATE": "min_max", "action": "MEAN_STD", "ACTION": "min_max"}
    assert resolve_modes(SHAPES, modes) == {
        "observation.images.top": "mean_std",
        "observation.state": "min_max",
        "action": "mean_std",  # an exact key wins over its type
    }
    assert resolve_modes(SHAPES, {"STATE": "identity", "action": None}) == {}


def test_stats_as_lists_and_flat_image_stats():
    raw = {
        "observation.images.top": {"mean": [0.5, 0.5, 0.5], "std": np.array([[[0.2]], [[0.2]], [[0.2]]])},
        "observation.state": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
    }
    norm = Normalize(SHAPES, {"VISUAL": "mean_std", "STATE": "mean_std"}, raw)
    assert norm.buffer_observation_images_top.mean.shape == (3, 1, 1)
    assert norm.buffer_observation_images_top.std.dtype == torch.float32


def test_buffers_are_in_the_state_dict_and_load():
    modes = dict.fromkeys(SHAPES, "mean_std")
    trained = Normalize(SHAPES, modes, stats())
    assert set(trained.state_dict()) == {
        "buffer_observation_images_top.mean",
        "buffer_observation_images_top.std",
        "buffer_observation_state.mean",
        "buffer_observation_state.std",
        "buffer_action.mean",
        "buffer_action.std",
    }
    assert list(trained.parameters()) == []  # statistics are never trained
    fresh = Normalize(SHAPES, modes)  # no stats: buffers at +inf until a checkpoint is loaded
    fresh.load_state_dict(trained.state_dict())
    b = batch()
    torch.testing.assert_close(fresh(b)["action"], trained(b)["action"])


def test_uninitialised_buffers_raise():
    norm = Unnormalize(SHAPES, {"action": "mean_std"})
    with pytest.raises(NormalizationStatsError, match="load a checkpoint.*dataset_stats"):
        norm({"action": torch.zeros(1, 2)})


def test_missing_stats_raise_at_construction():
    s = stats()
    del s["observation.state"]
    with pytest.raises(NormalizationStatsError, match="no entry for 'observation.state'"):
        Normalize(SHAPES, {"STATE": "mean_std"}, s)
    s = stats()
    del s["action"]["max"]
    with pytest.raises(NormalizationStatsError, match="no 'max'"):
        Normalize(SHAPES, {"action": "min_max"}, s)


def test_bad_stats_shape_and_bad_modes():
    s = stats()
    s["observation.state"]["mean"] = torch.zeros(3)
    with pytest.raises(NormalizationStatsError, match=r"shape \[3\], expected \[2\]"):
        Normalize(SHAPES, {"STATE": "mean_std"}, s)
    with pytest.raises(ValueError, match="Unknown normalisation mode 'z_score'"):
        Normalize(SHAPES, {"action": "z_score"}, stats())
    with pytest.raises(ValueError, match="'observation.velocity'"):
        Normalize(SHAPES, {"observation.velocity": "mean_std"}, stats())
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        Normalize({"observation.image": [3, 4]}, {"VISUAL": "mean_std"}, None)
