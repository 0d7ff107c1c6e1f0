import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F

from lerobot.common.policies.backbone import (
    FrozenBatchNorm2d,
    ResNet,
    TrunkSequential,
    center_crop,
    conv_norm,
    imagenet_stats,
    make_backbone,
    random_crop,
    resize,
    resolve_pretrained_weights,
    stage_layout,
)


def torchvision_resnet18_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the names and shapes of torchvision's `resnet18().state_dict()`."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name, out_c, in_c, k):
        sd[f"{name}.weight"] = torch.randn(out_c, in_c, k, k, generator=g) * (2 / (in_c * k * k)) ** 0.5

    def bn(name, c):
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    in_c = 64
    for layer, c in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", c, in_c if block == 0 else c, 3)
            bn(f"{prefix}.bn1", c)
            conv(f"{prefix}.conv2", c, c, 3)
            bn(f"{prefix}.bn2", c)
            if block == 0 and layer > 1:
                conv(f"{prefix}.downsample.0", c, in_c, 1)
                bn(f"{prefix}.downsample.1", c)
        in_c = c
    sd["fc.weight"] = torch.randn(1000, 512, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    return sd


def reference_resnet18_features(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ResNet-18 up to layer4 written directly with torch.nn.functional from the torchvision names."""

    def bn(name, x):
        return F.batch_norm(
            x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"], sd[f"{name}.bias"]
        )

    x = F.relu(bn("bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if (layer > 1 and block == 0) else 1
            skip = x
            if f"{p}.downsample.0.weight" in sd:
                skip = bn(f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            y = F.relu(bn(f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
            y = bn(f"{p}.bn2", F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1))
            x = F.relu(y + skip)
    return x


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_loads_torchvision_state_dict(tmp_path, suffix):
    sd = torchvision_resnet18_state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(sd, path)
    else:
        torch.save(sd, path)
    model = make_backbone("resnet18", "frozen_batch_norm", path)
    torch.testing.assert_close(
        model.layer3[0].downsample[1].running_var, sd["layer3.0.downsample.1.running_var"]
    )
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 512, 2, 3)
    torch.testing.assert_close(out, reference_resnet18_features(sd, x), rtol=1e-4, atol=1e-4)


def test_rejects_mismatched_or_pickled_weights(tmp_path):
    sd = torchvision_resnet18_state_dict()
    del sd["layer4.1.conv2.weight"]
    save_file(sd, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=r"missing \['layer4.1.conv2.weight'\]"):
        make_backbone("resnet18", "frozen_batch_norm", tmp_path / "bad.safetensors")
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a module object, not plain tensors
    with pytest.raises(ValueError, match="only plain tensors"):
        make_backbone("resnet18", "frozen_batch_norm", tmp_path / "pickled.pth")


def test_torchvision_enum_name_needs_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*pretrained_backbone_weights=None"):
        resolve_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1")
    with pytest.raises(FileNotFoundError, match="neither an existing file"):
        resolve_pretrained_weights(tmp_path / "nope.pth")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision_resnet18_state_dict(), cached)
    assert resolve_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1") == cached
    assert resolve_pretrained_weights(None) is None


def test_frozen_batch_norm_equals_batch_norm_in_eval():
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    frozen = FrozenBatchNorm2d(8)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped
    x = torch.randn(4, 8, 5, 5)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    frozen.train()
    torch.testing.assert_close(frozen(x), bn(x))  # frozen in train mode too
    assert list(frozen.parameters()) == []


def _randomise_frozen_norms(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)


@pytest.mark.parametrize("size", [(40, 56), (168, 224)])  # below and above the channels-last threshold
def test_folded_frozen_batch_norm_matches_the_unfolded_network(size):
    torch.manual_seed(0)
    model = ResNet("resnet18", "frozen_batch_norm")
    _randomise_frozen_norms(model)

    def unfolded(x):  # the textbook forward: conv -> frozen BN -> ReLU, module by module
        x = model.maxpool(F.relu(model.bn1(model.conv1(x))))
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for b in layer:
                skip = x if b.downsample is None else b.downsample(x)
                y = F.relu(b.bn1(b.conv1(x)))
                x = F.relu(b.bn2(b.conv2(y)) + skip)
        return x

    x = torch.rand(2, 3, *size)
    torch.testing.assert_close(model(x), unfolded(x), rtol=1e-4, atol=1e-4)
    model(x).sum().backward()  # gradients reach the convolution weights through the folding
    assert model.conv1.weight.grad is not None and model.layer4[1].conv2.weight.grad.abs().sum() > 0


def test_folded_weights_cache_follows_weight_updates():
    torch.manual_seed(0)
    model = ResNet("resnet18", "frozen_batch_norm")
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        first, again = model(x), model(x)  # the second call uses the cached folded weights
    assert torch.equal(first, again)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).sum().backward()
    opt.step()
    with torch.no_grad():
        after_step = model(x)
    fresh = ResNet("resnet18", "frozen_batch_norm")
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(after_step, fresh(x))
        state = model.state_dict()
        state["bn1.running_var"] = state["bn1.running_var"] * 4
        model.load_state_dict(state)  # copies in place: the cache must notice
        fresh.load_state_dict(state)
        torch.testing.assert_close(model(x), fresh(x))


@pytest.mark.parametrize("norm", ["frozen_batch_norm", "batch_norm", "group_norm"])
def test_norm_variants(norm):
    model = ResNet("resnet18", norm)
    layer = model.layer2[0].bn1
    expected = {
        "frozen_batch_norm": FrozenBatchNorm2d,
        "batch_norm": nn.BatchNorm2d,
        "group_norm": nn.GroupNorm,
    }
    assert isinstance(layer, expected[norm])
    if norm == "group_norm":
        assert layer.num_groups == 128 // 16
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 512, 1, 1)


def test_resnet34_and_bad_names():
    assert len(ResNet("resnet34").layer3) == 6
    with pytest.raises(ValueError, match="resnet50"):
        ResNet("resnet50")
    with pytest.raises(ValueError, match="Unknown norm"):
        ResNet("resnet18", "layer_norm")


def test_crops_and_resize():
    images = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8)
    assert torch.equal(center_crop(images, (4, 4)), images[..., 1:5, 2:6])
    g = torch.Generator().manual_seed(0)
    crops = random_crop(images, (4, 5), generator=g)
    assert crops.shape == (2, 3, 4, 5)
    assert crops.is_contiguous()  # NCHW, as the images came
    for b in range(2):  # every crop is a window of its own image
        windows = [images[b, :, i : i + 4, j : j + 5] for i in range(3) for j in range(4)]
        assert any(torch.equal(crops[b], w) for w in windows)
    assert resize(images, (3, 4)).shape == (2, 3, 3, 4)
    with pytest.raises(ValueError, match="larger than the images"):
        center_crop(images, (7, 4))


def test_imagenet_stats_are_camera_shaped():
    stats = imagenet_stats()
    assert stats["mean"].shape == stats["std"].shape == (3, 1, 1)
    assert stats["mean"].flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("norm", ["frozen_batch_norm", "group_norm"])
def test_max_pool_before_relu_gives_the_textbook_values_and_gradients(norm):
    # The stem runs relu(maxpool(x)) instead of maxpool(relu(x)): same values, same gradients, also where a
    # window's maximum is negative or tied at zero.
    torch.manual_seed(0)
    model = ResNet("resnet18", norm)
    x = torch.rand(2, 3, 64, 96)

    def textbook(x):  # the stem in torchvision's order; the rest as the model runs it (same layouts)
        y = model.maxpool(F.relu(conv_norm(model.conv1, model.bn1, stage_layout(x, model.channels_last))))
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            y = layer(stage_layout(y, model.channels_last))
        return y

    grads = []
    for forward in (model, textbook):
        model.zero_grad()
        out = forward(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append((out.detach(), model.conv1.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)
    stem = torch.tensor([[[[-1.0, -2.0, 0.0], [0.0, -3.0, 2.0], [1.0, 0.0, -1.0]]]], requires_grad=True)
    for order in ("relu_first", "pool_first"):
        pool = (
            F.max_pool2d(F.relu(stem), 3, 2, 1)
            if order == "relu_first"
            else F.relu(F.max_pool2d(stem, 3, 2, 1))
        )
        (g,) = torch.autograd.grad(pool.sum() * 3, stem)
        grads.append(g)
    torch.testing.assert_close(grads[2], grads[3])


@pytest.mark.parametrize("norm", ["frozen_batch_norm", "group_norm"])
def test_each_stage_picks_its_layout_by_map_size(norm):
    # 96x128: the stem and layers 1-3 run channels-last (faster there, the NCHW max pool is ~10x slower); layer4
    # gets a 6x8 map, where NCHW convolutions are faster. Values match an all-NCHW run, gradients included.
    torch.manual_seed(0)
    model = ResNet("resnet18", norm)
    if norm == "frozen_batch_norm":
        _randomise_frozen_norms(model)
    layers = (model.layer1, model.layer2, model.layer3, model.layer4)
    seen = []
    hooks = [
        layer.register_forward_pre_hook(
            lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        for layer in layers
    ]
    x = torch.rand(2, 3, 96, 128)
    out = model(x)
    (grad,) = torch.autograd.grad(out.sum(), model.conv1.weight)
    for hook in hooks:
        hook.remove()
    assert seen == [True, True, True, False]
    model.channels_last = False
    expected = model(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), model.conv1.weight)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    # Summation order differs between layouts: float32 rounding, relative to the gradient's scale (~1e2 here).
    scale = float(expected_grad.abs().max())
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5 * scale)


def test_trainable_batch_norm_keeps_nchw_maps():
    model = ResNet("resnet18", "batch_norm")
    seen = []
    model.layer1.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
    model(torch.rand(2, 3, 96, 128))
    assert not model.channels_last and seen == [True]


def test_encoder_trunk_keeps_torchvision_child_names_and_runs_like_the_resnet():
    # The encoders hold the trunk's modules under `backbone.<index>` (the reference's parameter names) and run
    # them as ResNet.forward does: stage layouts, max pool before ReLU.
    torch.manual_seed(0)
    model = ResNet("resnet18", "group_norm")
    trunk = TrunkSequential(model)
    names = [name for name, _ in trunk.named_children()]
    assert names == [str(i) for i in range(8)]
    assert trunk[0] is model.conv1 and trunk[2] is model.maxpool and trunk[7] is model.layer4
    assert "0.weight" in trunk.state_dict() and "4.0.conv1.weight" in trunk.state_dict()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(trunk(x), model(x), rtol=0, atol=0)


def test_folded_weights_are_cached_per_layout():
    # A backbone shared by a camera-sized image (channels-last) and a small one keeps both folded copies.
    torch.manual_seed(0)
    model = ResNet("resnet18", "frozen_batch_norm").eval()
    _randomise_frozen_norms(model)
    big, small = torch.rand(1, 3, 168, 224), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        expected = (model(big), model(small))
        cached = dict(model.layer4[0].bn1._folded_cache)  # the stage's input layout: by map size
        assert set(cached) == {True, False}
        assert cached[True][1].is_contiguous(memory_format=torch.channels_last)
        again = (model(big), model(small))
        assert all(model.layer4[0].bn1._folded_cache[k][1] is cached[k][1] for k in cached)
    for a, b in zip(expected, again):
        assert torch.equal(a, b)
