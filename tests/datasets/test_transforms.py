import colorsys
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from lerobot.common.datasets.transforms import (
    Brightness,
    Contrast,
    Hue,
    ImageTransformConfig,
    ImageTransforms,
    ImageTransformsConfig,
    RandomSubsetApply,
    Saturation,
    SharpnessJitter,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    adjust_sharpness,
    hsv_to_rgb,
    rgb_to_hsv,
)

# PIL works in uint8: Image.blend truncates (not rounds) its result, which costs up to 1 step, and the
# "degenerate" image it blends with (grayscale, its mean, the smoothed image) is itself rounded to uint8,
# which costs up to 0.5 step times |1 - factor|. 1.5 steps covers both for the factors tested (<= 2).
PIL_ATOL = 1.5 / 255
FACTORS = [0.0, 0.3, 0.8, 1.0, 1.2, 1.5, 2.0]


@pytest.fixture(scope="module")
def uint8_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    "op, enhancer",
    [
        (adjust_brightness, ImageEnhance.Brightness),
        (adjust_contrast, ImageEnhance.Contrast),
        (adjust_saturation, ImageEnhance.Color),
        (adjust_sharpness, ImageEnhance.Sharpness),
    ],
)
def test_matches_pil(uint8_image, op, enhancer):
    pil = Image.fromarray(uint8_image)
    img = to_tensor(uint8_image)
    for factor in FACTORS:
        expected = np.asarray(enhancer(pil).enhance(factor)).astype(np.float32) / 255
        out = op(img, factor)
        assert out.shape == img.shape and out.dtype == img.dtype
        assert out.min() >= 0 and out.max() <= 1
        np.testing.assert_allclose(to_numpy(out), expected, atol=PIL_ATOL, rtol=0, err_msg=f"factor={factor}")


@pytest.mark.parametrize("op", [adjust_brightness, adjust_contrast, adjust_saturation, adjust_sharpness])
def test_factor_one_is_identity(uint8_image, op):
    img = to_tensor(uint8_image)
    torch.testing.assert_close(op(img, 1.0), img)


def test_sharpness_keeps_border(uint8_image):
    img = to_tensor(uint8_image)
    out = adjust_sharpness(img, 0.0)
    for border in (slice(0, 1), slice(-1, None)):
        torch.testing.assert_close(out[:, border], img[:, border])
        torch.testing.assert_close(out[:, :, border], img[:, :, border])
    assert not torch.allclose(out[:, 1:-1, 1:-1], img[:, 1:-1, 1:-1])


def _hue_reference(arr: np.ndarray, shift: float) -> np.ndarray:
    out = np.empty(arr.shape, dtype=np.float64)
    for y in range(arr.shape[0]):
        for x in range(arr.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*arr[y, x])
            out[y, x] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


@pytest.mark.parametrize("shift", [-0.5, -0.23, -0.05, 0.0, 0.05, 0.31, 0.5])
def test_hue_matches_colorsys(shift):
    arr = np.random.default_rng(1).random((6, 7, 3))
    arr[0, 0] = [0.4, 0.4, 0.4]  # gray pixel: hue undefined, must stay gray
    arr[0, 1] = [0.0, 0.0, 0.0]
    arr[0, 2] = [0.9, 0.9, 0.2]  # ties between max channels
    arr[0, 3] = [0.3, 0.8, 0.8]
    out = adjust_hue(torch.from_numpy(arr).permute(2, 0, 1), shift)
    np.testing.assert_allclose(to_numpy(out), _hue_reference(arr, shift), atol=1e-9)


def test_hsv_roundtrip_matches_colorsys():
    arr = np.random.default_rng(2).random((5, 5, 3))
    hsv = rgb_to_hsv(torch.from_numpy(arr).permute(2, 0, 1))
    expected = np.array([[colorsys.rgb_to_hsv(*px) for px in row] for row in arr])
    np.testing.assert_allclose(to_numpy(hsv), expected, atol=1e-12)
    np.testing.assert_allclose(to_numpy(hsv_to_rgb(hsv)), arr, atol=1e-12)


def test_grayscale_single_channel():
    img = torch.rand(1, 8, 8)
    torch.testing.assert_close(adjust_saturation(img, 0.3), img)
    torch.testing.assert_close(adjust_hue(img, 0.3), img)
    expected = (0.5 * img + 0.5 * img.mean()).clamp(0, 1)
    torch.testing.assert_close(adjust_contrast(img, 0.5), expected)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: adjust_brightness(torch.zeros(3, 4, 4, dtype=torch.uint8), 1.0), TypeError),
        (lambda: adjust_brightness(np.zeros((3, 4, 4)), 1.0), TypeError),
        (lambda: adjust_brightness(torch.zeros(4, 4), 1.0), ValueError),
        (lambda: adjust_brightness(torch.zeros(3, 4, 4), -0.1), ValueError),
        (lambda: adjust_contrast(torch.zeros(4, 4, 4), 1.0), ValueError),
        (lambda: adjust_hue(torch.zeros(3, 4, 4), 0.6), ValueError),
        (lambda: adjust_sharpness(torch.zeros(3, 4, 4), float("nan")), TypeError),
    ],
)
def test_functional_errors(call, exc):
    with pytest.raises(exc):
        call()


@pytest.mark.parametrize(
    "cls, min_max",
    [(Brightness, (0.5, 1.5)), (Contrast, (0.5, 1.5)), (Saturation, (0.0, 2.0)), (Hue, (-0.3, 0.3))]
    + [(SharpnessJitter, (0.0, 3.0))],
)
def test_batched_frames_share_parameters(cls, min_max):
    frame = torch.rand(3, 9, 10)
    clip = frame.expand(4, 2, 3, 9, 10).clone()  # (B, T, C, H, W): identical frames
    torch.manual_seed(0)
    out = cls(min_max)(clip)
    assert out.shape == clip.shape
    flat = out.reshape(-1, 3, 9, 10)
    for i in range(1, flat.shape[0]):
        torch.testing.assert_close(flat[i], flat[0])
    assert not torch.allclose(flat[0], frame)  # a factor other than identity was applied


def test_factor_is_sampled_within_range():
    torch.manual_seed(0)
    tf = Brightness((0.5, 0.7))
    factors = [tf.sample_factor() for _ in range(200)]
    assert min(factors) >= 0.5 and max(factors) <= 0.7
    assert max(factors) - min(factors) > 0.15
    assert Brightness((0.9, 0.9)).sample_factor() == 0.9


@pytest.mark.parametrize(
    "cls, min_max, exc",
    [
        (Brightness, (1.2, 0.8), ValueError),
        (Contrast, (-0.1, 1.0), ValueError),
        (Saturation, (0.5,), TypeError),
        (SharpnessJitter, "ab", TypeError),
        (Hue, (-0.6, 0.1), ValueError),
        (Hue, (0.0, 0.51), ValueError),
        (Brightness, (0.5, float("inf")), ValueError),
    ],
)
def test_transform_validation(cls, min_max, exc):
    with pytest.raises(exc, match="min_max"):
        cls(min_max)


class AddConst(torch.nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x * 10 + self.value  # order-sensitive, so the application order is visible


def test_random_subset_picks_n_distinct_in_canonical_order():
    torch.manual_seed(0)
    rsa = RandomSubsetApply([AddConst(i) for i in range(5)], n_subset=3)
    for _ in range(50):
        idx = rsa.sample_indices()
        assert len(idx) == 3 and len(set(idx)) == 3 and idx == sorted(idx)
    # Applying (0, 2, 4) in order on 0 gives 0 -> 0 -> 2 -> 24.
    torch.manual_seed(1)
    idx = rsa.sample_indices()
    torch.manual_seed(1)
    out = rsa(torch.zeros(()))
    expected = 0.0
    for i in idx:
        expected = expected * 10 + i
    assert out.item() == expected


def test_random_subset_random_order_and_weights():
    torch.manual_seed(0)
    rsa = RandomSubsetApply([AddConst(i) for i in range(3)], p=[1, 2, 5], n_subset=1)
    counts = Counter(rsa.sample_indices()[0] for _ in range(4000))
    freqs = np.array([counts[i] for i in range(3)]) / 4000
    np.testing.assert_allclose(freqs, [1 / 8, 2 / 8, 5 / 8], atol=0.03)

    rsa = RandomSubsetApply([AddConst(i) for i in range(3)], p=[0, 1, 1], random_order=True)
    orders = Counter(tuple(rsa.sample_indices()) for _ in range(400))
    assert set(orders) == {(1, 2), (2, 1)}  # zero weight never picked; both orders occur


def test_random_subset_validation():
    tfs = [AddConst(0), AddConst(1)]
    with pytest.raises(ValueError, match="one weight per transform"):
        RandomSubsetApply(tfs, p=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        RandomSubsetApply(tfs, p=[1.0, -1.0])
    with pytest.raises(ValueError, match="n_subset"):
        RandomSubsetApply(tfs, n_subset=3)
    with pytest.raises(ValueError, match="n_subset"):
        RandomSubsetApply(tfs, p=[1, 0], n_subset=2)
    with pytest.raises(TypeError, match="n_subset"):
        RandomSubsetApply(tfs, n_subset=1.5)
    with pytest.raises(TypeError, match="transforms"):
        RandomSubsetApply([])


def test_image_transforms_default_is_identity():
    img = torch.rand(2, 3, 8, 8)
    tf = ImageTransforms(ImageTransformsConfig())
    assert isinstance(tf.tf, torch.nn.Identity)
    assert tf(img) is img
    assert len(tf.transforms) == 5


def test_image_transforms_determinism_and_effect():
    cfg = ImageTransformsConfig(enable=True)
    img = torch.rand(3, 3, 12, 12)
    torch.manual_seed(42)
    a = ImageTransforms(cfg)(img)
    torch.manual_seed(42)
    b = ImageTransforms(cfg)(img)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, img)
    assert a.min() >= 0 and a.max() <= 1


def test_image_transforms_disabling():
    cfg = ImageTransformsConfig.from_dict(
        {
            "enable": True,
            "max_num_transforms": 5,
            "brightness": {"weight": 0.0},
            "contrast": {"min_max": [1.0, 1.0]},
            "hue": {"weight": 2.0, "min_max": [0.0, 0.0]},
            "saturation": {"min_max": None},
        }
    )
    tf = ImageTransforms(cfg)
    assert list(tf.transforms) == ["sharpness"]
    assert tf.tf.n_subset == 1
    none_left = ImageTransformsConfig(enable=True, max_num_transforms=0)
    assert isinstance(ImageTransforms(none_left).tf, torch.nn.Identity)


def test_config_from_dict_roundtrip():
    d = {
        "enable": True,
        "max_num_transforms": 2,
        "random_order": True,
        "brightness": {"weight": 2, "min_max": [0.5, 1.5]},
        "hue": {"weight": 1.0, "min_max": [-0.1, 0.1]},
    }
    cfg = ImageTransformsConfig.from_dict(d)
    assert cfg.brightness == ImageTransformConfig(2, (0.5, 1.5))
    assert cfg.hue.min_max == (-0.1, 0.1)
    assert cfg.saturation.min_max == (0.5, 1.5)  # default kept
    assert ImageTransformsConfig.from_dict(cfg.to_dict()) == cfg
    tf = ImageTransforms(d)
    assert tf.tf.n_subset == 2 and tf.tf.random_order


@pytest.mark.parametrize(
    "d, exc, match",
    [
        ({"brigthness": {"weight": 1}}, ValueError, "brigthness"),
        ({"brightness": {"weight": 1, "min": 0}}, ValueError, "min"),
        ({"brightness": {"min_max": [1.2, 0.8]}}, ValueError, "min <= max"),
        ({"brightness": {"weight": -1}}, ValueError, "weight"),
        ({"hue": {"min_max": [-0.7, 0.0]}}, ValueError, "hue"),
        ({"sharpness": {"min_max": [-1, 1]}}, ValueError, "sharpness"),
        ({"max_num_transforms": -1}, ValueError, "max_num_transforms"),
        ({"max_num_transforms": "3"}, TypeError, "max_num_transforms"),
        ({"enable": "yes"}, TypeError, "enable"),
        ({"contrast": [0.8, 1.2]}, TypeError, "contrast"),
    ],
)
def test_config_validation(d, exc, match):
    with pytest.raises(exc, match=match):
        ImageTransformsConfig.from_dict(d)
