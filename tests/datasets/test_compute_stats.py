import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lerobot.common.datasets.compute_stats import (
    QUANTILE_KEYS,
    QUANTILES,
    aggregate_stats,
    auto_downsample_height_width,
    cast_stats_to_numpy,
    compute_episode_stats,
    compute_stats,
    estimate_num_samples,
    sample_indices,
    serialize_stats,
)

STAT_KEYS = {"min", "max", "mean", "std", "count", *QUANTILE_KEYS}
FEATURES = {
    "action": {"dtype": "float32", "shape": (3,)},
    "reward": {"dtype": "float64", "shape": (1,)},
    "index": {"dtype": "int64", "shape": (1,)},
    "done": {"dtype": "bool", "shape": (1,)},
    "task": {"dtype": "string", "shape": (1,)},
    "cam": {"dtype": "video", "shape": (6, 8, 3)},
}


def numpy_stats(x: np.ndarray, axis) -> dict:
    x = x.astype(np.float64)
    out = {"min": x.min(axis), "max": x.max(axis), "mean": x.mean(axis), "std": x.std(axis)}
    out.update(dict(zip(QUANTILE_KEYS, np.quantile(x, QUANTILES, axis=axis))))
    return out


def make_episode(rng: np.random.Generator, length: int) -> dict:
    return {
        "action": rng.normal(5.0, 2.0, (length, 3)).astype(np.float32),
        "reward": rng.random(length),
        "index": np.arange(length, dtype=np.int64) + rng.integers(0, 100),
        "done": rng.random(length) < 0.3,
        "task": np.array(["pick"] * length),
        "cam": rng.integers(0, 256, (length, 6, 8, 3), dtype=np.uint8),
    }


def test_episode_stats_match_numpy():
    rng = np.random.default_rng(0)
    ep = make_episode(rng, 40)
    stats = compute_episode_stats(ep, FEATURES)
    assert set(stats) == {"action", "reward", "index", "done", "cam"}
    for key in ("action", "reward", "index", "done"):
        assert set(stats[key]) == STAT_KEYS
        expected = numpy_stats(ep[key], axis=0)
        shape = (3,) if key == "action" else (1,)
        for k, v in expected.items():
            assert stats[key][k].shape == shape, (key, k)
            np.testing.assert_allclose(stats[key][k], np.reshape(v, shape), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(stats[key]["count"], [40])

    cam = stats["cam"]
    assert set(cam) == STAT_KEYS
    expected = numpy_stats(ep["cam"].reshape(-1, 3) / 255.0, axis=0)  # 40 frames: all are used
    for k, v in expected.items():
        assert cam[k].shape == (3, 1, 1)
        np.testing.assert_allclose(cam[k].ravel(), v, rtol=1e-12, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(cam["count"], [40])


@pytest.mark.parametrize(
    "length, expected",
    [(1, 1), (7, 7), (100, 100), (101, 100), (464, 100), (1000, 177), (100_000, 5623), (10**6, 10_000)],
)
def test_num_samples_formula(length, expected):
    assert estimate_num_samples(length) == expected == max(min(100, length), min(int(length**0.75), 10_000))


def test_sample_indices():
    idx = sample_indices(1000)
    assert len(idx) == 177 and idx[0] == 0 and idx[-1] == 999
    assert idx == sorted(set(idx))
    assert sample_indices(5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(0)


def test_image_subsampling_count_and_downsampling(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (300, 4, 5, 3), dtype=np.uint8)
    stats = compute_episode_stats({"cam": frames}, {"cam": {"dtype": "image"}})
    idx = sample_indices(300)
    assert stats["cam"]["count"].tolist() == [len(idx)] == [estimate_num_samples(300)]
    np.testing.assert_allclose(
        stats["cam"]["mean"].ravel(), frames[idx].reshape(-1, 3).mean(0) / 255, rtol=1e-12
    )

    big = np.zeros((320, 640, 3), dtype=np.uint8)
    assert auto_downsample_height_width(big).shape == (80, 160, 3)
    assert auto_downsample_height_width(big[:299, :299]).shape == (299, 299, 3)

    paths = []
    for i in range(3):
        path = tmp_path / f"frame_{i}.png"
        Image.fromarray(frames[i]).save(path)
        paths.append(path)
    from_paths = compute_episode_stats({"cam": paths}, {"cam": {"dtype": "image"}})["cam"]
    from_array = compute_episode_stats({"cam": frames[:3]}, {"cam": {"dtype": "image"}})["cam"]
    for k in STAT_KEYS:
        np.testing.assert_allclose(from_paths[k], from_array[k])


def test_aggregate_of_episodes_equals_concatenation():
    rng = np.random.default_rng(2)
    episodes = [make_episode(rng, n) for n in (30, 12, 50)]
    agg = aggregate_stats([compute_episode_stats(ep, FEATURES) for ep in episodes])
    for key in ("action", "reward", "index", "done", "cam"):
        if key == "cam":  # episodes shorter than 100 frames use every frame
            data, axis, shape = (
                np.concatenate([ep[key] for ep in episodes]).reshape(-1, 3) / 255,
                0,
                (3, 1, 1),
            )
        else:
            data, axis, shape = np.concatenate([ep[key] for ep in episodes]), 0, agg[key]["mean"].shape
        expected = numpy_stats(data, axis)
        for k in ("min", "max", "mean", "std"):
            np.testing.assert_allclose(agg[key][k], np.reshape(expected[k], shape), rtol=1e-10, atol=1e-12)
        assert agg[key]["count"].tolist() == [92]
        spread = np.reshape(expected["max"] - expected["min"], shape)
        if key == "index":
            continue  # each episode covers a different range: averaging quantiles is a poor estimate there
        for k in QUANTILE_KEYS:  # approximation: weighted mean of per-episode quantiles
            assert np.all(np.abs(agg[key][k] - np.reshape(expected[k], shape)) <= 0.15 * spread + 1e-9), (
                key,
                k,
            )


def test_aggregate_features_missing_in_some_episodes():
    a = {"x": {"min": [0.0], "max": [1.0], "mean": [0.5], "std": [0.1], "count": [10], "q50": [0.4]}}
    b = {"x": {"min": [-1.0], "max": [0.0], "mean": [-0.5], "std": [0.1], "count": [30]}, "y": a["x"]}
    agg = aggregate_stats([a, b])
    assert set(agg) == {"x", "y"}
    np.testing.assert_allclose(agg["x"]["mean"], [-0.25])
    np.testing.assert_allclose(agg["x"]["std"], [np.sqrt(0.01 + 0.25 * 0.75**2 + 0.75 * 0.25**2)])
    np.testing.assert_allclose(agg["x"]["q50"], [0.4])  # only `a` has it
    assert agg["x"]["count"].tolist() == [40]
    np.testing.assert_allclose(agg["y"]["mean"], [0.5])


def test_aggregate_errors():
    good = {"min": [0.0], "max": [1.0], "mean": [0.5], "std": [0.1], "count": [3]}
    with pytest.raises(ValueError, match="empty"):
        aggregate_stats([])
    with pytest.raises(ValueError, match="lack"):
        aggregate_stats([{"x": {"min": [0.0]}}])
    with pytest.raises(ValueError, match="shape"):
        aggregate_stats([{"x": good}, {"x": {**good, "mean": [0.0, 1.0]}}])
    with pytest.raises(ValueError, match="sum to 0"):
        aggregate_stats([{"x": {**good, "count": [0]}}])


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=6),
    dim=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    offset=st.sampled_from([0.0, -7.0, 1e5]),
)
def test_aggregate_random_partition_property(sizes, dim, seed, scale, offset):
    rng = np.random.default_rng(seed)
    data = rng.normal(offset, scale, (sum(sizes), dim))
    parts = np.split(data, np.cumsum(sizes)[:-1])
    features = {"x": {"dtype": "float64"}}
    agg = aggregate_stats([compute_episode_stats({"x": p}, features) for p in parts])["x"]
    np.testing.assert_array_equal(agg["min"], data.min(0))
    np.testing.assert_array_equal(agg["max"], data.max(0))
    np.testing.assert_allclose(agg["mean"], data.mean(0), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(agg["std"], data.std(0), rtol=1e-6, atol=1e-9 * scale)
    assert agg["count"].tolist() == [len(data)]


class ToyDataset(torch.utils.data.Dataset):
    features = {
        "observation.state": {"dtype": "float32", "shape": (2,)},
        "reward": {"dtype": "float32", "shape": (1,)},
        "task": {"dtype": "string", "shape": (1,)},
        "observation.image": {"dtype": "image", "shape": (3, 4, 5)},
    }
    camera_keys = ["observation.image"]

    def __init__(self, n: int):
        rng = np.random.default_rng(3)
        self.state = torch.from_numpy(rng.normal(100.0, 3.0, (n, 2)).astype(np.float32))
        self.reward = torch.from_numpy(rng.random(n).astype(np.float32))
        self.image = torch.from_numpy(rng.integers(0, 256, (n, 3, 4, 5), dtype=np.uint8)).float() / 255

    def __len__(self):
        return len(self.state)

    def __getitem__(self, i):
        return {
            "observation.state": self.state[i],
            "reward": self.reward[i],
            "task": "pick",
            "observation.image": self.image[i],
        }


def test_compute_stats_whole_dataset():
    ds = ToyDataset(75)
    stats = compute_stats(ds, batch_size=16)
    assert set(stats) == {"observation.state", "reward", "observation.image"}
    for key, data, shape in (("observation.state", ds.state, (2,)), ("reward", ds.reward, (1,))):
        expected = numpy_stats(data.double().numpy(), axis=0)
        for k, v in expected.items():  # < 10_000 rows: quantiles use every row, so all are exact
            assert stats[key][k].shape == shape
            np.testing.assert_allclose(stats[key][k], np.reshape(v, shape), rtol=1e-12, atol=1e-12, err_msg=k)
        assert stats[key]["count"].tolist() == [75]
    img = stats["observation.image"]
    expected = numpy_stats(ds.image.double().permute(1, 0, 2, 3).reshape(3, -1).numpy(), axis=1)
    for k, v in expected.items():  # uint8-sourced pixels: the histogram quantiles are exact too
        assert img[k].shape == (3, 1, 1)
        np.testing.assert_allclose(img[k].ravel(), v, rtol=0, atol=1e-7, err_msg=k)  # float32 k/255
    assert img["count"].tolist() == [75]


def test_compute_stats_subsample_is_seeded():
    ds = ToyDataset(60)
    a = compute_stats(ds, batch_size=7, max_num_samples=20, seed=1)
    b = compute_stats(ds, batch_size=32, max_num_samples=20, seed=1)
    c = compute_stats(ds, max_num_samples=20, seed=2)
    assert a["reward"]["count"].tolist() == [20]
    for k in STAT_KEYS:
        np.testing.assert_allclose(a["reward"][k], b["reward"][k], rtol=1e-12)
    assert not np.allclose(a["reward"]["mean"], c["reward"]["mean"])
    with pytest.raises(ValueError, match="max_num_samples"):
        compute_stats(ds, max_num_samples=0)
    with pytest.raises(ValueError, match="batch_size"):
        compute_stats(ds, batch_size=0)


def test_episode_stats_errors():
    with pytest.raises(ValueError, match="not among the features"):
        compute_episode_stats({"x": np.zeros(3)}, {})
    with pytest.raises(ValueError, match="dtype"):
        compute_episode_stats({"x": np.zeros(3)}, {"x": {"dtype": "complex-thing"}})
    with pytest.raises(ValueError, match="non-empty"):
        compute_episode_stats({"x": np.zeros((0, 2))}, {"x": {"dtype": "float32"}})
    with pytest.raises(TypeError, match="uint8"):
        compute_episode_stats({"c": np.zeros((2, 4, 4, 3), np.float32)}, {"c": {"dtype": "image"}})
    with pytest.raises(ValueError, match="T, H, W, C"):
        compute_episode_stats({"c": np.zeros((2, 4, 4), np.uint8)}, {"c": {"dtype": "image"}})


def test_serialize_roundtrip():
    rng = np.random.default_rng(4)
    stats = compute_episode_stats(make_episode(rng, 10), FEATURES)
    text = json.dumps(serialize_stats(stats))
    back = cast_stats_to_numpy(json.loads(text))
    assert set(back) == set(stats)
    for key in stats:
        for k, v in stats[key].items():
            assert back[key][k].shape == v.shape
            assert back[key][k].dtype == (np.int64 if k == "count" else np.float32)
            np.testing.assert_allclose(back[key][k], v, rtol=1e-6)
    assert serialize_stats({"a": {"m": torch.tensor([1.5]), "n": np.float32(2.0)}}) == {
        "a": {"m": [1.5], "n": 2.0}
    }
    with pytest.raises(TypeError, match="'m'"):
        serialize_stats({"a": {"m": object()}})
    with pytest.raises(TypeError, match="'m'"):
        cast_stats_to_numpy({"a": {"m": ["x"]}})
