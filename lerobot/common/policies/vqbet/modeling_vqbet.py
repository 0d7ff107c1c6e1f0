"""VQ-BeT: Vector-Quantized Behavior Transformer (Lee et al., "Behavior Generation with Latent Actions", 2024,
arXiv:2403.03181).

Method. Actions are predicted in chunks of `action_chunk_size` steps, each chunk as a discrete code plus a
continuous correction:

1. Phase 1 (the first `n_vqvae_training_steps` training steps): a residual VQ-VAE (vqvae.py) learns to
   compress every action chunk of the batch into two codes, a primary one and a residual one. Only the
   VQ-VAE trains; the rest of the policy gets no gradient.
2. Phase 2: the VQ-VAE is frozen. For each of the last `n_obs_steps` observation steps the GPT (gpt.py) reads
   one token per camera (ResNet features -> spatial-softmax keypoints), one for the robot state and one
   learned "action query" token; `n_action_pred_token - 1` further query tokens ask about the future:

       [img_{t-n+1}, state_{t-n+1}, A_Q, ..., img_t, state_t, A_Q, A_Q, ..., A_Q]

   At every query token, heads predict logits over both codebooks and, for every code, an offset (a full
   action chunk). The loss is the focal loss of the logits against the codes the frozen VQ-VAE gives the true
   chunk (weights 5 and 0.5), plus `offset_loss_weight` times the L1 error of the predicted chunk, which
   is decode(sampled codes) + the offsets of those codes.
3. Inference: codes are sampled from softmax(logits / bet_softmax_temperature); the chunk predicted at the
   current step's query token is executed open loop, one action per `select_action` call.

The training phase is in the weights (buffers `...vqvae_model.discretized` and `...vqvae_model.optimized_steps`),
so a checkpoint resumes in the phase it was saved in. Parameter names follow the reference implementation
(`vqbet.rgb_encoder.backbone.4.0.conv1.weight`, `vqbet.policy.transformer.h.0.attn.c_attn.weight`,
`vqbet.action_head.vqvae_model.vq_layer.layers.0._codebook.embed`, ...).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies.backbone import SpatialSoftmaxEncoder
from lerobot.common.policies.pretrained import PreTrainedPolicy, make_adam
from lerobot.common.policies.vqbet.configuration_vqbet import STATE, VQBeTConfig
from lerobot.common.policies.vqbet.gpt import GPT
from lerobot.common.policies.vqbet.vqvae import N_CODEBOOKS, VqVae, mlp

FOCAL_LOSS_GAMMA = 2.0


class VQBeTPolicy(PreTrainedPolicy):
    """VQ-BeT with input/output normalisation, observation and action queues, and its two training phases."""

    name = "vqbet"
    config_class = VQBeTConfig
    checkpoint_init_kwargs = {"load_backbone_weights": False}

    def __init__(
        self,
        config: VQBeTConfig | None = None,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        *,
        load_backbone_weights: bool = True,
    ):
        """`dataset_stats` ({key: {"min": ..., "max": ...}, ...}) fill the normalisation buffers; without them
        the policy must load a checkpoint before use. `load_backbone_weights=False` skips reading
        `config.pretrained_backbone_weights` (done by `from_pretrained`, whose checkpoint holds the backbone).
        """
        super().__init__()
        config = config if config is not None else VQBeTConfig()
        self.config = config
        self.init_normalization(dataset_stats)
        self.vqbet = VQBeTModel(config, load_backbone_weights)
        # Loading a checkpoint can change the phase: re-derive which parameters train from its buffers.
        self.register_load_state_dict_post_hook(VQBeTPolicy._after_load)
        self.reset()

    @property
    def vqvae(self) -> VqVae:
        return self.vqbet.action_head.vqvae_model

    @property
    def vqvae_trained(self) -> bool:
        """False during phase 1 (the VQ-VAE trains), True in phase 2 (the GPT trains)."""
        return bool(self.vqvae.discretized)

    @staticmethod
    def _after_load(policy: VQBeTPolicy, _incompatible_keys: Any) -> None:
        policy._apply_phase()

    def _apply_phase(self) -> None:
        # In phase 2 the VQ-VAE is frozen: its parameters get no gradient (and the optimiser skips them).
        for p in self.vqvae.parameters():
            p.requires_grad_(not self.vqvae_trained)

    def reset(self) -> None:
        """Forget queued observations and actions; call at the start of every episode."""
        self._obs_queues: dict[str, deque[Tensor]] = {
            key: deque(maxlen=self.config.n_obs_steps) for key in self.config.input_shapes
        }
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.action_chunk_size)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        """The action to execute now, (B, action_dim), in dataset units. Call `policy.eval()` first.

        `batch` holds the current observation, each input (B, *shape). The last `n_obs_steps` observations
        are kept (the first one repeated at the start of an episode); the model runs once every
        `action_chunk_size` calls.
        """
        self.check_inputs(batch, n_steps=None)
        for key, queue in self._obs_queues.items():
            if not queue:
                queue.extend([batch[key]] * self.config.n_obs_steps)
            else:
                queue.append(batch[key])
        if not self._action_queue:
            history = {key: torch.stack(list(q), dim=1) for key, q in self._obs_queues.items()}
            chunk = self.predict_action_chunk(history)  # (B, action_chunk_size, A)
            self._action_queue.extend(chunk.transpose(0, 1))  # action_chunk_size tensors of (B, A)
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """The next `action_chunk_size` actions, (B, action_chunk_size, A), in dataset units.

        `batch` holds the last `n_obs_steps` observations, each input (B, n_obs_steps, *shape), oldest first.
        """
        if not self.vqvae_trained:
            warnings.warn(
                "VQ-BeT is predicting actions before its VQ-VAE is trained (phase 1, "
                f"{int(self.vqvae.optimized_steps)}/{self.config.n_vqvae_training_steps} steps done): the codes "
                "are random, and so are the actions. Load a checkpoint trained past phase 1.",
                stacklevel=3,  # past the no_grad wrapper: the caller of predict_action_chunk
            )
        self.check_inputs(batch, n_steps=self.config.n_obs_steps)
        out = self.vqbet(self.normalize_inputs(batch))
        chunk = out["predicted_action"][:, self.config.n_obs_steps - 1]  # the current step's query token
        return self.unnormalize_outputs({"action": chunk})["action"]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Training loss of the current phase: {"loss": tensor, <diagnostics as floats>}.

        Inputs are (B, n_obs_steps, *shape); `batch["action"]` is (B, n_obs_steps + n_action_pred_token +
        action_chunk_size - 2, A), starting at the oldest observation step (see `config.delta_timestamps`).
        As in the reference, padded actions past an episode's end (copies of its last action) are not masked.
        In phase 1 every training-mode call counts as one of the `n_vqvae_training_steps`.
        """
        self._check_actions(batch)
        actions = self.normalize_targets(batch)["action"]  # (B, S, A)
        if not self.vqvae_trained:
            return self._vqvae_forward(actions)
        self._apply_phase()
        self.check_inputs(batch, n_steps=self.config.n_obs_steps)
        out = self.vqbet(self.normalize_inputs(batch))
        targets = actions[:, self.vqbet.select_target_actions_indices]  # (B, T, action_chunk_size, A)
        return self.vqbet.action_head.loss(out, targets)

    def _vqvae_forward(self, actions: Tensor) -> dict[str, Any]:
        """Phase 1: the VQ-VAE loss over every window of `action_chunk_size` actions of the batch."""
        c = self.config.action_chunk_size
        chunks = actions.unfold(1, c, 1).transpose(2, 3).flatten(0, 1)  # (B * n_windows, c, A)
        loss, info = self.vqvae.loss(chunks)
        if self.training:
            self.vqvae.count_training_step()
        return {"loss": loss, **info, "vqvae_steps_done": int(self.vqvae.optimized_steps)}

    # -- training hooks used by lerobot/scripts/train.py ----------------------------------------------------

    def get_optim_params(self) -> list[dict[str, Any]]:
        """Adam parameter groups. Every parameter is in one, whatever the phase, so an optimiser state saved
        in phase 1 loads into the optimiser of a run resumed in phase 2.

        0. vision encoder, projections, action token, heads: the optimiser's defaults (`optimizer_lr`, ...);
        1. VQ-VAE encoder/decoder: `optimizer_vqvae_lr`, `optimizer_vqvae_weight_decay`;
        2. GPT linear weights: `optimizer_bet_lr`, `optimizer_bet_weight_decay`, `optimizer_bet_betas`;
        3. GPT biases, LayerNorms, position embedding: `optimizer_bet_lr`, no weight decay.
        """
        cfg = self.config
        vqvae = list(self.vqvae.parameters())
        gpt_decay, gpt_no_decay = self.vqbet.policy.parameter_groups()
        grouped = {id(p) for p in vqvae + gpt_decay + gpt_no_decay}
        rest = [p for p in self.parameters() if id(p) not in grouped]
        bet = {"lr": cfg.optimizer_bet_lr, "betas": cfg.optimizer_bet_betas}
        return [
            {"params": rest},
            {"params": vqvae, "lr": cfg.optimizer_vqvae_lr, "weight_decay": cfg.optimizer_vqvae_weight_decay},
            {"params": gpt_decay, "weight_decay": cfg.optimizer_bet_weight_decay, **bet},
            {"params": gpt_no_decay, "weight_decay": 0.0, **bet},
        ]

    def make_optimizer(self) -> torch.optim.Adam:
        cfg = self.config
        return make_adam(
            torch.optim.Adam,
            self.get_optim_params(),
            lr=cfg.optimizer_lr,
            betas=cfg.optimizer_betas,
            eps=cfg.optimizer_eps,
            weight_decay=cfg.optimizer_weight_decay,
        )

    def make_lr_scheduler(
        self, optimizer: torch.optim.Optimizer, num_training_steps: int
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """Constant during the `n_vqvae_training_steps` of phase 1; then a linear warm-up over
        `scheduler_warmup_steps` and a cosine decay that reaches 0 at `num_training_steps`.

        (The reference's cosine spans `num_training_steps - warmup` steps counted from the start of phase 2,
        so it stops short of 0; here it spans the steps that phase 2 actually has.)
        """
        n_vqvae, warmup = self.config.n_vqvae_training_steps, self.config.scheduler_warmup_steps
        n_decay = max(1, num_training_steps - n_vqvae - warmup)

        def factor(step: int) -> float:
            if step < n_vqvae:
                return 1.0
            step -= n_vqvae
            if step < warmup:
                return step / warmup
            progress = min(1.0, (step - warmup) / n_decay)
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    # -- input checks -----------------------------------------------------------------------------------

    def _check_actions(self, batch: dict[str, Tensor]) -> None:
        cfg = self.config
        n_actions = len(cfg.action_delta_indices)
        if "action" not in batch:
            raise KeyError(
                f"VQ-BeT's training loss needs batch['action'] of shape (B, {n_actions}, action_dim)."
            )
        shape = list(batch["action"].shape)
        if shape[1:] != [n_actions, *cfg.output_shapes["action"]]:
            raise ValueError(
                f"batch['action'] has shape {shape}, but VQ-BeT needs [B, {n_actions}, "
                f"{cfg.output_shapes['action'][0]}] (n_obs_steps + n_action_pred_token + action_chunk_size - 2 "
                "actions): build the dataset with delta_timestamps=config.delta_timestamps(fps)."
            )


class VQBeTModel(nn.Module):
    """The network on normalised tensors: observation history -> code logits, sampled codes, action chunks."""

    def __init__(self, config: VQBeTConfig, load_backbone_weights: bool = True):
        super().__init__()
        self.config = config
        image_size = config.crop_shape or tuple(config.input_shapes[config.image_keys[0]][1:])
        self.rgb_encoder = SpatialSoftmaxEncoder(config, image_size, load_backbone_weights)
        # One learned query token, repeated wherever an action chunk is asked for (A_Q in the module docstring).
        self.action_token = nn.Parameter(torch.randn(1, 1, config.gpt_input_dim))
        self.state_projector = mlp(config.input_shapes[STATE][0], [config.gpt_input_dim])
        self.rgb_feature_projector = mlp(self.rgb_encoder.feature_dim, [config.gpt_input_dim])
        self.policy = GPT(config)
        self.action_head = VQBeTHead(config)
        # Row i: the indices, within the batch's actions, of the chunk that query token i must predict.
        n_queries = config.n_obs_steps + config.n_action_pred_token - 1
        indices = torch.arange(n_queries)[:, None] + torch.arange(config.action_chunk_size)[None]
        self.register_buffer("select_target_actions_indices", indices)  # (T, action_chunk_size)

    def forward(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Inputs (B, n_obs_steps, *shape) -> the head's outputs for the T = n_obs_steps +
        n_action_pred_token - 1 query tokens (see `VQBeTHead.forward`)."""
        cfg = self.config
        b, s = obs[STATE].shape[:2]
        images = torch.stack([obs[key] for key in cfg.image_keys], dim=2)  # (B, S, N, C, H, W)
        n_cams = images.shape[2]
        features = self.rgb_encoder(images.flatten(0, 2)).view(b, s, n_cams, -1)  # (B, S, N, 2K)
        tokens = [
            self.rgb_feature_projector(features),  # (B, S, N, D)
            self.state_projector(obs[STATE]).unsqueeze(2),  # (B, S, 1, D)
            self.action_token.expand(b, s, 1, -1),  # (B, S, 1, D)
        ]
        tokens = torch.cat(tokens, dim=2).flatten(1, 2)  # (B, S * (N + 2), D), interleaved per step
        future = self.action_token.expand(b, cfg.n_action_pred_token - 1, -1)  # (B, P - 1, D)
        out = self.policy(torch.cat([tokens, future], dim=1))  # (B, S * (N + 2) + P - 1, gpt_output_dim)
        # The outputs at the query tokens: the last token of every step, then the future queries.
        step_queries = out[:, : s * (n_cams + 2)].unflatten(1, (s, n_cams + 2))[:, :, -1]  # (B, S, D')
        queries = torch.cat([step_queries, out[:, s * (n_cams + 2) :]], dim=1)  # (B, T, D')
        return self.action_head(queries)


class VQBeTHead(nn.Module):
    """GPT features -> code logits for both codebooks, a sampled code pair, and per-code offsets.

    `map_to_cbet_preds_bin` predicts the logits of both codebooks at once (or, with `sequentially_select`,
    `map_to_cbet_preds_primary_bin` the primary ones and `map_to_cbet_preds_secondary_bin` the secondary
    ones given the sampled primary code). `map_to_cbet_preds_offset` predicts an offset chunk for every code
    of every codebook; the offsets of the sampled codes are summed and added to the decoded code pair.
    """

    def __init__(self, config: VQBeTConfig):
        super().__init__()
        self.config = config
        self.action_dim = config.output_shapes["action"][0]
        self.vqvae_model = VqVae(
            self.action_dim,
            config.action_chunk_size,
            config.vqvae_n_embed,
            config.vqvae_embedding_dim,
            config.vqvae_enc_hidden_dim,
            config.n_vqvae_training_steps,
        )
        d, n_embed = config.gpt_output_dim, config.vqvae_n_embed
        if config.sequentially_select:
            self.map_to_cbet_preds_primary_bin = mlp(d, [n_embed])
            self.map_to_cbet_preds_secondary_bin = mlp(d + n_embed, [n_embed])
        else:
            self.map_to_cbet_preds_bin = mlp(d, [N_CODEBOOKS * n_embed])
        chunk_numel = config.action_chunk_size * self.action_dim
        self.map_to_cbet_preds_offset = mlp(d, [N_CODEBOOKS * n_embed * chunk_numel])

    def _sample(self, logits: Tensor) -> Tensor:
        """Codes drawn from softmax(logits / temperature): (..., n_embed) -> (...)."""
        probs = F.softmax(logits / self.config.bet_softmax_temperature, dim=-1)
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).view(probs.shape[:-1])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """GPT features at the query tokens (B, T, D') -> dict of
        cbet_logits (B * T, 2, n_embed): logits of both codebooks;
        sampled_centers (B * T, 2): the sampled code pairs;
        decoded_action (B * T, chunk, A): the decoded code pairs (no gradient);
        predicted_action (B, T, chunk, A): decoded code pairs + the offsets of their codes.
        """
        cfg = self.config
        b, t = x.shape[:2]
        x = x.flatten(0, 1)  # (n, D') with n = B * T
        n, n_embed, chunk = x.shape[0], cfg.vqvae_n_embed, cfg.action_chunk_size
        if cfg.sequentially_select:
            primary_logits = self.map_to_cbet_preds_primary_bin(x)  # (n, n_embed)
            primary = self._sample(primary_logits)  # (n,)
            primary_onehot = F.one_hot(primary, n_embed).to(x.dtype)
            secondary_logits = self.map_to_cbet_preds_secondary_bin(torch.cat([x, primary_onehot], dim=1))
            logits = torch.stack([primary_logits, secondary_logits], dim=1)  # (n, 2, n_embed)
            codes = torch.stack([primary, self._sample(secondary_logits)], dim=1)  # (n, 2)
        else:
            logits = self.map_to_cbet_preds_bin(x).view(n, N_CODEBOOKS, n_embed)
            codes = self._sample(logits)  # (n, 2)
        offsets = self.map_to_cbet_preds_offset(x).view(n, N_CODEBOOKS, n_embed, chunk * self.action_dim)
        rows = torch.arange(n, device=x.device)[:, None]
        layers = torch.arange(N_CODEBOOKS, device=x.device)[None]
        offset = offsets[rows, layers, codes].sum(dim=1).view(n, chunk, self.action_dim)  # (n, chunk, A)
        decoded = self.vqvae_model.decode(codes)  # (n, chunk, A)
        return {
            "cbet_logits": logits,
            "sampled_centers": codes,
            "decoded_action": decoded,
            "predicted_action": (decoded + offset).view(b, t, chunk, self.action_dim),
        }

    def loss(self, out: dict[str, Tensor], targets: Tensor) -> dict[str, Any]:
        """Phase-2 loss of the head's outputs against the true chunks `targets` (B, T, chunk, A)."""
        cfg = self.config
        targets = targets.flatten(0, 1)  # (n, chunk, A)
        predicted = out["predicted_action"].flatten(0, 1)  # (n, chunk, A)
        logits, sampled = out["cbet_logits"], out["sampled_centers"]
        true_codes = self.vqvae_model.encode(targets)  # (n, 2), the labels of the code heads
        primary_loss = focal_loss(logits[:, 0], true_codes[:, 0])
        secondary_loss = focal_loss(logits[:, 1], true_codes[:, 1])
        code_loss = cfg.primary_code_loss_weight * primary_loss
        code_loss = code_loss + cfg.secondary_code_loss_weight * secondary_loss
        offset_loss = F.l1_loss(predicted, targets)
        error = (predicted - targets).detach()
        return {
            "loss": code_loss + cfg.offset_loss_weight * offset_loss,
            "classification_loss": code_loss.item(),
            "primary_code_loss": primary_loss.item(),
            "secondary_code_loss": secondary_loss.item(),
            "offset_loss": offset_loss.item(),
            "equal_primary_code_rate": (sampled[:, 0] == true_codes[:, 0]).float().mean().item(),
            "equal_secondary_code_rate": (sampled[:, 1] == true_codes[:, 1]).float().mean().item(),
            "vq_action_error": (out["decoded_action"] - targets).abs().mean().item(),
            "offset_action_error": error.abs().mean().item(),
            "action_error_max": error.abs().max().item(),
            "action_mse_error": error.pow(2).mean().item(),
        }


def focal_loss(logits: Tensor, target: Tensor, gamma: float = FOCAL_LOSS_GAMMA) -> Tensor:
    """Mean of -(1 - p)^gamma * log p, p the probability of the target class (Lin et al., 2017): cross-entropy
    that down-weights the examples already classified well. logits (N, C), target (N,)."""
    log_p = F.log_softmax(logits, dim=-1).gather(-1, target[:, None]).squeeze(-1)  # (N,)
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()
