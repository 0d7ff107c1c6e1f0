"""VQ-BeT's residual VQ-VAE: action chunks <-> pairs of discrete codes (a primary and a residual code).

An MLP encoder maps a flattened action chunk (chunk_size * action_dim,) to a latent x. A residual vector
quantiser with two codebooks replaces x by e1 + e2: e1 is the code of codebook 1 nearest to x, e2 the code
of codebook 2 nearest to the residual x - e1. An MLP decoder maps e1 + e2 back to an action chunk.

The codebooks are not trained by gradients: each code is the exponential moving average (decay 0.8) of the
latents assigned to it, as in VQ-VAE-2 / SoundStream. The encoder gets gradients through the quantiser by the
straight-through estimator and is pulled towards its codes by a commitment loss. The loss of phase 1 is

    L1(decoded chunk, chunk) + 5 * sum over codebooks of MSE(latent, its code (no gradient)).

Buffer and parameter names follow the reference implementation (`vq_layer.layers.0._codebook.embed`, ...),
which adapted lucidrains' vector-quantize-pytorch with its default settings (no k-means init, no dead-code
expiry, Euclidean distance).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

N_CODEBOOKS = 2  # the reference fixes the residual VQ at two layers
COMMITMENT_WEIGHT = 5.0


def mlp(in_dim: int, dims: list[int]) -> nn.Sequential:
    """Linear layers of the given output sizes with ReLU between them (reference name layout: 0, 2, 4, ...)."""
    layers: list[nn.Module] = []
    for i, dim in enumerate(dims):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(in_dim, dim))
        in_dim = dim
    return nn.Sequential(*layers)


class EMACodebook(nn.Module):
    """`n_embed` codes of size `dim`, each the running mean of the latents assigned to it.

    Buffers (shapes with the reference's leading codebook axis of 1):
        embed (1, n_embed, dim): the codes.
        cluster_size (1, n_embed): EMA of how many latents each code received per batch.
        embed_avg (1, n_embed, dim): EMA of the sum of those latents; embed = embed_avg / cluster_size.
            cluster_size starts at 1 (the reference: 0), so that a code which receives nothing at first
            keeps its value instead of being divided by ~eps (the reference's unused codes jump to ~1e4 at
            the first update, and decode to absurd actions when sampled early in phase 2). A code unused
            for long fades towards 0 in both.
        initted (1,): 1.0 once the codes are initialised; the codes start uniform at random (no k-means
            initialisation), so it is always 1 here and kept for checkpoint compatibility.
    """

    def __init__(self, n_embed: int, dim: int, decay: float = 0.8, eps: float = 1e-5):
        super().__init__()
        self.decay, self.eps = decay, eps
        bound = math.sqrt(6 / (n_embed * dim))  # He-uniform over a (1, n_embed, dim) tensor, as the reference
        embed = torch.empty(1, n_embed, dim).uniform_(-bound, bound)
        self.register_buffer("initted", torch.ones(1))
        self.register_buffer("cluster_size", torch.ones(1, n_embed))
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("embed", embed)

    def nearest(self, x: Tensor) -> Tensor:
        """Index of the nearest code (Euclidean) of every latent: (N, dim) -> (N,)."""
        return torch.cdist(x.float(), self.embed[0]).argmin(dim=-1)

    @torch.no_grad()
    def ema_update(self, x: Tensor, indices: Tensor) -> None:
        """Move every code towards the mean of the latents (N, dim) assigned to it by `indices` (N,)."""
        onehot = F.one_hot(indices, self.embed.shape[1]).to(x.dtype)  # (N, n_embed)
        self.cluster_size.lerp_(onehot.sum(0)[None], 1 - self.decay)
        self.embed_avg.lerp_((onehot.T @ x)[None], 1 - self.decay)
        # Laplace smoothing keeps codes that received nothing from dividing by zero.
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (total + self.embed.shape[1] * self.eps) * total
        self.embed.copy_(self.embed_avg / smoothed[..., None])


class VectorQuantize(nn.Module):
    """One quantisation layer of the residual VQ; holds its codebook under the reference's name `_codebook`."""

    def __init__(self, n_embed: int, dim: int):
        super().__init__()
        self._codebook = EMACodebook(n_embed, dim)

    def forward(self, x: Tensor, update_codebook: bool) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, dim) -> (quantised (N, dim), code indices (N,), commitment loss (scalar)).

        The quantised value carries x's gradient (straight-through); the codebook is updated from x when
        `update_codebook` (phase 1, training mode).
        """
        with torch.autocast(device_type=x.device.type, enabled=False):  # distances in float32
            x = x.float()
            indices = self._codebook.nearest(x.detach())
            codes = self._codebook.embed[0][indices]  # (N, dim), read before the update below
            if update_codebook:
                self._codebook.ema_update(x.detach(), indices)
            commitment = F.mse_loss(x, codes)
            return x + (codes - x).detach(), indices, commitment


class ResidualVQ(nn.Module):
    """`N_CODEBOOKS` quantisers in series, each quantising what the previous ones left (the residual).

    `freeze_codebook` (bool buffer) stops the EMA updates once the VQ-VAE is trained.
    """

    def __init__(self, n_embed: int, dim: int, n_codebooks: int = N_CODEBOOKS):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantize(n_embed, dim) for _ in range(n_codebooks))
        self.register_buffer("freeze_codebook", torch.tensor(False))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, dim) -> (sum of the chosen codes (N, dim), codes (N, n_codebooks), commitment loss summed
        over codebooks)."""
        update = self.training and not bool(self.freeze_codebook)
        residual, quantized = x, 0.0
        indices, losses = [], []
        for layer in self.layers:
            q, idx, loss = layer(residual, update)
            residual = residual - q.detach()
            quantized = quantized + q
            indices.append(idx)
            losses.append(loss)
        return quantized, torch.stack(indices, dim=-1), torch.stack(losses).sum()

    def codes_to_latent(self, indices: Tensor) -> Tensor:
        """Sum of the codes (N, n_codebooks) -> latent (N, dim)."""
        return sum(layer._codebook.embed[0][indices[:, i]] for i, layer in enumerate(self.layers))


class VqVae(nn.Module):
    """Encoder MLP -> residual VQ -> decoder MLP over flattened action chunks (chunk_size * action_dim,).

    Buffers of the training phase: `discretized` (bool, True once the VQ-VAE is trained and frozen) and
    `optimized_steps` (int64, phase-1 training steps done; not in the reference, whose counter was a Python
    attribute, so that a checkpoint saved in the middle of phase 1 resumes where it stopped).
    """

    def __init__(
        self,
        action_dim: int,
        chunk_size: int,
        n_embed: int,
        embedding_dim: int,
        hidden_dim: int,
        n_training_steps: int,
    ):
        super().__init__()
        self.action_dim, self.chunk_size = action_dim, chunk_size
        self.n_training_steps = n_training_steps
        self.register_buffer("discretized", torch.tensor(False))
        self.register_buffer("optimized_steps", torch.tensor(0, dtype=torch.int64))
        self.vq_layer = ResidualVQ(n_embed, embedding_dim)
        self.encoder = mlp(action_dim * chunk_size, [hidden_dim, hidden_dim, embedding_dim])
        self.decoder = mlp(embedding_dim, [hidden_dim, hidden_dim, action_dim * chunk_size])

    @property
    def n_codebooks(self) -> int:
        return len(self.vq_layer.layers)

    def count_training_step(self) -> None:
        """Record one phase-1 training step; after `n_training_steps` of them the VQ-VAE is trained."""
        self.optimized_steps.add_(1)
        if int(self.optimized_steps) >= self.n_training_steps:
            self.discretized.fill_(True)
            self.vq_layer.freeze_codebook.fill_(True)

    def loss(self, chunks: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Phase-1 loss of action chunks (N, chunk_size, action_dim) and its diagnostics."""
        target = chunks.flatten(1)  # (N, chunk_size * action_dim)
        quantized, codes, commitment = self.vq_layer(self.encoder(target))
        recon_l1 = (self.decoder(quantized) - target).abs().mean()
        info = {
            "recon_l1_error": recon_l1.item(),
            "commitment_loss": commitment.item(),
            # Codes in use per codebook (at most n_codebooks * n_embed), and distinct code pairs.
            "n_different_codes": sum(len(torch.unique(codes[:, i])) for i in range(self.n_codebooks)),
            "n_different_combinations": len(torch.unique(codes, dim=0)),
        }
        return recon_l1 + COMMITMENT_WEIGHT * commitment, info

    @torch.no_grad()
    def encode(self, chunks: Tensor) -> Tensor:
        """The code pair of each action chunk: (N, chunk_size, action_dim) -> (N, n_codebooks)."""
        x = self.encoder(chunks.flatten(1))
        codes = []
        for layer in self.vq_layer.layers:
            idx = layer._codebook.nearest(x)
            x = x - layer._codebook.embed[0][idx]
            codes.append(idx)
        return torch.stack(codes, dim=-1)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """The action chunk of each code pair: (N, n_codebooks) -> (N, chunk_size, action_dim)."""
        out = self.decoder(self.vq_layer.codes_to_latent(codes))
        return out.view(-1, self.chunk_size, self.action_dim)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints of the reference have no step counter: a trained VQ-VAE there has done all its steps.
        if prefix + "optimized_steps" not in state_dict and prefix + "discretized" in state_dict:
            steps = self.n_training_steps if bool(state_dict[prefix + "discretized"]) else 0
            state_dict[prefix + "optimized_steps"] = torch.tensor(steps, dtype=torch.int64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
