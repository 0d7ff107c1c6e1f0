"""TD-MPC: Temporal Difference Learning for Model Predictive Control (Hansen, Wang, Su, 2022,
arXiv:2203.04955), in the form of FOWM, "Finetuning Offline World Models in the Real World" (Feng et al.,
2023, arXiv:2310.16029), which the reference lerobot implements.

Model ("TOLD", task-oriented latent dynamics). An encoder maps the observation (one camera image, the robot
state and/or the environment state; one code per modality, averaged) to a latent z. On top of z:
    dynamics  d(z, a) -> z'        reward  R(z, a) -> r        policy prior  pi(z) -> a  (tanh)
    Q ensemble  Q_i(z, a)          state value  V(z)
A target copy of the whole model follows it by an exponential moving average (`update()`).

Training on a sequence (o_0 .. o_H, a_0 .. a_{H-1}, r_0 .. r_{H-1}) from the data: roll the latent model out
from z_0 = enc(o_0) with the recorded actions, and at every step t (weight rho^t):
    consistency  ||d(z_t, a_t) - enc_target(o_{t+1})||^2
    reward       (R(z_t, a_t) - r_t)^2
    Q (TD)       sum_i (Q_i(z_t, a_t) - (r_t + gamma * V(enc(o_{t+1}))))^2
    V            expectile loss of V(z_t) towards min of two target Q_i(z_t, a_t) (IQL, FOWM eq. 3)
    pi           advantage-weighted regression: exp(beta * (Q_target - V)) * ||pi(z_t) - a_t||^2
Steps past the end of an episode (`*_is_pad`) are left out. Only in-sample actions enter the targets, so the
same loss serves offline data and online rollouts alike.

Acting (`select_action`): MPPI over action sequences of length `horizon`, refined by the cross-entropy method
for `cem_iterations`. Candidates come from a Gaussian (warm-started by the previous plan) and from rollouts of
pi; each is scored by its model return, r_t minus lambda times the Q ensemble's spread, plus the discounted
terminal value. The elites update the Gaussian; one elite sequence is finally drawn by its softmax score.

Parameter names follow the reference implementation (`model._encoder.image_enc_layers.0.weight`,
`model._Qs.0.0.weight`, `model_target.*`, ...).
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies.pretrained import PreTrainedPolicy, make_adam
from lerobot.common.policies.tdmpc.configuration_tdmpc import (
    ENV_STATE,
    REWARD,
    STATE,
    TDMPCConfig,
    conv_encoder_output_size,
)


class TDMPCPolicy(PreTrainedPolicy):
    """TD-MPC with action normalisation to [-1, 1], an action queue, MPC planning and an EMA target model."""

    name = "tdmpc"
    config_class = TDMPCConfig

    def __init__(
        self,
        config: TDMPCConfig | None = None,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
    ):
        """`dataset_stats` ({key: {"min": ..., "max": ...}}) fill the normalisation buffers; without them the
        policy must load a checkpoint before use."""
        super().__init__()
        config = config if config is not None else TDMPCConfig()
        self.config = config
        self.init_normalization(dataset_stats)
        self.model = TDMPCTOLD(config)
        self.model_target = copy.deepcopy(self.model)
        self.model_target.requires_grad_(False)
        self.reset()

    def reset(self) -> None:
        """Forget queued actions and the previous plan; call at the start of every episode."""
        self._action_queue: deque[Tensor] = deque()
        self._prev_mean: Tensor | None = None  # (horizon, B, A): last plan's mean, warm-starts the next

    # -- acting -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        """The action to execute now, (B, action_dim), in dataset units.

        `batch` holds the current observation, e.g. `observation.image` (B, C, H, W) and `observation.state`
        (B, D). A new plan is made when the queue is empty: its first action is repeated `n_action_repeats`
        times, or its first `n_action_steps` actions are queued.
        """
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch)  # (B, n, A)
            if self.config.n_action_repeats > 1:
                self._action_queue.extend([chunk[:, 0]] * self.config.n_action_repeats)
            else:
                self._action_queue.extend(chunk[:, : self.config.n_action_steps].unbind(1))
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor]) -> Tensor:
        """Plan from the current observation: (B, horizon, A) with MPC, (B, 1, A) from pi alone; dataset units.

        With MPC this advances the warm start (the plan's mean is kept for the next call).
        """
        self.check_inputs(batch, n_steps=None)
        obs = self.normalize_inputs({k: batch[k] for k in self.config.input_shapes})
        z = self.model.encode(obs)  # (B, L)
        if self.config.use_mpc:
            actions = self.plan(z)  # (horizon, B, A)
        else:
            actions = self.model.pi(z).unsqueeze(0)  # (1, B, A)
        actions = actions.clamp(-1, 1).transpose(0, 1)  # (B, n, A)
        return self.unnormalize_outputs({"action": actions})["action"]

    @torch.no_grad()
    def plan(self, z: Tensor) -> Tensor:
        """MPPI/CEM from latents z (B, L): the chosen normalised action sequence, (horizon, B, A)."""
        cfg = self.config
        horizon, batch_size, action_dim = cfg.horizon, z.shape[0], cfg.output_shapes["action"][0]
        n_samples = cfg.n_gaussian_samples + cfg.n_pi_samples

        # Trajectories of the policy prior, fixed across the CEM iterations: (horizon, N_pi, B, A).
        pi_actions = z.new_empty(horizon, cfg.n_pi_samples, batch_size, action_dim)
        if cfg.n_pi_samples > 0:
            z_pi = z.unsqueeze(0).expand(cfg.n_pi_samples, -1, -1)  # (N_pi, B, L)
            for t in range(horizon):
                pi_actions[t] = self.model.pi(z_pi, cfg.min_std)
                z_pi = self.model.latent_dynamics(z_pi, pi_actions[t])
        z_all = z.unsqueeze(0).expand(n_samples, -1, -1)  # (N, B, L)

        mean = z.new_zeros(horizon, batch_size, action_dim)
        prev, shift = self._prev_mean, cfg.n_action_steps
        if prev is not None and prev.shape == mean.shape and shift < horizon:
            mean[:-shift] = prev[shift:]  # the previous plan, minus the steps executed since
        std = torch.full_like(mean, cfg.max_std)

        for _ in range(cfg.cem_iterations):
            noise = torch.randn(horizon, cfg.n_gaussian_samples, batch_size, action_dim, device=z.device)
            gaussian_actions = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1, 1)
            actions = torch.cat([gaussian_actions, pi_actions], dim=1)  # (horizon, N, B, A)
            value = self.estimate_value(z_all, actions).nan_to_num(0)  # (N, B)

            elite_value, elite_idx = value.topk(cfg.n_elites, dim=0)  # (K, B)
            index = elite_idx[None, :, :, None].expand(horizon, -1, -1, action_dim)
            elite_actions = actions.gather(1, index)  # (horizon, K, B, A)
            # Softmax of the elites' values: mean and std are the score-weighted moments of the elites.
            score = torch.softmax(cfg.elite_weighting_temperature * elite_value, dim=0)  # (K, B)
            weights = score[None, :, :, None]
            elite_mean = (weights * elite_actions).sum(1)  # (horizon, B, A)
            elite_std = (weights * (elite_actions - elite_mean.unsqueeze(1)) ** 2).sum(1).sqrt()
            mean = cfg.gaussian_mean_momentum * mean + (1 - cfg.gaussian_mean_momentum) * elite_mean
            std = elite_std.clamp(cfg.min_std, cfg.max_std)

        self._prev_mean = mean
        choice = torch.multinomial(score.T, 1).squeeze(1)  # (B,) one elite per batch element
        return elite_actions[:, choice, torch.arange(batch_size, device=z.device)]  # (horizon, B, A)

    @torch.no_grad()
    def estimate_value(self, z: Tensor, actions: Tensor) -> Tensor:
        """Model return of action sequences (FOWM eq. 4): z (N, B, L), actions (horizon, N, B, A) -> (N, B).

        sum_t gamma^t (R(z_t, a_t) - lambda * std_i Q_i(z_t, a_t)) + gamma^H (min of two Q_i - lambda * std_i Q_i)
        at (z_H, pi(z_H)).
        """
        cfg = self.config
        ret, discount = torch.zeros(z.shape[:-1], device=z.device, dtype=z.dtype), 1.0
        for a in actions:
            if cfg.uncertainty_regularizer_coeff > 0:
                ret = ret - discount * cfg.uncertainty_regularizer_coeff * self.model.Qs(z, a).std(0)
            z, reward = self.model.latent_dynamics_and_reward(z, a)
            ret = ret + discount * reward
            discount *= cfg.discount
        terminal_qs = self.model.Qs(z, self.model.pi(z, cfg.min_std))  # (E, N, B)
        ret = ret + discount * min_of_two(terminal_qs)
        if cfg.uncertainty_regularizer_coeff > 0:
            ret = ret - discount * cfg.uncertainty_regularizer_coeff * terminal_qs.std(0)
        return ret

    # -- training ---------------------------------------------------------------------------------------

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Training loss: {"loss": tensor, plus each component and the mean Q and V as floats}.

        `batch` (from a dataset built with `config.delta_timestamps(fps)`, or from online rollouts) holds
        observations (B, H + 1, ...), `action` (B, H, A), `next.reward` (B, H), and optionally `<key>_is_pad`
        masks (B, H + 1) / (B, H) marking steps past the episode's end. H = horizon.
        """
        cfg = self.config
        self._check_training_batch(batch)
        obs = self.normalize_inputs({k: batch[k] for k in cfg.input_shapes})
        obs = {k: v.transpose(0, 1) for k, v in obs.items()}  # (H + 1, B, ...)
        action = self.normalize_targets({"action": batch["action"]})["action"].transpose(0, 1)  # (H, B, A)
        reward = batch[REWARD].reshape(batch[REWARD].shape[:2]).transpose(0, 1)  # (H, B)
        horizon = action.shape[0]
        if cfg.image_keys and cfg.max_random_shift_ratio > 0 and self.training:
            key = cfg.image_keys[0]
            obs[key] = random_shift(obs[key].flatten(0, 1), cfg.max_random_shift_ratio).unflatten(
                0, obs[key].shape[:2]
            )
        obs_valid, rollout_valid, reward_valid = self._loss_masks(batch)
        next_valid = obs_valid[1:]  # (H, B): o_{t+1} is a real frame

        # Latent rollout with the recorded actions: z_0 .. z_H, rewards r_0 .. r_{H-1}.
        zs, reward_preds = [self.model.encode({k: v[0] for k, v in obs.items()})], []
        for t in range(horizon):
            z_next, r = self.model.latent_dynamics_and_reward(zs[-1], action[t])
            zs.append(z_next)
            reward_preds.append(r)
        z = torch.stack(zs)  # (H + 1, B, L)
        reward_preds = torch.stack(reward_preds)  # (H, B)
        q_preds = self.model.Qs(z[:-1], action)  # (E, H, B)
        v_preds = self.model.V(z[:-1])  # (H, B)

        with torch.no_grad():
            next_obs = {k: v[1:] for k, v in obs.items()}
            z_targets = self.model_target.encode(next_obs)  # (H, B, L)
            # FOWM's TD target bootstraps with V of the online model, so it needs no action from pi.
            q_targets = reward + cfg.discount * self.model.V(self.model.encode(next_obs))  # (H, B)
            target_q = min_of_two(self.model_target.Qs(z[:-1], action))  # (H, B)
            advantage = target_q - v_preds
            exp_advantage = torch.exp(cfg.advantage_scaling * advantage).clamp(max=100.0)

        decay = cfg.temporal_decay_coeff ** torch.arange(horizon, device=z.device, dtype=z.dtype)
        weights = decay.unsqueeze(1) * rollout_valid  # (H, B): rho^t, zero once the rollout left the episode

        def weighted(per_step: Tensor, mask: Tensor) -> Tensor:  # (H, B) -> sum over t, mean over B
            return (per_step * weights * mask).sum(0).mean()

        consistency_loss = weighted(F.mse_loss(z[1:], z_targets, reduction="none").mean(-1), next_valid)
        reward_loss = weighted((reward_preds - reward) ** 2, reward_valid)
        q_value_loss = weighted(((q_preds - q_targets) ** 2).sum(0), reward_valid * next_valid)
        diff = target_q - v_preds
        expectile = torch.where(diff > 0, cfg.expectile_weight, 1 - cfg.expectile_weight)
        v_value_loss = weighted(expectile * diff**2, torch.ones_like(diff))
        # pi learns from detached latents, so its loss does not shape the representation.
        action_preds = self.model.pi(z[:-1].detach())  # (H, B, A)
        action_error = ((action_preds - action) ** 2).sum(-1)  # (H, B)
        # As the reference: mean (not sum) over the rollout steps for pi.
        pi_loss = (exp_advantage * action_error * weights).mean()

        loss = (
            cfg.consistency_coeff * consistency_loss
            + cfg.reward_coeff * reward_loss
            + cfg.value_coeff * (q_value_loss + v_value_loss)
            + cfg.pi_coeff * pi_loss
        )
        return {
            "loss": loss,
            "consistency_loss": consistency_loss.item(),
            "reward_loss": reward_loss.item(),
            "Q_value_loss": q_value_loss.item(),
            "V_value_loss": v_value_loss.item(),
            "pi_loss": pi_loss.item(),
            "Q": q_preds.mean().item(),
            "V": v_preds.mean().item(),
        }

    def _loss_masks(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Float masks, 1 for real steps: observations (H + 1, B), rollout (H, B), rewards (H, B).

        An observation step is real when every input is (online batches may carry no masks: all real). The
        rollout is valid at t while o_0 and a_0 .. a_t are real: z_{t+1} depends on all of them.
        """
        first = batch["action"]
        b, h = first.shape[:2]
        obs_pad = torch.zeros(h + 1, b, dtype=torch.bool, device=first.device)
        for key in self.config.input_shapes:
            if f"{key}_is_pad" in batch:
                obs_pad |= batch[f"{key}_is_pad"].transpose(0, 1)
        action_pad = batch.get("action_is_pad", torch.zeros(b, h, dtype=torch.bool, device=first.device))
        reward_pad = batch.get(f"{REWARD}_is_pad", torch.zeros_like(action_pad))
        actions_so_far_real = (~action_pad.transpose(0, 1)).long().cumprod(0).bool()  # (H, B)
        rollout_valid = actions_so_far_real & ~obs_pad[:1]
        return (~obs_pad).float(), rollout_valid.float(), (~reward_pad.transpose(0, 1)).float()

    def update(self) -> None:
        """EMA step of the target model: target <- momentum * target + (1 - momentum) * online.

        The reference updates every step with momentum 0.995 where FOWM updated every 2 steps with 0.99.
        """
        with torch.no_grad():
            for target, online in zip(self.model_target.parameters(), self.model.parameters(), strict=True):
                target.lerp_(online.to(target.dtype), 1 - self.config.target_model_momentum)

    def make_optimizer(self) -> torch.optim.Adam:
        """The reference optimiser: Adam over the online model (the target is not trained) at `optimizer_lr`."""
        params = [p for p in self.parameters() if p.requires_grad]
        return make_adam(torch.optim.Adam, params, lr=self.config.optimizer_lr)

    # -- input checks -----------------------------------------------------------------------------------

    def _check_training_batch(self, batch: dict[str, Tensor]) -> None:
        horizon, action_dim = self.config.horizon, self.config.output_shapes["action"][0]
        self.check_inputs(batch, n_steps=horizon + 1)
        hint = "build the dataset with delta_timestamps=config.delta_timestamps(fps)"
        for key in ("action", REWARD):
            if key not in batch:
                raise KeyError(f"TD-MPC's training loss needs batch[{key!r}]; {hint}.")
        b = batch["action"].shape[0]
        if tuple(batch["action"].shape) != (b, horizon, action_dim):
            raise ValueError(
                f"batch['action'] has shape {list(batch['action'].shape)}, expected [B, horizon={horizon}, "
                f"{action_dim}]; {hint}."
            )
        if tuple(batch[REWARD].shape) not in ((b, horizon), (b, horizon, 1)):
            raise ValueError(
                f"batch[{REWARD!r}] has shape {list(batch[REWARD].shape)}, expected [B, horizon={horizon}]; "
                f"{hint}."
            )


class TDMPCTOLD(nn.Module):
    """Task-oriented latent dynamics: encoder, dynamics, reward, policy prior pi, Q ensemble and V."""

    def __init__(self, config: TDMPCConfig):
        super().__init__()
        latent, hidden, action_dim = config.latent_dim, config.mlp_dim, config.output_shapes["action"][0]
        self._encoder = TDMPCObservationEncoder(config)
        self._dynamics = nn.Sequential(
            *_linear_norm(latent + action_dim, hidden, nn.Mish()),
            *_linear_norm(hidden, hidden, nn.Mish()),
            *_linear_norm(hidden, latent, nn.Sigmoid()),
        )
        self._reward = nn.Sequential(
            *_linear_norm(latent + action_dim, hidden, nn.Mish()),
            *_linear_norm(hidden, hidden, nn.Mish()),
            nn.Linear(hidden, 1),
        )
        self._pi = nn.Sequential(
            *_linear_norm(latent, hidden, nn.Mish()),
            *_linear_norm(hidden, hidden, nn.Mish()),
            nn.Linear(hidden, action_dim),
        )
        self._Qs = nn.ModuleList(
            _value_mlp(latent + action_dim, hidden) for _ in range(config.q_ensemble_size)
        )
        self._V = _value_mlp(latent, hidden)
        self._init_weights()

    def _init_weights(self) -> None:
        """Orthogonal weights and zero biases (convolutions with the ReLU gain); the reward and Q heads start
        at exactly zero, so early value estimates are neutral."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, nn.init.calculate_gain("relu"))
                nn.init.zeros_(m.bias)
        for head in [self._reward, *self._Qs]:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def encode(self, obs: dict[str, Tensor]) -> Tensor:
        """Observations with any leading dims (*, ...) -> latents (*, L)."""
        return self._encoder(obs)

    def latent_dynamics_and_reward(self, z: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """(*, L), (*, A) -> next latent (*, L) and predicted reward (*,)."""
        x = torch.cat([z, a], dim=-1)
        return self._dynamics(x), self._reward(x).squeeze(-1)

    def latent_dynamics(self, z: Tensor, a: Tensor) -> Tensor:
        """(*, L), (*, A) -> next latent (*, L)."""
        return self._dynamics(torch.cat([z, a], dim=-1))

    def pi(self, z: Tensor, std: float = 0.0) -> Tensor:
        """Action of the policy prior (*, A) in [-1, 1], plus Gaussian noise of `std` (then clipped)."""
        action = torch.tanh(self._pi(z))
        if std > 0:
            action = (action + std * torch.randn_like(action)).clamp(-1, 1)
        return action

    def V(self, z: Tensor) -> Tensor:  # noqa: N802 (the paper's name)
        """State value (*,)."""
        return self._V(z).squeeze(-1)

    def Qs(self, z: Tensor, a: Tensor) -> Tensor:  # noqa: N802 (the paper's name)
        """Every ensemble member's state-action value: (E, *)."""
        x = torch.cat([z, a], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self._Qs])


def min_of_two(qs: Tensor) -> Tensor:
    """Minimum of two ensemble members drawn at random without replacement (FOWM app. C): (E, *) -> (*).

    With two members there is nothing to draw, and no random numbers are used.
    """
    if qs.shape[0] > 2:
        qs = qs[torch.randperm(qs.shape[0], device=qs.device)[:2]]
    return qs.min(0).values


def _linear_norm(n_in: int, n_out: int, activation: nn.Module) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.LayerNorm(n_out), activation]


def _value_mlp(n_in: int, hidden: int) -> nn.Sequential:
    """Q / V network of TD-MPC: Linear-LayerNorm-Tanh, Linear-ELU, Linear to a scalar."""
    return nn.Sequential(
        *_linear_norm(n_in, hidden, nn.Tanh()), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 1)
    )


class TDMPCObservationEncoder(nn.Module):
    """One latent code per modality (camera, environment state, robot state), averaged.

    Codes end in LayerNorm + Sigmoid, as the dynamics output does, so encoded and predicted latents share a
    bounded range.
    """

    def __init__(self, config: TDMPCConfig):
        super().__init__()
        self.config = config
        latent = config.latent_dim
        if config.image_keys:
            channels, side, _ = config.input_shapes[config.image_keys[0]]
            hidden = config.image_encoder_hidden_dim
            out_side = conv_encoder_output_size(side)
            self.image_enc_layers = nn.Sequential(
                nn.Conv2d(channels, hidden, 7, stride=2),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 5, stride=2),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, stride=2),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, stride=2),
                nn.ReLU(),
                nn.Flatten(),
                *_linear_norm(hidden * out_side * out_side, latent, nn.Sigmoid()),
            )
        if STATE in config.input_shapes:
            self.state_enc_layers = _state_mlp(
                config.input_shapes[STATE][0], config.state_encoder_hidden_dim, latent
            )
        if ENV_STATE in config.input_shapes:
            self.env_state_enc_layers = _state_mlp(
                config.input_shapes[ENV_STATE][0], config.state_encoder_hidden_dim, latent
            )

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        """Observations with leading dims (*, ...) -> (*, L)."""
        codes = []
        if self.config.image_keys:
            image = obs[self.config.image_keys[0]]  # (*, C, H, W)
            codes.append(self.image_enc_layers(image.flatten(0, -4)).unflatten(0, image.shape[:-3]))
        if ENV_STATE in self.config.input_shapes:
            codes.append(self.env_state_enc_layers(obs[ENV_STATE]))
        if STATE in self.config.input_shapes:
            codes.append(self.state_enc_layers(obs[STATE]))
        return torch.stack(codes).mean(0)


def _state_mlp(n_in: int, hidden: int, latent: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ELU(), *_linear_norm(hidden, latent, nn.Sigmoid()))


def random_shift(images: Tensor, max_shift_ratio: float) -> Tensor:
    """DrQ augmentation: pad (B, C, H, W) images by round(ratio * H) replicated edge pixels on every side and
    crop each back to (H, W) at a random offset, i.e. shift it by up to that many whole pixels."""
    b, _, h, w = images.shape
    pad = round(max_shift_ratio * h)
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")  # (B, C, H + 2p, W + 2p)
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), device=images.device)  # (B, 2): row, column
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (B, W)
    batch_idx = torch.arange(b, device=images.device)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return cropped.permute(0, 3, 1, 2)
