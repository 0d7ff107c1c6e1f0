"""ResNet image backbones for the policies, written to be weight-compatible with torchvision.

The modules and parameters carry torchvision's names (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`,
...), so an ImageNet checkpoint saved by torchvision (`resnet18-f37072fd.pth`, or the same tensors in a
`.safetensors` file) loads with `load_torchvision_weights`. Only the convolutional trunk is built: there is
no `avgpool`/`fc`, and `forward` returns the layer4 feature map, (B, 3, H, W) -> (B, 512, H/32, W/32).

Normalisation layers, chosen with `norm`:
* "frozen_batch_norm": `FrozenBatchNorm2d`, batch norm with fixed statistics and affine terms (ACT, as DETR);
* "batch_norm": `nn.BatchNorm2d`;
* "group_norm": `nn.GroupNorm` with C // 16 groups (Diffusion Policy, VQ-BeT; batch-size independent).

Also here: centre/random crops and resizing of image batches, and the spatial-softmax keypoint encoder that
Diffusion Policy and VQ-BeT put on top of the trunk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies import tap_conv

# Blocks per stage; both use the two-conv "basic" block.
RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
RESNET_OUT_CHANNELS = 512
# The files behind torchvision's weight enums, and where torch.hub caches them.
TORCHVISION_WEIGHT_FILES = {
    "ResNet18_Weights.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "ResNet34_Weights.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet34-b627a593.pth",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# With frozen batch norm or group norm, a stage (the stem, each layer) runs on channels-last maps when its input
# map has at least this many pixels, else on NCHW maps. On CPU, oneDNN's convolutions are faster channels-last on
# large maps and the max pool is ~10x faster (torch's NCHW max pool is scalar); on small maps (a 512x512x3x3
# kernel on 6x8 -> 3x4) NCHW is faster. Values are the same either way.
CHANNELS_LAST_MIN_PIXELS = 100
# Trainable batch norm keeps NCHW maps: not measured channels-last.
CHANNELS_LAST_NORMS = ("frozen_batch_norm", "group_norm")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm whose statistics and affine parameters are fixed buffers, never trained.

    Computes (x - running_mean) / sqrt(running_var + eps) * weight + bias, exactly what `nn.BatchNorm2d`
    computes in eval mode, in train mode as well. Loading a BatchNorm2d state dict works: its
    `num_batches_tracked` entry is ignored.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:  # (C,), (C,)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        scale, shift = self.scale_and_shift()
        return x * scale[:, None, None] + shift[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def conv_norm(conv: nn.Conv2d, norm: nn.Module, x: Tensor) -> Tensor:
    """`norm(conv(x))`. A frozen batch norm is folded into the convolution's weights and bias instead: the
    same affine map, but one pass over the feature map instead of three (most of the stem's time on CPU).
    Gradients still reach `conv.weight` through the folded weights.

    While training, folding costs a pass over the weights each way; where the weights outnumber the output
    (small images, deep layers: a 512x512x3x3 kernel on a 3x4 map) the frozen affine map is applied to the
    output instead, in one fused multiply-add."""
    if not isinstance(norm, FrozenBatchNorm2d):
        return norm(_conv2d(conv, x, conv.weight, conv.bias))
    if torch.is_grad_enabled() and conv.weight.requires_grad and conv.weight.numel() > _output_numel(conv, x):
        scale, shift = norm.scale_and_shift()
        return torch.addcmul(
            shift[:, None, None], _conv2d(conv, x, conv.weight, conv.bias), scale[:, None, None]
        )
    weight, bias = _folded_conv_params(conv, norm, tap_conv.is_channels_last(x))
    return _conv2d(conv, x, weight, bias)


def _conv2d(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    # `conv`'s geometry with the given weights. tap_conv.conv2d is F.conv2d, with matrix-product weight gradients
    # on small maps while training and packed weights for inference (onednn.conv2d).
    return tap_conv.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def _output_numel(conv: nn.Conv2d, x: Tensor) -> int:
    height, width = map(
        tap_conv.conv_out_len, x.shape[-2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation
    )
    return x.shape[0] * conv.out_channels * height * width


def _folded_conv_params(
    conv: nn.Conv2d, norm: FrozenBatchNorm2d, channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    # Without autograd (inference) the folded weights are cached until a weight or buffer changes: folding
    # all 11M weights of a ResNet-18 costs as much as running it on a small image. Tensor version counters
    # move with every in-place update (optimizer steps, load_state_dict) and `.to()` makes new tensors.
    # For channels-last inputs the cached weights are channels-last too, or the convolution copies them so.
    tensors = (conv.weight, conv.bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    cacheable = not torch.is_grad_enabled() and not any(t is not None and t.is_inference() for t in tensors)
    if cacheable:
        key = tuple((t.data_ptr(), t._version) if t is not None else None for t in tensors)
        caches = norm.__dict__.setdefault("_folded_cache", {})  # one per layout (cameras of several sizes)
        cached = caches.get(channels_last)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
    if not cacheable:
        return _fold(conv, norm)
    # Made outside inference mode (where select_action may run), so that they are ordinary tensors with version
    # counters, which onednn.conv2d keys its packed copies on.
    with torch.inference_mode(False), torch.no_grad():
        weight, bias = _fold(conv, norm)
        if channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
    caches[channels_last] = (key, weight, bias)
    return weight, bias


def _fold(conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> tuple[Tensor, Tensor]:
    scale, shift = norm.scale_and_shift()
    weight = conv.weight * scale[:, None, None, None]
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias


def make_norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "frozen_batch_norm":
        return FrozenBatchNorm2d
    if norm == "batch_norm":
        return nn.BatchNorm2d
    if norm == "group_norm":
        return lambda channels: nn.GroupNorm(num_groups=channels // 16, num_channels=channels)
    raise ValueError(f"Unknown norm {norm!r}; choose 'frozen_batch_norm', 'batch_norm' or 'group_norm'.")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; `downsample` matches the skip path's shape."""

    def __init__(self, in_channels: int, channels: int, stride: int, norm_layer: Callable[[int], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), norm_layer(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        skip = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x)
        x = self.relu(conv_norm(self.conv1, self.bn1, x))
        x = conv_norm(self.conv2, self.bn2, x)
        x += skip  # in place, as torchvision: a fresh map of this size is a page fault per 4 KB on CPU
        return self.relu(x)


class ResNet(nn.Module):
    """ResNet-18/34 trunk: stem (stride 4) then four stages (strides 1, 2, 2, 2); returns the layer4 map."""

    def __init__(self, name: str = "resnet18", norm: str = "frozen_batch_norm"):
        super().__init__()
        if name not in RESNET_LAYERS:
            raise ValueError(f"Unsupported vision backbone {name!r}; choose one of {sorted(RESNET_LAYERS)}.")
        norm_layer = make_norm_layer(norm)
        # Channels-last maps where they are large (see CHANNELS_LAST_MIN_PIXELS).
        self.channels_last = norm in CHANNELS_LAST_NORMS
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels, in_channels = (64, 128, 256, 512), 64
        for i, (n_blocks, c) in enumerate(zip(RESNET_LAYERS[name], channels)):
            stride = 1 if i == 0 else 2
            blocks = [
                BasicBlock(in_channels if j == 0 else c, c, stride if j == 0 else 1, norm_layer)
                for j in range(n_blocks)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            in_channels = c
        self.out_channels = RESNET_OUT_CHANNELS
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so a randomly initialised backbone trains like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 512, ceil(H/32), ceil(W/32))
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        return trunk_forward(self.conv1, self.bn1, self.maxpool, stages, x, self.channels_last)


def trunk_forward(
    conv1: nn.Conv2d,
    bn1: nn.Module,
    maxpool: nn.Module,
    stages: tuple[nn.Module, ...],
    x: Tensor,  # (B, 3, H, W)
    channels_last: bool,
) -> Tensor:  # (B, 512, ceil(H/32), ceil(W/32))
    """A ResNet trunk's forward pass, from its modules (`ResNet`, and the encoders that hold the same modules in
    torchvision's `nn.Sequential` order)."""
    # relu(maxpool(x)) equals maxpool(relu(x)), gradients included (relu is monotone, and where it zeroes
    # a window's maximum it zeroes every element of the window); on the 4x smaller map, the stem's ReLU
    # and its backward pass cost a quarter (they were ~5% of an ACT training step at 480x640).
    x = F.relu_(maxpool(conv_norm(conv1, bn1, stage_layout(x, channels_last))))
    for stage in stages:
        x = stage(stage_layout(x, channels_last))
    return x


class TrunkSequential(nn.Sequential):
    """A ResNet trunk's modules in torchvision's child order without avgpool/fc (conv1, bn1, maxpool, relu,
    layer1..4: the reference's encoders name their parameters `backbone.<index>.*`), run by `trunk_forward`
    (stage layouts, max pool before ReLU) rather than one after the other."""

    def __init__(self, resnet: ResNet):
        r = resnet
        super().__init__(r.conv1, r.bn1, r.maxpool, r.relu, r.layer1, r.layer2, r.layer3, r.layer4)
        self.channels_last = r.channels_last

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 512, ceil(H/32), ceil(W/32))
        conv1, bn1, maxpool, _, *stages = self
        return trunk_forward(conv1, bn1, maxpool, tuple(stages), x, self.channels_last)


def stage_layout(x: Tensor, channels_last: bool) -> Tensor:
    """Each stage picks the memory layout of its input by the size of the map: see CHANNELS_LAST_MIN_PIXELS."""
    if not channels_last:
        return x
    if x.shape[-2] * x.shape[-1] >= CHANNELS_LAST_MIN_PIXELS:
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


# ----------------------------------------------------------------------------------------------------------
# Pretrained weights
# ----------------------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a `.safetensors` file, or of a torch file holding a plain state dict (no pickled code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Backbone weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Could not read {str(path)!r} as a state dict (only plain tensors are accepted, no pickled "
            f"objects): {e}. Convert it to .safetensors or save `model.state_dict()` with torch.save."
        ) from e
    if not isinstance(state_dict, dict):
        raise ValueError(f"{str(path)!r} holds a {type(state_dict).__name__}, expected a state dict.")
    return state_dict


def load_torchvision_weights(model: ResNet, state_dict: dict[str, Tensor]) -> None:
    """Load a torchvision ResNet state dict into `model` (the classifier `fc.*` is dropped).

    Raises ValueError naming the missing/unexpected/mis-shaped keys if the file is not a matching ResNet.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    if isinstance(model.bn1, FrozenBatchNorm2d):
        state_dict = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or mis_shaped:
        raise ValueError(
            "Backbone weights do not match a torchvision ResNet of this size: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"wrong shape {mis_shaped[:5]}{'...' if len(mis_shaped) > 5 else ''}."
        )
    model.load_state_dict(state_dict)


def resolve_pretrained_weights(weights: str | Path | None) -> Path | None:
    """The file to load for `pretrained_backbone_weights`: None, a path, or a torchvision enum name.

    An enum name (e.g. "ResNet18_Weights.IMAGENET1K_V1") is resolved to torch.hub's cache, where torchvision
    keeps its downloads; this package never downloads it.
    """
    if weights is None:
        return None
    if str(weights) in TORCHVISION_WEIGHT_FILES:
        url = TORCHVISION_WEIGHT_FILES[str(weights)]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if cached.is_file():
            return cached
        raise FileNotFoundError(
            f"pretrained_backbone_weights={str(weights)!r} names torchvision's ImageNet weights, which this "
            f"package does not download. Download {url} (e.g. `curl -LO {url}`), then pass its path as "
            f"pretrained_backbone_weights, or put it at {cached}. Use pretrained_backbone_weights=None for a "
            "randomly initialised backbone."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_backbone_weights={str(weights)!r} is neither an existing file nor one of "
            f"{sorted(TORCHVISION_WEIGHT_FILES)}. Pass a torchvision ResNet state dict (.safetensors or .pth) "
            "or None."
        )
    return path


def imagenet_stats() -> dict[str, Tensor]:
    """ImageNet channel mean/std as camera stats, shape (3, 1, 1). The reference ACT configs put these in place
    of the dataset's camera stats (`override_dataset_stats`) so inputs match an ImageNet-pretrained backbone."""
    return {
        "mean": torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1),
        "std": torch.tensor(IMAGENET_STD).reshape(3, 1, 1),
    }


def make_backbone(name: str, norm: str, pretrained_weights: str | Path | None = None) -> ResNet:
    """A ResNet trunk, randomly initialised or loaded from a torchvision-format weights file."""
    model = ResNet(name, norm)
    path = resolve_pretrained_weights(pretrained_weights)
    if path is not None:
        load_torchvision_weights(model, read_state_dict(path))
    return model


# ----------------------------------------------------------------------------------------------------------
# Crops and resizing of (B, C, H, W) batches
# ----------------------------------------------------------------------------------------------------------


def _check_crop(images: Tensor, size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(n) for n in images.shape[-2:])  # plain ints while tracing too (see inference_trace.py)
    if size[0] > h or size[1] > w:
        raise ValueError(f"Crop size {tuple(size)} is larger than the images ({h}, {w}).")
    return h, w


def center_crop(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., C, H, W) -> (..., C, h, w), the centred window (offsets rounded as torchvision does)."""
    h, w = _check_crop(images, size)
    top, left = round((h - size[0]) / 2), round((w - size[1]) / 2)
    return images[..., top : top + size[0], left : left + size[1]]


def random_crop(images: Tensor, size: tuple[int, int], generator: torch.Generator | None = None) -> Tensor:
    """(B, C, H, W) -> (B, C, h, w), an independent uniformly drawn window for every image of the batch."""
    h, w = _check_crop(images, size)
    b = images.shape[0]
    top = torch.randint(0, h - size[0] + 1, (b,), generator=generator).to(images.device)
    left = torch.randint(0, w - size[1] + 1, (b,), generator=generator).to(images.device)
    rows = top[:, None] + torch.arange(size[0], device=images.device)  # (B, h)
    cols = left[:, None] + torch.arange(size[1], device=images.device)  # (B, w)
    batch = torch.arange(b, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, h, w, C)
    # Back to a plain (B, C, h, w) layout: the trunk picks each stage's layout itself (`stage_layout`), but an
    # NCHW trunk (trainable batch norm) would run every convolution channels-last on a channels-last input,
    # which costs weight copies and is slower for small images (~1.3x a step).
    return crops.permute(0, 3, 1, 2).contiguous()


def resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, H, W) -> (B, C, h, w) by bilinear interpolation with antialiasing when shrinking."""
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


# ----------------------------------------------------------------------------------------------------------
# Spatial-softmax keypoint encoder (Diffusion Policy, VQ-BeT)
# ----------------------------------------------------------------------------------------------------------


class SpatialSoftmax(nn.Module):
    """Feature map (N, C, H, W) -> K keypoints (N, K, 2) (Levine et al., 2016, "End-to-End Training of Deep
    Visuomotor Policies"; as in robomimic).

    A 1x1 convolution makes K heat maps; a softmax over the pixels of each turns it into a distribution,
    and the keypoint is its expected (x, y), with the feature map spanning [-1, 1] on both axes.
    """

    def __init__(self, in_channels: int, map_size: tuple[int, int], num_keypoints: int):
        super().__init__()
        self.map_size = tuple(map_size)
        self.nets = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
        h, w = map_size
        xs = torch.linspace(-1, 1, w, dtype=torch.float64)
        ys = torch.linspace(-1, 1, h, dtype=torch.float64)
        # (x, y) of every pixel in row-major order: x varies along the width, y along the height.
        pos_grid = torch.stack([xs.repeat(h), ys.repeat_interleave(w)], dim=-1)  # (H * W, 2)
        self.register_buffer("pos_grid", pos_grid.float())

    def forward(self, features: Tensor) -> Tensor:  # (N, C, H, W) -> (N, K, 2)
        if tuple(features.shape[-2:]) != self.map_size:
            raise ValueError(
                f"Feature map of size {tuple(features.shape[-2:])}, but the spatial softmax was built for "
                f"{self.map_size}: the images do not have the size (or crop_shape) of the config."
            )
        heat = self.nets(features).flatten(2)  # (N, K, H * W)
        return F.softmax(heat, dim=-1) @ self.pos_grid


class SpatialSoftmaxEncoder(nn.Module):
    """Camera image (N, C, H, W) -> feature (N, 2K): crop, ResNet trunk, spatial softmax, Linear + ReLU.

    `config` is a policy config with the fields both Diffusion Policy and VQ-BeT define: `vision_backbone`,
    `use_group_norm`, `pretrained_backbone_weights`, `crop_shape`, `crop_is_random` and
    `spatial_softmax_num_keypoints`. `image_size` is the (H, W) the trunk sees, i.e. the crop if there is one.
    """

    def __init__(self, config: Any, image_size: tuple[int, int], load_backbone_weights: bool = True):
        super().__init__()
        self.crop_shape = config.crop_shape
        self.crop_is_random = config.crop_is_random
        norm = "group_norm" if config.use_group_norm else "batch_norm"
        weights = config.pretrained_backbone_weights if load_backbone_weights else None
        resnet = make_backbone(config.vision_backbone, norm, weights)
        # The trunk's children without avgpool/fc, as torchvision's: the reference's parameters are named
        # `backbone.<index>.*` (conv1, bn1, relu, maxpool, layer1..4). Max pool runs before ReLU here, as in
        # `ResNet.forward` (same values and gradients, less work); neither has parameters, so the names hold.
        self.backbone = TrunkSequential(resnet)
        map_size = tuple(-(-side // 32) for side in image_size)  # five stride-2 stages, rounding up
        self.pool = SpatialSoftmax(resnet.out_channels, map_size, config.spatial_softmax_num_keypoints)
        self.feature_dim = 2 * config.spatial_softmax_num_keypoints
        self.out = nn.Linear(self.feature_dim, self.feature_dim)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, 2K)
        if self.crop_shape is not None:
            if self.training and self.crop_is_random:  # augmentation: an independent window per image
                x = random_crop(x, self.crop_shape)
            else:
                x = center_crop(x, self.crop_shape)
        keypoints = self.pool(self.backbone(x))  # (N, K, 2)
        return self.relu(self.out(keypoints.flatten(1)))
