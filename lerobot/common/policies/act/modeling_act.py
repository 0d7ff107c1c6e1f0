"""ACT: Action Chunking with Transformers (Zhao et al., "Learning Fine-Grained Bimanual Manipulation with
Low-Cost Hardware", 2023, arXiv:2304.13705).

Method. From one observation, ACT predicts a chunk of `chunk_size` future actions in a single pass:

1. Tokens. Each camera image goes through a ResNet; every pixel of its layer4 feature map, projected to
   `dim_model`, is a token with a 2D sinusoidal position embedding. The robot state, the environment state and
   a latent "style" vector are projected to one token each, with learned position embeddings.
2. Encoder. A transformer encoder mixes [latent, state, env_state, image pixels].
3. Decoder. `chunk_size` zero queries with learned position embeddings (as DETR's object queries) attend to
   the encoder output; a linear head turns each into an action.
4. Training is a conditional VAE: a separate transformer encoder reads [cls, state, actions] and its cls
   output parameterises the latent's posterior N(mu, sigma^2). The loss is the L1 error on the (non-padded)
   actions plus `kl_weight` * KL(posterior || N(0, I)). At inference the latent is the prior mean, zero.

Execution. `select_action` runs the chunk open loop (`n_action_steps` actions per prediction) or, with
`temporal_ensemble_coeff`, predicts at every step and averages all predictions made for the current step.

Parameter names follow the reference implementation (`model.backbone.*`, `model.encoder.layers.0.*`, ...).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies.act.configuration_act import ACTConfig
from lerobot.common.policies.backbone import make_backbone
from lerobot.common.policies.dropout import Dropout, dropout
from lerobot.common.policies.inference_trace import inference_runner
from lerobot.common.policies.pretrained import PreTrainedPolicy, make_adam

STATE = "observation.state"
ENV_STATE = "observation.environment_state"


class ACTPolicy(PreTrainedPolicy):
    """ACT with input/output normalisation, an action queue and optional temporal ensembling."""

    name = "act"
    config_class = ACTConfig
    checkpoint_init_kwargs = {"load_backbone_weights": False}

    def __init__(
        self,
        config: ACTConfig | None = None,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        *,
        load_backbone_weights: bool = True,
    ):
        """`dataset_stats` ({key: {"mean": ..., "std": ...}}) fill the normalisation buffers; without them the
        policy must load a checkpoint before use. `load_backbone_weights=False` skips reading
        `config.pretrained_backbone_weights` (done by `from_pretrained`, whose checkpoint holds the backbone).
        """
        super().__init__()
        config = config if config is not None else ACTConfig()
        self.config = config
        self.init_normalization(dataset_stats)
        self.model = ACT(config, load_backbone_weights)
        self.temporal_ensembler = None
        if config.temporal_ensemble_coeff is not None:
            self.temporal_ensembler = TemporalEnsembler(config.temporal_ensemble_coeff, config.chunk_size)
        self.reset()

    def reset(self) -> None:
        """Forget queued or ensembled actions; call at the start of every episode."""
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)
        if self.temporal_ensembler is not None:
            self.temporal_ensembler.reset()

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        """The action to execute now, (B, action_dim), in dataset units. Call `policy.eval()` first.

        The model runs once every `n_action_steps` calls (every call with temporal ensembling).
        """
        if self.temporal_ensembler is not None:
            return self.temporal_ensembler.update(self.predict_action_chunk(batch))
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]  # (B, n, A)
            self._action_queue.extend(chunk.transpose(0, 1))  # n_action_steps tensors of (B, A)
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """The next `chunk_size` actions, (B, chunk_size, action_dim), in dataset units (latent = 0)."""
        self._check_inputs(batch)
        normalized = self.normalize_inputs(batch)
        obs = {key: normalized[key] for key in self.config.input_shapes}  # only tensors the model reads
        actions = inference_runner(self.model, (obs,), method="predict")(obs)  # (B, chunk_size, A)
        return self.unnormalize_outputs({"action": actions})["action"]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Training loss: {"loss": tensor, "l1_loss": float, "kld_loss": float (with the CVAE in training)}.

        `batch["action"]` is (B, chunk_size, action_dim); `batch["action_is_pad"]` (B, chunk_size), optional,
        marks actions past the episode's end, which are left out of the loss.
        """
        self._check_inputs(batch)
        self._check_actions(batch)
        normalized = self.normalize_inputs(batch)
        obs = {key: normalized[key] for key in self.config.input_shapes}  # only tensors the model reads
        actions = self.normalize_targets(batch)["action"]  # (B, S, A)
        is_pad = batch.get("action_is_pad")
        if is_pad is None:
            is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)

        use_posterior = self.config.use_vae and self.training
        actions_hat, posterior = self.model(obs, actions if use_posterior else None, is_pad)

        l1 = (F.l1_loss(actions_hat, actions, reduction="none") * ~is_pad.unsqueeze(-1)).mean()
        out: dict[str, Any] = {"l1_loss": l1.item()}
        loss = l1
        if posterior is not None:
            mu, log_sigma_x2 = posterior  # (B, latent_dim) each
            kld = (-0.5 * (1 + log_sigma_x2 - mu.pow(2) - log_sigma_x2.exp())).sum(-1).mean()
            out["kld_loss"] = kld.item()
            loss = l1 + self.config.kl_weight * kld
        out["loss"] = loss
        return out

    def get_optim_params(self) -> list[dict[str, Any]]:
        """AdamW parameter groups: everything else at `optimizer_lr`, the backbone at `optimizer_lr_backbone`."""
        backbone, rest = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (backbone if name.startswith("model.backbone.") else rest).append(param)
        return [{"params": rest}, {"params": backbone, "lr": self.config.optimizer_lr_backbone}]

    def make_optimizer(self) -> torch.optim.AdamW:
        """The reference optimiser: AdamW over `get_optim_params()` with the config's lr and weight decay."""
        return make_adam(
            torch.optim.AdamW,
            self.get_optim_params(),
            lr=self.config.optimizer_lr,
            weight_decay=self.config.optimizer_weight_decay,
        )

    def _check_inputs(self, batch: dict[str, Tensor]) -> None:
        missing = [k for k in self.config.input_shapes if k not in batch]
        if missing:
            raise KeyError(f"ACT batch lacks the inputs {missing}; it has {sorted(batch)}.")

    def _check_actions(self, batch: dict[str, Tensor]) -> None:
        if "action" not in batch:
            raise KeyError("ACT's training loss needs batch['action'] of shape (B, chunk_size, action_dim).")
        shape, cfg = tuple(batch["action"].shape), self.config
        if len(shape) != 3 or shape[1] != cfg.chunk_size:
            raise ValueError(
                f"batch['action'] has shape {shape}, but ACT needs (B, chunk_size={cfg.chunk_size}, action_dim): "
                "build the dataset with delta_timestamps=config.delta_timestamps(fps)."
            )


class ACT(nn.Module):
    """The network: observations (normalised) -> a chunk of normalised actions."""

    def __init__(self, config: ACTConfig, load_backbone_weights: bool = True):
        super().__init__()
        self.config = config
        d = config.dim_model
        action_dim = config.output_shapes["action"][0]
        self.use_state = STATE in config.input_shapes
        self.use_env_state = ENV_STATE in config.input_shapes

        # CVAE encoder: [cls, state, actions] -> (mu, log sigma^2) of the latent.
        if config.use_vae:
            self.vae_encoder = TransformerEncoder(config, config.n_vae_encoder_layers)
            self.vae_encoder_cls_embed = nn.Embedding(1, d)
            if self.use_state:
                self.vae_encoder_robot_state_input_proj = nn.Linear(config.input_shapes[STATE][0], d)
            self.vae_encoder_action_input_proj = nn.Linear(action_dim, d)
            self.vae_encoder_latent_output_proj = nn.Linear(d, 2 * config.latent_dim)
            n_vae_tokens = 1 + int(self.use_state) + config.chunk_size
            self.register_buffer("vae_encoder_pos_enc", sinusoidal_positions(n_vae_tokens, d).unsqueeze(0))

        # Observation tokens.
        if config.image_keys:
            weights = config.pretrained_backbone_weights if load_backbone_weights else None
            self.backbone = make_backbone(config.vision_backbone, "frozen_batch_norm", weights)
            self.encoder_img_feat_input_proj = nn.Conv2d(self.backbone.out_channels, d, kernel_size=1)
            self.encoder_cam_feat_pos_embed = SinusoidalPositionEmbedding2d(d // 2)
        if self.use_state:
            self.encoder_robot_state_input_proj = nn.Linear(config.input_shapes[STATE][0], d)
        if self.use_env_state:
            self.encoder_env_state_input_proj = nn.Linear(config.input_shapes[ENV_STATE][0], d)
        self.encoder_latent_input_proj = nn.Linear(config.latent_dim, d)
        n_1d_tokens = 1 + int(self.use_state) + int(self.use_env_state)
        self.encoder_1d_feature_pos_embed = nn.Embedding(n_1d_tokens, d)

        # Encoder-decoder transformer and action head.
        self.encoder = TransformerEncoder(config, config.n_encoder_layers)
        self.decoder = TransformerDecoder(config)
        self.decoder_pos_embed = nn.Embedding(config.chunk_size, d)
        self.action_head = nn.Linear(d, action_dim)

        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:  # as the original ACT
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode_latent(self, obs: dict[str, Tensor], actions: Tensor, is_pad: Tensor) -> tuple[Tensor, ...]:
        """CVAE posterior: sample a latent (B, latent_dim) from N(mu, sigma^2) given the true actions."""
        b = actions.shape[0]
        tokens = [self.vae_encoder_cls_embed.weight.expand(b, 1, -1)]  # (B, 1, D)
        if self.use_state:
            tokens.append(self.vae_encoder_robot_state_input_proj(obs[STATE]).unsqueeze(1))  # (B, 1, D)
        tokens.append(self.vae_encoder_action_input_proj(actions))  # (B, S, D)
        tokens = torch.cat(tokens, dim=1)  # (B, 1 + [1] + S, D)
        n_obs_tokens = tokens.shape[1] - actions.shape[1]
        pad_mask = torch.cat([is_pad.new_zeros(b, n_obs_tokens), is_pad], dim=1)  # True = ignore
        cls_out = self.vae_encoder(tokens, self.vae_encoder_pos_enc, pad_mask)[:, 0]  # (B, D)
        mu, log_sigma_x2 = self.vae_encoder_latent_output_proj(cls_out).chunk(2, dim=-1)  # (B, L) each
        latent = mu + (log_sigma_x2 / 2).exp() * torch.randn_like(mu)
        return latent, mu, log_sigma_x2

    def forward(
        self, obs: dict[str, Tensor], actions: Tensor | None = None, is_pad: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Actions (B, chunk_size, action_dim); and (mu, log sigma^2) when `actions` are given for the CVAE."""
        b = obs[next(iter(self.config.input_shapes))].shape[0]
        if actions is not None and self.config.use_vae:
            if is_pad is None:
                is_pad = torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
            latent, mu, log_sigma_x2 = self.encode_latent(obs, actions, is_pad)
            posterior = (mu, log_sigma_x2)
        else:
            latent = self.encoder_latent_input_proj.weight.new_zeros(b, self.config.latent_dim)
            posterior = None

        # 1D tokens: [latent, state, env_state], each (B, D), with learned position embeddings.
        tokens = [self.encoder_latent_input_proj(latent)]
        if self.use_state:
            tokens.append(self.encoder_robot_state_input_proj(obs[STATE]))
        if self.use_env_state:
            tokens.append(self.encoder_env_state_input_proj(obs[ENV_STATE]))
        tokens = torch.stack(tokens, dim=1)  # (B, n_1d, D)
        pos = self.encoder_1d_feature_pos_embed.weight.unsqueeze(0)  # (1, n_1d, D)

        # Image tokens: one per feature-map pixel; cameras side by side along the width.
        if self.config.image_keys:
            feats, feat_pos = [], []
            for key in self.config.image_keys:
                fmap = self.backbone(obs[key])  # (B, 512, h, w)
                feat_pos.append(self.encoder_cam_feat_pos_embed(fmap))  # (1, D, h, w)
                feats.append(self.encoder_img_feat_input_proj(fmap))  # (B, D, h, w)
            feats = torch.cat(feats, dim=-1).flatten(2).transpose(1, 2)  # (B, h * w * n_cams, D)
            feat_pos = torch.cat(feat_pos, dim=-1).flatten(2).transpose(1, 2)  # (1, h * w * n_cams, D)
            tokens = torch.cat([tokens, feats], dim=1)
            pos = torch.cat([pos, feat_pos.to(pos.dtype)], dim=1)

        memory = self.encoder(tokens, pos)  # (B, N, D)
        queries = memory.new_zeros(b, self.config.chunk_size, self.config.dim_model)  # (B, S, D)
        out = self.decoder(queries, memory, self.decoder_pos_embed.weight.unsqueeze(0), pos)  # (B, S, D)
        return self.action_head(out), posterior

    def predict(self, obs: dict[str, Tensor]) -> Tensor:
        """Inference: the actions (B, chunk_size, action_dim) with the latent at zero (the prior's mean)."""
        return self(obs)[0]


# ----------------------------------------------------------------------------------------------------------
# Transformer layers (batch first). Position embeddings are added to queries and keys, never to values.
# ----------------------------------------------------------------------------------------------------------


class MultiheadAttention(nn.Module):
    """`nn.MultiheadAttention` (batch first, same parameter names: `in_proj_weight`, `in_proj_bias`,
    `out_proj.*`), written out so that training draws its attention dropout with the cheap CPU mask of
    `dropout.py`, and so that queries and keys computed from one tensor share one projection."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim_model={dim} is not divisible by n_heads={n_heads}.")
        self.n_heads, self.dropout = n_heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        # query (B, S, D), key and value (B, N, D); key_padding_mask (B, N), True where a key is ignored.
        d = query.shape[-1]
        w, b = self.in_proj_weight, self.in_proj_bias
        if key is query:
            q, k = F.linear(query, w[: 2 * d], b[: 2 * d]).chunk(2, dim=-1)
        else:
            q, k = F.linear(query, w[:d], b[:d]), F.linear(key, w[d : 2 * d], b[d : 2 * d])
        v = F.linear(value, w[2 * d :], b[2 * d :])
        q, k, v = (t.unflatten(-1, (self.n_heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B, H, *, D/H)
        ignored = None if key_padding_mask is None else key_padding_mask[:, None, None, :]  # (B, 1, 1, N)
        if self.training and self.dropout > 0:
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, S, N)
            if ignored is not None:
                scores = scores.masked_fill(ignored, float("-inf"))
            out = dropout(scores.softmax(dim=-1), self.dropout, True) @ v
        else:
            attend = None if ignored is None else ~ignored  # SDPA's boolean mask marks the keys to attend to
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, S, D)


class _FeedForwardLayer(nn.Module):
    """Holds the feed-forward sub-layer shared by encoder and decoder layers: Linear, activation, Linear."""

    def __init__(self, config: ACTConfig):
        super().__init__()
        self.linear1 = nn.Linear(config.dim_model, config.dim_feedforward)
        self.dropout = Dropout(config.dropout)
        self.linear2 = nn.Linear(config.dim_feedforward, config.dim_model)
        self.activation = F.relu if config.feedforward_activation == "relu" else F.gelu
        self.pre_norm = config.pre_norm

    def feed_forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class TransformerEncoderLayer(_FeedForwardLayer):
    """Self-attention then feed-forward, each residual, LayerNorm after (or, with pre_norm, before)."""

    def __init__(self, config: ACTConfig):
        super().__init__(config)
        d = config.dim_model
        self.self_attn = MultiheadAttention(d, config.n_heads, dropout=config.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2 = Dropout(config.dropout), Dropout(config.dropout)

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        h = self.norm1(x) if self.pre_norm else x
        qk = h + pos
        h = self.self_attn(qk, qk, h, key_padding_mask=key_padding_mask)
        x = x + self.dropout1(h)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = x + self.dropout2(self.feed_forward(h))
        return x if self.pre_norm else self.norm2(x)


class TransformerEncoder(nn.Module):
    def __init__(self, config: ACTConfig, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(config) for _ in range(n_layers))
        self.norm = nn.LayerNorm(config.dim_model) if config.pre_norm else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:  # (B, N, D)
        for layer in self.layers:
            x = layer(x, pos, key_padding_mask)
        return self.norm(x)


class TransformerDecoderLayer(_FeedForwardLayer):
    """Self-attention over the queries, cross-attention to the encoder output, feed-forward."""

    def __init__(self, config: ACTConfig):
        super().__init__(config)
        d, heads, p = config.dim_model, config.n_heads, config.dropout
        self.self_attn = MultiheadAttention(d, heads, dropout=p)
        self.multihead_attn = MultiheadAttention(d, heads, dropout=p)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout1, self.dropout2, self.dropout3 = Dropout(p), Dropout(p), Dropout(p)

    def forward(self, x: Tensor, memory: Tensor, pos: Tensor, memory_pos: Tensor) -> Tensor:
        h = self.norm1(x) if self.pre_norm else x
        qk = h + pos
        h = self.self_attn(qk, qk, h)
        x = x + self.dropout1(h)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        h = self.multihead_attn(h + pos, memory + memory_pos, memory)
        x = x + self.dropout2(h)
        if not self.pre_norm:
            x = self.norm2(x)
        h = self.norm3(x) if self.pre_norm else x
        x = x + self.dropout3(self.feed_forward(h))
        return x if self.pre_norm else self.norm3(x)


class TransformerDecoder(nn.Module):
    def __init__(self, config: ACTConfig):
        super().__init__()
        self.layers = nn.ModuleList(TransformerDecoderLayer(config) for _ in range(config.n_decoder_layers))
        self.norm = nn.LayerNorm(config.dim_model)

    def forward(self, x: Tensor, memory: Tensor, pos: Tensor, memory_pos: Tensor) -> Tensor:  # (B, S, D)
        for layer in self.layers:
            x = layer(x, memory, pos, memory_pos)
        return self.norm(x)


# ----------------------------------------------------------------------------------------------------------
# Position embeddings
# ----------------------------------------------------------------------------------------------------------


def sinusoidal_positions(n_positions: int, dim: int) -> Tensor:
    """(n_positions, dim): sin(p / 10000^(2i/dim)) in even channels 2i, cos of the same angle in 2i + 1."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    channel = torch.arange(dim)
    angles = position / 10000 ** (2 * (channel // 2) / dim)
    return torch.where(channel % 2 == 0, angles.sin(), angles.cos()).float()


class SinusoidalPositionEmbedding2d(nn.Module):
    """DETR's 2D embedding: `dim` channels encode the row and `dim` the column of each feature-map pixel.

    Coordinates 1..H (and 1..W) are scaled to (0, 2 pi]; channel pairs (2i, 2i + 1) hold sin and cos of
    coordinate / 10000^(2i/dim). Output (1, 2 * dim, H, W), rows first then columns.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def _encode(self, n: int, device: torch.device) -> Tensor:  # (n, dim)
        coord = torch.arange(1, n + 1, dtype=torch.float32, device=device) / (n + 1e-6) * 2 * math.pi
        channel = torch.arange(self.dim, device=device)
        angles = coord[:, None] / 10000 ** (2 * (channel // 2) / self.dim)
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=-1).flatten(1)

    def forward(self, fmap: Tensor) -> Tensor:  # (B, C, H, W) -> (1, 2 * dim, H, W)
        h, w = fmap.shape[-2:]
        rows = self._encode(h, fmap.device)[:, None, :].expand(h, w, self.dim)
        cols = self._encode(w, fmap.device)[None, :, :].expand(h, w, self.dim)
        return torch.cat([rows, cols], dim=-1).permute(2, 0, 1).unsqueeze(0)


# ----------------------------------------------------------------------------------------------------------
# Temporal ensembling
# ----------------------------------------------------------------------------------------------------------


class TemporalEnsembler:
    """Online weighted average of every chunk's prediction for the current step.

    A chunk predicted at step t holds actions for steps t .. t + chunk_size - 1, so step t has up to
    chunk_size predictions. Ordered oldest first, prediction i gets weight w_i = exp(-coeff * i): with
    coeff > 0 older predictions weigh more, which keeps the executed trajectory smooth. Per pending step this
    keeps the weighted sum of its predictions and their count, so the average costs O(chunk_size) per step.
    """

    def __init__(self, coeff: float, chunk_size: int):
        self.chunk_size = chunk_size
        self.weights = torch.exp(-coeff * torch.arange(chunk_size, dtype=torch.float32))  # (S,)
        self.total_weights = self.weights.cumsum(0)  # total_weights[n - 1]: sum of the first n weights
        self.reset()

    def reset(self) -> None:
        self.weighted_sum: Tensor | None = None  # (B, S, A) for steps t .. t + S - 1
        self.count: Tensor | None = None  # (S,) predictions so far per pending step

    def update(self, chunk: Tensor) -> Tensor:
        """Add the chunk predicted at this step, (B, S, A); return the ensembled action for it, (B, A)."""
        weights = self.weights.to(chunk.device, chunk.dtype)
        if self.weighted_sum is None:
            self.weighted_sum = chunk * weights[0]
            self.count = torch.ones(self.chunk_size, dtype=torch.long, device=chunk.device)
        else:
            # Steps t .. t + S - 2 already have predictions; the chunk's last step is new.
            held = self.weighted_sum.shape[1]
            added = chunk[:, :held] * weights[self.count][None, :, None]
            self.weighted_sum = torch.cat([self.weighted_sum + added, chunk[:, held:] * weights[0]], dim=1)
            self.count = torch.cat([self.count + 1, self.count.new_ones(self.chunk_size - held)])
        action = self.weighted_sum[:, 0] / self.total_weights.to(chunk)[self.count[0] - 1]
        self.weighted_sum, self.count = self.weighted_sum[:, 1:], self.count[1:]
        return action
