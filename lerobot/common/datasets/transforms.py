"""Training-time image augmentation implemented with plain torch ops.

The reference implementation builds its augmentations on torchvision's `transforms.v2`. torchvision is a
heavy, CUDA-build-specific dependency, and only five photometric operations are needed, so they are
re-implemented here with the same maths as `torchvision.transforms.v2.functional`:

* every op works on float tensors in [0, 1] shaped (C, H, W) or batched (..., C, H, W) and clamps to [0, 1];
* a random transform samples ONE factor per call and applies it to the whole tensor, so the frames of a
  (T, C, H, W) clip returned for several time steps stay photometrically consistent with each other.

`ImageTransforms(cfg)` wires the ops together the way the reference training config
(`training.image_transforms`) describes: each call applies a random subset of at most `max_num_transforms` of
the enabled transforms, picked with probability proportional to their weights.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

# ITU-R 601-2 luma weights, the ones torchvision (and PIL's "L" conversion) use for grayscale.
_LUMA_WEIGHTS = (0.2989, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------------------
# Functional ops
# ----------------------------------------------------------------------------------------------------------


def _check_image(img: Any, op: str) -> None:
    """Reject inputs the ops would silently mishandle (uint8 would overflow the [0, 1] maths)."""
    if not isinstance(img, Tensor):
        raise TypeError(f"{op}: img must be a torch.Tensor shaped (..., C, H, W), got {type(img).__name__}.")
    if not img.is_floating_point():
        raise TypeError(
            f"{op}: img must be a floating point tensor with values in [0, 1], got dtype {img.dtype}. "
            "Convert uint8 images with `img.float() / 255`."
        )
    if img.ndim < 3:
        raise ValueError(f"{op}: img must be shaped (..., C, H, W), got shape {tuple(img.shape)}.")


def _check_factor(factor: float, name: str, op: str) -> float:
    """Return `factor` as a Python float (numpy scalars welcome), or raise naming the op and argument."""
    if not isinstance(factor, numbers.Real) or isinstance(factor, bool) or not math.isfinite(factor):
        raise TypeError(f"{op}: {name} must be a finite number, got {factor!r}.")
    return float(factor)


def _blend(img1: Tensor, img2: Tensor, ratio: float) -> Tensor:
    """`ratio * img1 + (1 - ratio) * img2`, clamped: every op is an interpolation towards a degenerate image."""
    return (ratio * img1 + (1.0 - ratio) * img2).clamp_(0.0, 1.0)


def rgb_to_grayscale(img: Tensor) -> Tensor:
    """Luma of an RGB image, keeping a channel axis of size 1: (..., 3, H, W) -> (..., 1, H, W)."""
    r, g, b = img.unbind(dim=-3)
    gray = _LUMA_WEIGHTS[0] * r + _LUMA_WEIGHTS[1] * g + _LUMA_WEIGHTS[2] * b
    return gray.unsqueeze(-3)


def _num_channels(img: Tensor, op: str, allowed: tuple[int, ...] = (1, 3)) -> int:
    c = img.shape[-3]
    if c not in allowed:
        raise ValueError(
            f"{op}: expected {' or '.join(map(str, allowed))} channels on dim -3, got shape {tuple(img.shape)}."
        )
    return c


def adjust_brightness(img: Tensor, factor: float) -> Tensor:
    """Scale intensities by `factor` (a blend with a black image): 0 gives black, 1 the original."""
    _check_image(img, "adjust_brightness")
    factor = _check_factor(factor, "factor", "adjust_brightness")
    if factor < 0:
        raise ValueError(f"adjust_brightness: factor must be >= 0, got {factor}.")
    return img.mul(factor).clamp_(0.0, 1.0)


def adjust_contrast(img: Tensor, factor: float) -> Tensor:
    """Blend with the per-image mean of the grayscale image: 0 gives a flat gray image, 1 the original.

    The mean is taken per image (over C, H, W), so each frame of a batch keeps its own reference gray level.
    """
    _check_image(img, "adjust_contrast")
    factor = _check_factor(factor, "factor", "adjust_contrast")
    if factor < 0:
        raise ValueError(f"adjust_contrast: factor must be >= 0, got {factor}.")
    c = _num_channels(img, "adjust_contrast")
    gray = rgb_to_grayscale(img) if c == 3 else img
    mean = gray.mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, factor)


def adjust_saturation(img: Tensor, factor: float) -> Tensor:
    """Blend with the grayscale image: 0 gives grayscale, 1 the original, >1 more saturated colours."""
    _check_image(img, "adjust_saturation")
    factor = _check_factor(factor, "factor", "adjust_saturation")
    if factor < 0:
        raise ValueError(f"adjust_saturation: factor must be >= 0, got {factor}.")
    if _num_channels(img, "adjust_saturation") == 1:
        return img.clone()  # a grayscale image has no saturation to change
    return _blend(img, rgb_to_grayscale(img), factor)


def adjust_sharpness(img: Tensor, factor: float) -> Tensor:
    """Blend with a smoothed copy: 0 gives the smoothed image, 1 the original, >1 a sharpened image.

    The smoothing kernel is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (PIL's SMOOTH filter). Like PIL and
    torchvision, the one-pixel border is not filtered, so it is left unchanged whatever the factor.
    """
    _check_image(img, "adjust_sharpness")
    factor = _check_factor(factor, "factor", "adjust_sharpness")
    if factor < 0:
        raise ValueError(f"adjust_sharpness: factor must be >= 0, got {factor}.")
    c, h, w = img.shape[-3:]
    if h <= 2 or w <= 2:
        return img.clone()  # no interior pixel: nothing to smooth
    kernel = torch.ones(3, 3, dtype=img.dtype, device=img.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    flat = img.reshape(-1, c, h, w)
    smoothed = torch.nn.functional.conv2d(flat, kernel, groups=c)
    degenerate = flat.clone()
    degenerate[..., 1:-1, 1:-1] = smoothed
    return _blend(flat, degenerate, factor).reshape(img.shape)


def rgb_to_hsv(img: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV with every channel in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = img.unbind(dim=-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    chroma = maxc - minc
    gray = chroma == 0
    # Where the pixel is gray, hue and saturation are 0 by convention; divide by 1 there to avoid NaN.
    safe_chroma = torch.where(gray, torch.ones_like(chroma), chroma)
    sat = chroma / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    # Hue sector: which channel is the maximum decides the 60-degree sector, with red winning ties.
    hue_r = (g - b) / safe_chroma
    hue_g = 2.0 + (b - r) / safe_chroma
    hue_b = 4.0 + (r - g) / safe_chroma
    hue = torch.where(maxc == r, hue_r, torch.where(maxc == g, hue_g, hue_b))
    hue = torch.where(gray, torch.zeros_like(hue), hue)
    hue = torch.remainder(hue / 6.0, 1.0)
    return torch.stack((hue, sat, maxc), dim=-3)


def hsv_to_rgb(img: Tensor) -> Tensor:
    """Inverse of `rgb_to_hsv`.

    Uses the closed form channel(n) = V - V * S * clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6 and
    n = 5, 3, 1 for R, G, B: it is branch-free, so it vectorises without per-sector masks.
    """
    hue, sat, val = img.unbind(dim=-3)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + hue * 6.0, 6.0)
        ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
        channels.append(val - val * sat * ramp)
    return torch.stack(channels, dim=-3)


def adjust_hue(img: Tensor, hue_factor: float) -> Tensor:
    """Rotate the hue by `hue_factor` turns (in [-0.5, 0.5]); 0 leaves the image unchanged."""
    _check_image(img, "adjust_hue")
    hue_factor = _check_factor(hue_factor, "hue_factor", "adjust_hue")
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"adjust_hue: hue_factor must be within [-0.5, 0.5], got {hue_factor}.")
    if _num_channels(img, "adjust_hue") == 1:
        return img.clone()  # grayscale has no hue
    hsv = rgb_to_hsv(img.clamp(0.0, 1.0))
    hue, sat, val = hsv.unbind(dim=-3)
    hue = torch.remainder(hue + hue_factor, 1.0)
    return hsv_to_rgb(torch.stack((hue, sat, val), dim=-3)).clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------
# Random single-factor transforms
# ----------------------------------------------------------------------------------------------------------


def _parse_min_max(min_max: Any, name: str, lower: float, upper: float) -> tuple[float, float]:
    """Validate a [min, max] range against the op's domain; errors name the transform and the value."""
    try:
        if isinstance(min_max, (str, bytes)):
            raise TypeError
        lo, hi = (float(v) for v in min_max)  # any iterable of exactly two numbers (list, tuple, array)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: min_max must be a pair [min, max] of numbers, got {min_max!r}.") from e
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: min_max must be finite, got {min_max!r}.")
    if lo > hi:
        raise ValueError(f"{name}: min_max must satisfy min <= max, got {min_max!r}.")
    if lo < lower or hi > upper:
        raise ValueError(f"{name}: min_max must lie within [{lower}, {upper}], got {min_max!r}.")
    return lo, hi


class _RandomFactor(nn.Module):
    """Base class: sample a factor uniformly from `min_max` on every call, apply it to the whole input.

    The factor comes from torch's global RNG, so `torch.manual_seed` makes a training run reproducible and
    DataLoader workers (which torch seeds differently) augment differently.
    """

    lower: float = 0.0
    upper: float = math.inf
    identity: float = 1.0

    def __init__(self, min_max: Sequence[float]):
        super().__init__()
        self.min_max = _parse_min_max(min_max, type(self).__name__, self.lower, self.upper)

    def sample_factor(self) -> float:
        lo, hi = self.min_max
        if lo == hi:
            return lo
        return float(torch.empty(()).uniform_(lo, hi).item())

    def apply(self, img: Tensor, factor: float) -> Tensor:
        raise NotImplementedError

    def forward(self, img: Tensor) -> Tensor:
        return self.apply(img, self.sample_factor())

    def extra_repr(self) -> str:
        return f"min_max={self.min_max}"


class Brightness(_RandomFactor):
    """Random `adjust_brightness` with a factor drawn from `min_max` (factors >= 0)."""

    def apply(self, img: Tensor, factor: float) -> Tensor:
        return adjust_brightness(img, factor)


class Contrast(_RandomFactor):
    """Random `adjust_contrast` with a factor drawn from `min_max` (factors >= 0)."""

    def apply(self, img: Tensor, factor: float) -> Tensor:
        return adjust_contrast(img, factor)


class Saturation(_RandomFactor):
    """Random `adjust_saturation` with a factor drawn from `min_max` (factors >= 0)."""

    def apply(self, img: Tensor, factor: float) -> Tensor:
        return adjust_saturation(img, factor)


class Hue(_RandomFactor):
    """Random `adjust_hue` with a hue shift drawn from `min_max` (within [-0.5, 0.5] turns)."""

    lower = -0.5
    upper = 0.5
    identity = 0.0

    def apply(self, img: Tensor, factor: float) -> Tensor:
        return adjust_hue(img, factor)


class SharpnessJitter(_RandomFactor):
    """Random `adjust_sharpness` with a factor drawn from `min_max` (factors >= 0)."""

    def apply(self, img: Tensor, factor: float) -> Tensor:
        return adjust_sharpness(img, factor)


class RandomSubsetApply(nn.Module):
    """Apply a random subset of `transforms` on each call.

    `n_subset` transforms (default: all) are drawn without replacement, each with probability proportional
    to its weight in `p`, then applied in the order they were given unless `random_order` is set. Applying a
    few mild augmentations at a time keeps images realistic while still covering every combination.
    """

    def __init__(
        self,
        transforms: Sequence[nn.Module],
        p: Sequence[float] | None = None,
        n_subset: int | None = None,
        random_order: bool = False,
    ):
        super().__init__()
        if isinstance(transforms, nn.Module) or not isinstance(transforms, Sequence) or not transforms:
            raise TypeError(f"transforms must be a non-empty sequence of callables, got {transforms!r}.")
        if not all(callable(t) for t in transforms):
            raise TypeError("transforms must contain only callables (e.g. nn.Module instances).")
        n = len(transforms)
        if p is None:
            p = [1.0] * n
        if len(p) != n:
            raise ValueError(
                f"p must have one weight per transform: got {len(p)} weights for {n} transforms."
            )
        weights = [float(w) for w in p]
        if any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"p must hold finite non-negative weights, got {list(p)}.")
        num_positive = sum(w > 0 for w in weights)
        if num_positive == 0:
            raise ValueError(f"p must contain at least one positive weight, got {list(p)}.")
        if n_subset is None:
            n_subset = num_positive
        if not isinstance(n_subset, int) or isinstance(n_subset, bool):
            raise TypeError(f"n_subset must be an int, got {n_subset!r}.")
        if not 1 <= n_subset <= num_positive:
            raise ValueError(
                f"n_subset must be between 1 and the number of transforms with a positive weight "
                f"({num_positive}), got {n_subset}."
            )
        self.transforms = nn.ModuleList(t if isinstance(t, nn.Module) else _Lambda(t) for t in transforms)
        total = sum(weights)
        self.register_buffer(
            "p", torch.tensor([w / total for w in weights], dtype=torch.float64), persistent=False
        )
        self.n_subset = n_subset
        self.random_order = bool(random_order)

    def sample_indices(self) -> list[int]:
        """The indices of the transforms the next call would apply, in application order."""
        picked = torch.multinomial(self.p, self.n_subset, replacement=False)
        if not self.random_order:
            picked = picked.sort().values
        return picked.tolist()

    def forward(self, img: Tensor) -> Tensor:
        for i in self.sample_indices():
            img = self.transforms[i](img)
        return img

    def extra_repr(self) -> str:
        probs = [round(x, 4) for x in self.p.tolist()]
        return f"n_subset={self.n_subset}, random_order={self.random_order}, p={probs}"


class _Lambda(nn.Module):
    """Wrap a plain callable so it can live in an nn.ModuleList."""

    def __init__(self, fn: Any):
        super().__init__()
        self.fn = fn

    def forward(self, img: Tensor) -> Tensor:
        return self.fn(img)


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

# name -> (transform class, reference default min_max)
_TRANSFORMS: dict[str, tuple[type[_RandomFactor], tuple[float, float]]] = {
    "brightness": (Brightness, (0.8, 1.2)),
    "contrast": (Contrast, (0.8, 1.2)),
    "saturation": (Saturation, (0.5, 1.5)),
    "hue": (Hue, (-0.05, 0.05)),
    "sharpness": (SharpnessJitter, (0.8, 1.2)),
}


@dataclasses.dataclass
class ImageTransformConfig:
    """One transform's entry: its sampling `weight` and the `min_max` range its factor is drawn from.

    `min_max=None` or `weight=0` switches the transform off.
    """

    weight: float = 1.0
    min_max: tuple[float, float] | None = None

    @classmethod
    def from_dict(cls, name: str, d: Mapping[str, Any] | ImageTransformConfig) -> ImageTransformConfig:
        if isinstance(d, ImageTransformConfig):
            return dataclasses.replace(d)
        if not isinstance(d, Mapping):
            raise TypeError(f"image_transforms.{name} must be a mapping {{weight, min_max}}, got {d!r}.")
        unknown = set(d) - {"weight", "min_max"}
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(map(str, unknown))} in image_transforms.{name}; "
                "expected only 'weight' and 'min_max'."
            )
        kwargs = dict(d)
        if kwargs.get("min_max") is not None:
            kwargs["min_max"] = tuple(kwargs["min_max"])
        return cls(**kwargs)


def _default(name: str) -> Any:
    return dataclasses.field(default_factory=lambda: ImageTransformConfig(1.0, _TRANSFORMS[name][1]))


@dataclasses.dataclass
class ImageTransformsConfig:
    """Mirror of the reference `training.image_transforms` hydra section, with the reference defaults.

    Augmentation is off by default (`enable=False`): it helps real-robot policies generalise but changes
    what a policy trained on a benchmark sees, so it must be asked for.
    """

    enable: bool = False
    max_num_transforms: int = 3
    random_order: bool = False
    brightness: ImageTransformConfig = _default("brightness")
    contrast: ImageTransformConfig = _default("contrast")
    saturation: ImageTransformConfig = _default("saturation")
    hue: ImageTransformConfig = _default("hue")
    sharpness: ImageTransformConfig = _default("sharpness")

    def __post_init__(self) -> None:
        if not isinstance(self.enable, bool):
            raise TypeError(f"image_transforms.enable must be a bool, got {self.enable!r}.")
        if not isinstance(self.random_order, bool):
            raise TypeError(f"image_transforms.random_order must be a bool, got {self.random_order!r}.")
        if not isinstance(self.max_num_transforms, int) or isinstance(self.max_num_transforms, bool):
            raise TypeError(
                f"image_transforms.max_num_transforms must be an int, got {self.max_num_transforms!r}."
            )
        if self.max_num_transforms < 0:
            raise ValueError(
                f"image_transforms.max_num_transforms must be >= 0, got {self.max_num_transforms}."
            )
        for name, (cls, _) in _TRANSFORMS.items():
            tf = getattr(self, name)
            if not isinstance(tf, ImageTransformConfig):
                tf = ImageTransformConfig.from_dict(name, tf)
                setattr(self, name, tf)
            weight = tf.weight
            if not isinstance(weight, numbers.Real) or isinstance(weight, bool) or not math.isfinite(weight):
                raise TypeError(f"image_transforms.{name}.weight must be a finite number, got {weight!r}.")
            if weight < 0:
                raise ValueError(f"image_transforms.{name}.weight must be >= 0, got {weight}.")
            if tf.min_max is not None:
                tf.min_max = _parse_min_max(tf.min_max, f"image_transforms.{name}", cls.lower, cls.upper)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ImageTransformsConfig:
        """Build from a plain (or OmegaConf) mapping as found under `training.image_transforms` in a yaml.

        Missing keys keep their defaults; unknown keys are an error, since a typo (`brigthness`) would
        otherwise silently leave the default in place.
        """
        if d is None:
            return cls()
        if not isinstance(d, Mapping):
            raise TypeError(f"image_transforms must be a mapping, got {type(d).__name__}: {d!r}.")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in d if k not in fields]
        if unknown:
            raise ValueError(
                f"Unknown key(s) {sorted(unknown)} in image_transforms; valid keys are {fields}."
            )
        kwargs = {}
        for key, value in d.items():
            kwargs[key] = ImageTransformConfig.from_dict(key, value) if key in _TRANSFORMS else value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (min_max as lists) suitable for yaml/JSON; `from_dict` round-trips it."""
        out = dataclasses.asdict(self)
        for name in _TRANSFORMS:
            if out[name]["min_max"] is not None:
                out[name]["min_max"] = list(out[name]["min_max"])
        return out

    def enabled_transforms(self) -> dict[str, ImageTransformConfig]:
        """The transforms that would actually do something: positive weight and a non-identity range."""
        out = {}
        for name, (cls, _) in _TRANSFORMS.items():
            tf: ImageTransformConfig = getattr(self, name)
            if tf.weight <= 0 or tf.min_max is None:
                continue
            if tf.min_max == (cls.identity, cls.identity):
                continue
            out[name] = tf
        return out


class ImageTransforms(nn.Module):
    """The augmentation a dataset applies to every camera frame, built from an `ImageTransformsConfig`.

    Acts as the identity when `cfg.enable` is False, when no transform is enabled or when
    `max_num_transforms` is 0. `self.transforms` maps each enabled transform's name to its module, which is
    handy to visualise one augmentation at a time.
    """

    def __init__(self, cfg: ImageTransformsConfig | Mapping[str, Any] | None = None):
        super().__init__()
        if cfg is None or isinstance(cfg, Mapping):
            cfg = ImageTransformsConfig.from_dict(cfg)
        if not isinstance(cfg, ImageTransformsConfig):
            raise TypeError(f"cfg must be an ImageTransformsConfig or a mapping, got {type(cfg).__name__}.")
        self.cfg = cfg
        enabled = cfg.enabled_transforms()
        self.transforms = nn.ModuleDict(
            {name: _TRANSFORMS[name][0](tf.min_max) for name, tf in enabled.items()}
        )
        n_subset = min(len(enabled), cfg.max_num_transforms)
        self.tf: nn.Module
        if not cfg.enable or n_subset == 0:
            self.tf = nn.Identity()
        else:
            self.tf = RandomSubsetApply(
                list(self.transforms.values()),
                p=[tf.weight for tf in enabled.values()],
                n_subset=n_subset,
                random_order=cfg.random_order,
            )

    def forward(self, img: Tensor) -> Tensor:
        return self.tf(img)
