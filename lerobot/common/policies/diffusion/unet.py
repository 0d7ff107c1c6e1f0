"""The noise-prediction network of Diffusion Policy: a 1D temporal U-Net conditioned by FiLM.

The action sequence (B, T, A) is treated as an A-channel signal over T time steps. Every residual block sees
the conditioning vector (the diffusion-step embedding next to the flattened observation features) through
FiLM: a linear map of it gives a per-channel scale and bias applied after the block's first convolution.

    down levels: [res, res, halve T]  x len(down_dims)   (no halving at the last level)
    middle:      [res, res]
    up levels:   [concat skip, res, res, double T]  x (len(down_dims) - 1)
    head:        conv block, 1x1 conv back to A channels

Parameter names follow the reference (`down_modules.0.0.conv1.block.0.weight`, `cond_encoder.1.weight`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies import onednn
from lerobot.common.utils.utils import cpu_autocast_dtype


class DiffusionSinusoidalPosEmb(nn.Module):
    """Diffusion step t -> (dim,) features: sin(t * f_i) then cos(t * f_i) for dim / 2 geometric frequencies
    f_i = 10000 ** (-i / (dim / 2 - 1)), from 1 down to 1 / 10000."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, dim)
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) / (half - 1) * torch.arange(half, device=t.device))
        angles = t.float()[:, None] * freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class _ReleasesPackedWeight:
    """Frees the layer's oneDNN-packed weight (onednn.py) when it goes back to training mode: stale after the
    next optimiser step, and for a large U-Net as big as its weights."""

    def train(self, mode: bool = True) -> nn.Module:
        if mode:
            onednn.release(self.weight)
        return super().train(mode)


class _UnfoldedConv1d(_ReleasesPackedWeight, nn.Conv1d):
    """An `nn.Conv1d` that can run as one matrix product: the padded input unfolded into (B * T', C_in * K)
    windows (T' = the output length) times the (C_out, C_in * K) weight."""

    def _product(self, x: Tensor, weight: Tensor | None = None, packed: bool = False) -> Tensor:
        """(B, C_in, T) -> (B, C_out, T'); `weight` defaults to the layer's; `packed` uses its packed copy."""
        k, stride, pad = self.kernel_size[0], self.stride[0], self.padding[0]
        windows = F.pad(x, (pad, pad)).unfold(2, k, stride)  # (B, C_in, T', K)
        b, _, t, _ = windows.shape
        windows = windows.permute(0, 2, 1, 3).reshape(b * t, self.in_channels * k)  # (B * T', C_in * K)
        if packed:  # the parameter itself: its packed copy is kept per tensor (onednn.py)
            out = onednn.linear(windows, self.weight, self.bias)
        else:
            weight = self.weight if weight is None else weight
            out = F.linear(windows, weight.reshape(self.out_channels, -1), self.bias)
        return out.reshape(b, t, self.out_channels).transpose(1, 2)  # (B, C_out, T')


class Conv1d(_UnfoldedConv1d):
    """A length-preserving `nn.Conv1d` (stride 1, padding kernel_size // 2) that runs as one matrix product on
    CPU when there is enough work: the input is unfolded into (B * T, C_in * K) windows and multiplied by the
    (C_out, C_in * K) weight. oneDNN re-lays the weight out on every call, which for the U-Net's wide layers
    costs more than the product: measured on 2 cores, a 2048-channel layer at batch 8 trains (forward and
    backward) 3x faster this way and infers 3.6x faster. Small layers train faster this way too (a 32-channel
    layer at batch 8: 214 us against 274 us forward and backward; Diffusion tiny at batch 64: 442 -> 426 ms a
    step). Same values up to float rounding, same parameters; small inference inputs (batch x channels below
    2048, e.g. batch 1 below 2048 channels) and other devices keep `nn.Conv1d`.

    Inference (no autograd) on CPU reuses a prepared copy of the weight, kept until the weight changes and
    dropped when the module goes back to training mode:
    - in float32, for layers of at least PACKED_MIN_WEIGHTS weights, the weight packed once for oneDNN's matrix
      product (`onednn.linear`). At batch 1 the products have 4-16 rows (B * T), where MKL's reads the weights
      at about half the memory bandwidth and oneDNN's at nearly all of it: the default U-Net's denoising step
      takes 50 ms instead of 83 ms (with Downsample1d and Upsample1d, which do the same). The cost is a second
      copy of those weights (1 GB for the default U-Net).
    - under CPU autocast (`use_amp`), every layer with a low-precision copy of the weight: autocast would cast
      the weights again at every denoising step (for the default U-Net, 1 GB of them), and oneDNN would re-lay
      them out, which together cost more than the low-precision products save."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        if kernel_size % 2 != 1:
            raise ValueError(f"A length-preserving Conv1d needs an odd kernel size, got {kernel_size}.")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T)
        if x.device.type != "cpu":
            return super().forward(x)
        if _packed_inference(self, x):
            return self._product(x, packed=True)
        if not torch.is_grad_enabled() and (amp_dtype := cpu_autocast_dtype()) is not None:
            return self._product(x, self._cast_weight(amp_dtype))
        if not torch.is_grad_enabled() and x.shape[0] * self.in_channels < 2048:
            return super().forward(x)  # small inference inputs: torch's direct kernel is fastest at batch 1
        return self._product(x)

    def _cast_weight(self, dtype: torch.dtype) -> Tensor:
        """The weight cast to `dtype`, cast again only after the weight changed."""
        key = (self.weight.data_ptr(), self.weight._version, dtype)
        cached = self.__dict__.get("_cast")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_cast"] = (key, self.weight.detach().to(dtype))
        return cached[1]

    def train(self, mode: bool = True) -> Conv1d:
        if mode:  # stale after the next optimiser step: free it now
            self.__dict__.pop("_cast", None)
        return super().train(mode)


PACKED_MIN_WEIGHTS = 2**18  # below this (tiny U-Nets), the unfold costs more than the packed product saves


def _packed_inference(layer: nn.Module, x: Tensor) -> bool:
    """Whether `layer` runs from its oneDNN-packed weight: float32-capable CPU inference of a large layer."""
    return (
        x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and cpu_autocast_dtype() is None
        and layer.weight.numel() >= PACKED_MIN_WEIGHTS
    )


class Downsample1d(_UnfoldedConv1d):
    """Halves the length: `nn.Conv1d(channels, channels, 3, stride=2, padding=1)`, which maps T to ceil(T / 2).
    Large layers in CPU inference run as a matrix product with the packed weight, as Conv1d does."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, ceil(T / 2))
        if not _packed_inference(self, x):
            return super().forward(x)
        return self._product(x, packed=True)


class Upsample1d(_ReleasesPackedWeight, nn.ConvTranspose1d):
    """Doubles the length: `nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)`. Large layers in CPU
    inference run as one matrix product with the packed weight, then an overlap-add: input step t contributes
    tap k to output 2t + k - 1, so output 2s gets taps 1 (from s) and 3 (from s - 1), output 2s + 1 taps 2
    (from s) and 0 (from s + 1). torch's own transposed convolution is slow on CPU (8 GB/s of weights here)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T) -> (B, C, 2T)
        if not _packed_inference(self, x):
            return super().forward(x)
        b, c, t = x.shape
        taps = onednn.linear(x.transpose(1, 2).reshape(b * t, c), self.weight, None, transposed=True)
        taps = taps.reshape(b, t, c, 4)  # (B, T, C_out, k)
        even = taps[..., 1].clone()
        even[:, 1:] += taps[:, :-1, :, 3]
        odd = taps[..., 2].clone()
        odd[:, :-1] += taps[:, 1:, :, 0]
        out = torch.stack([even, odd], dim=2).reshape(b, 2 * t, c) + self.bias  # (B, 2T, C)
        return out.transpose(1, 2)


class DiffusionConv1dBlock(nn.Module):
    """Conv1d (length preserving) -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            Conv1d(in_channels, out_channels, kernel_size),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T) -> (B, C_out, T)
        return self.block(x)


class DiffusionConditionalResidualBlock1d(nn.Module):
    """Two conv blocks with FiLM conditioning in between and a (1x1 conv if needed) skip connection."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cond_dim: int,
        kernel_size: int,
        n_groups: int,
        use_film_scale_modulation: bool,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.use_film_scale_modulation = use_film_scale_modulation
        self.conv1 = DiffusionConv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        film_dim = 2 * out_channels if use_film_scale_modulation else out_channels
        self.cond_encoder = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, film_dim))
        self.conv2 = DiffusionConv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.residual_conv = (
            Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, C_in, T), film (B, 2 * C_out or C_out): this block's part of the U-Net's `film`."""
        h = self.conv1(x)  # (B, C_out, T)
        film = film.unsqueeze(-1)  # constant over time
        if self.use_film_scale_modulation:
            scale, bias = film[:, : self.out_channels], film[:, self.out_channels :]
            h = torch.addcmul(bias, scale, h)  # scale * h + bias in one pass
        else:
            h = h + film
        return self.conv2(h) + self.residual_conv(x)


class DiffusionConditionalUnet1d(nn.Module):
    """(noisy actions (B, T, A), diffusion step (B,), observation features (B, G)) -> (B, T, A).

    The output is the predicted noise or the predicted clean actions, depending on the scheduler's
    `prediction_type`; the network is the same.
    """

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        down_dims: tuple[int, ...],
        kernel_size: int,
        n_groups: int,
        diffusion_step_embed_dim: int,
        use_film_scale_modulation: bool,
    ):
        super().__init__()
        d = diffusion_step_embed_dim
        self.diffusion_step_encoder = nn.Sequential(
            DiffusionSinusoidalPosEmb(d), nn.Linear(d, 4 * d), nn.Mish(), nn.Linear(4 * d, d)
        )
        cond_dim = d + global_cond_dim

        def res_block(c_in: int, c_out: int) -> DiffusionConditionalResidualBlock1d:
            return DiffusionConditionalResidualBlock1d(
                c_in, c_out, cond_dim, kernel_size, n_groups, use_film_scale_modulation
            )

        # Channel pairs per level: (A, d0), (d0, d1), (d1, d2), ...
        in_out = list(zip([action_dim, *down_dims[:-1]], down_dims))
        self.down_modules = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            is_last = i == len(in_out) - 1
            # Halving the length: a stride-2 conv (kernel 3, padding 1) maps T to T / 2 for even T.
            down = nn.Identity() if is_last else Downsample1d(c_out)
            self.down_modules.append(nn.ModuleList([res_block(c_in, c_out), res_block(c_out, c_out), down]))

        self.mid_modules = nn.ModuleList([res_block(down_dims[-1], down_dims[-1]) for _ in range(2)])

        # Up levels mirror the down levels but the first: each takes the previous output next to the skip of
        # the same length (hence 2 * c_in channels) and doubles the length (kernel 4, stride 2, padding 1).
        self.up_modules = nn.ModuleList()
        for c_out, c_in in reversed(in_out[1:]):
            up = Upsample1d(c_out)
            self.up_modules.append(nn.ModuleList([res_block(2 * c_in, c_out), res_block(c_out, c_out), up]))

        self.final_conv = nn.Sequential(
            DiffusionConv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
            Conv1d(down_dims[0], action_dim, 1),
        )

    def res_blocks(self) -> list[DiffusionConditionalResidualBlock1d]:
        """The residual blocks in the order `denoise` runs them (and `film` lays out their FiLM parameters)."""
        blocks = [block for res1, res2, _ in self.down_modules for block in (res1, res2)]
        blocks += list(self.mid_modules)
        return blocks + [block for res1, res2, _ in self.up_modules for block in (res1, res2)]

    def forward(self, x: Tensor, timestep: Tensor, global_cond: Tensor) -> Tensor:
        """x (B, T, A) noisy actions, timestep (B,) integer diffusion steps, global_cond (B, G)."""
        return self.denoise(x, self.film(timestep, global_cond))

    def film(self, timestep: Tensor, global_cond: Tensor) -> Tensor:  # (B,), (B, G) -> (B, F)
        """Every residual block's FiLM parameters side by side: its `cond_encoder` (Mish, Linear) applied to the
        conditioning vector [diffusion-step embedding, global_cond]."""
        cond = torch.cat([self.diffusion_step_encoder(timestep), global_cond], dim=-1)  # (B, d + G)
        return torch.cat([block.cond_encoder(cond) for block in self.res_blocks()], dim=-1)

    def sampling_film(self, global_cond: Tensor) -> Callable[[int], Tensor]:
        """For inference: t -> `film(t, global_cond)` (B, F) for one sampling run, without reading the FiLM
        weights at every denoising step. The Mish acts elementwise, so each block's Linear of
        Mish([e(t), g]) splits into W_e Mish(e(t)) + (W_g Mish(g) + b): the second term is computed once per
        run, the first once per diffusion step t while the weights stay unchanged (for the default U-Net the
        FiLM weights are 30 MB, read at each of DDPM's 100 steps otherwise). Equal to `film` up to float
        rounding."""
        table = _FilmTable.of(self)
        offset = torch.addmm(table.bias, F.mish(global_cond), table.weight_g.t())  # (B, F)
        return lambda t: offset + table.of_step(t)

    def denoise(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, T, A) noisy actions, film (B, F) from `film` -> the prediction (B, T, A)."""
        films = iter(film.split([block.cond_encoder[1].out_features for block in self.res_blocks()], dim=-1))
        x = x.transpose(1, 2)  # (B, A, T): actions are channels, time is the convolved axis
        skips = []
        for res1, res2, down in self.down_modules:
            x = res2(res1(x, next(films)), next(films))
            skips.append(x)
            x = down(x)
        for res in self.mid_modules:
            x = res(x, next(films))
        # The deepest skip pairs with the middle's output; the shallowest (full length) is never used,
        # as in the reference, whose up path has one level fewer than its down path.
        for res1, res2, up in self.up_modules:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(res2(res1(x, next(films)), next(films)))
        return self.final_conv(x).transpose(1, 2)  # (B, T, A)

    def train(self, mode: bool = True) -> DiffusionConditionalUnet1d:
        if mode:  # stale after the next optimiser step: free it now
            self.__dict__.pop(_FilmTable.ATTRIBUTE, None)
        return super().train(mode)


class _FilmTable:
    """The U-Net's FiLM weights gathered for sampling (`sampling_film`): W_e (F, d) and W_g (F, G), the columns
    that multiply the step embedding and the global conditioning, the biases (F,), and W_e Mish(e(t)) (1, F)
    per diffusion step t. Kept on the module until its weights change or it goes back to training mode."""

    ATTRIBUTE = "_film_table"

    def __init__(self, unet: DiffusionConditionalUnet1d, key: tuple):
        self.step_encoder, self.key = unet.diffusion_step_encoder, key
        d = unet.diffusion_step_encoder[1].in_features
        linears = [block.cond_encoder[1] for block in unet.res_blocks()]
        weight = torch.cat([linear.weight.detach() for linear in linears])  # (F, d + G)
        self.weight_e, self.weight_g = weight[:, :d].contiguous(), weight[:, d:].contiguous()
        self.bias = torch.cat([linear.bias.detach() for linear in linears])  # (F,)
        self.steps: dict[int, Tensor] = {}

    @classmethod
    def of(cls, unet: DiffusionConditionalUnet1d) -> _FilmTable:
        params = [*unet.diffusion_step_encoder.parameters()]
        params += [p for block in unet.res_blocks() for p in block.cond_encoder.parameters()]
        try:
            key = (tuple((p.data_ptr(), p.dtype, p.device, p._version) for p in params), cpu_autocast_dtype())
        except RuntimeError:  # inference tensors have no version counter: never treat them as unchanged
            key = (object(),)
        table = unet.__dict__.get(cls.ATTRIBUTE)
        if table is None or table.key != key:
            table = unet.__dict__[cls.ATTRIBUTE] = cls(unet, key)
        return table

    def of_step(self, t: int) -> Tensor:  # (1, F)
        part = self.steps.get(t)
        if part is None:
            step = torch.tensor([t], device=self.bias.device)
            with torch.no_grad():  # a kept value, like the detached weights above: it must not hold a graph
                part = self.steps[t] = F.mish(self.step_encoder(step)) @ self.weight_e.t()
        return part
