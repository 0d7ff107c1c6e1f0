"""Diffusion Policy (Chi et al., "Diffusion Policy: Visuomotor Policy Learning via Action Diffusion", 2023,
arXiv:2303.04137), the CNN-based variant, as the reference lerobot configures it.

Method. The policy models the distribution of a sequence of `horizon` actions given the last `n_obs_steps`
observations, as a denoising diffusion process over the action sequence:

1. Observation features. Each camera image is cropped (randomly in training), encoded by a ResNet whose
   layer4 feature map is reduced by a spatial softmax to K keypoints (expected x, y of K learned heat maps),
   then a Linear + ReLU. Per observation step the features are [state, camera features, environment state];
   the steps are flattened into one conditioning vector (B, n_obs_steps * F).
2. Training. Gaussian noise is added to the normalised action sequence at a random diffusion step t (DDPM
   forward process); a 1D temporal U-Net, conditioned by FiLM on (t, observation features), predicts the
   noise ("epsilon") or the clean actions ("sample"). The loss is the mean squared error.
3. Inference. Starting from pure noise, the scheduler (DDPM, or DDIM for fewer steps) denoises the sequence
   `num_inference_steps` times. The sequence starts at the oldest observation frame, so the actions to
   execute are those from index n_obs_steps - 1 (the current frame) on.

Execution. `select_action` keeps the last `n_obs_steps` observations (at the start of an episode the first
one is repeated) and a queue of actions: it runs the denoiser once every `n_action_steps` calls.

Parameter names follow the reference implementation (`diffusion.rgb_encoder.backbone.4.0.conv1.weight`,
`diffusion.unet.down_modules.0.0.cond_encoder.1.weight`, ...), so its published checkpoints load.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn
from torch.nn import functional as F

from lerobot.common.policies.backbone import SpatialSoftmaxEncoder
from lerobot.common.policies.diffusion.configuration_diffusion import ENV_STATE, STATE, DiffusionConfig
from lerobot.common.policies.diffusion.unet import DiffusionConditionalUnet1d
from lerobot.common.policies.inference_trace import inference_runner
from lerobot.common.policies.pretrained import PreTrainedPolicy, make_adam


class DiffusionPolicy(PreTrainedPolicy):
    """Diffusion Policy with input/output normalisation and observation/action queues."""

    name = "diffusion"
    config_class = DiffusionConfig
    checkpoint_init_kwargs = {"load_backbone_weights": False}

    def __init__(
        self,
        config: DiffusionConfig | None = None,
        dataset_stats: dict[str, dict[str, Tensor]] | None = None,
        *,
        load_backbone_weights: bool = True,
    ):
        """`dataset_stats` ({key: {"min": ..., "max": ...}}) fill the normalisation buffers; without them the
        policy must load a checkpoint before use. `load_backbone_weights=False` skips reading
        `config.pretrained_backbone_weights` (done by `from_pretrained`, whose checkpoint holds the backbone).
        """
        super().__init__()
        config = config if config is not None else DiffusionConfig()
        self.config = config
        self.init_normalization(dataset_stats)
        self.diffusion = DiffusionModel(config, load_backbone_weights)
        self.reset()

    def reset(self) -> None:
        """Forget past observations and queued actions; call at the start of every episode."""
        n_obs = self.config.n_obs_steps
        self._obs_queues: dict[str, deque[Tensor]] = {
            k: deque(maxlen=n_obs) for k in self.config.input_shapes
        }
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        """The action to execute now, (B, action_dim), in dataset units. Call `policy.eval()` first.

        `batch` holds the current observation, each input (B, *shape). It is remembered at every call; the
        denoiser runs once every `n_action_steps` calls, on the last `n_obs_steps` observations.
        """
        self.check_inputs(batch, n_steps=None)
        for key, queue in self._obs_queues.items():
            if not queue:  # first step of an episode: no history yet, so repeat the current observation
                queue.extend([batch[key]] * self.config.n_obs_steps)
            else:
                queue.append(batch[key])
        if not self._action_queue:
            history = {k: torch.stack(list(q), dim=1) for k, q in self._obs_queues.items()}  # (B, S, ...)
            actions = self.predict_action_chunk(history)  # (B, n_action_steps, A)
            self._action_queue.extend(actions.transpose(0, 1))  # n_action_steps tensors of (B, A)
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_action_chunk(
        self, batch: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> Tensor:
        """The `n_action_steps` actions to execute from now, (B, n_action_steps, A), in dataset units.

        `batch` holds the last `n_obs_steps` observations, each input (B, n_obs_steps, *shape), oldest first.
        """
        self.check_inputs(batch, n_steps=self.config.n_obs_steps)
        actions = self.diffusion.generate_actions(self.normalize_inputs(batch), generator)
        return self.unnormalize_outputs({"action": actions})["action"]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Training loss: {"loss": scalar tensor}.

        Inputs are (B, n_obs_steps, *shape); `batch["action"]` is (B, horizon, action_dim), starting at the
        oldest observation frame; `batch["action_is_pad"]` (B, horizon) marks actions past the episode's end.
        """
        self.check_inputs(batch, n_steps=self.config.n_obs_steps)
        self._check_actions(batch)
        batch = self.normalize_targets(self.normalize_inputs(batch))  # new dicts: `batch` is not mutated
        return {"loss": self.diffusion.compute_loss(batch)}

    # -- training hooks used by lerobot/scripts/train.py ----------------------------------------------------

    def make_optimizer(self) -> torch.optim.Adam:
        """The reference optimiser: Adam over every trainable parameter."""
        cfg = self.config
        params = [p for p in self.parameters() if p.requires_grad]
        return make_adam(
            torch.optim.Adam,
            params,
            lr=cfg.optimizer_lr,
            betas=cfg.optimizer_betas,
            eps=cfg.optimizer_eps,
            weight_decay=cfg.optimizer_weight_decay,
        )

    def make_lr_scheduler(
        self, optimizer: torch.optim.Optimizer, num_training_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """diffusers' `get_scheduler(scheduler_name)` with `scheduler_warmup_steps` of linear warm-up."""
        if self.config.scheduler_name is None:
            return None
        from diffusers.optimization import get_scheduler

        return get_scheduler(
            self.config.scheduler_name,
            optimizer=optimizer,
            num_warmup_steps=self.config.scheduler_warmup_steps,
            num_training_steps=num_training_steps,
        )

    # -- input checks -----------------------------------------------------------------------------------

    def _check_actions(self, batch: dict[str, Tensor]) -> None:
        if "action" not in batch:
            raise KeyError(
                "Diffusion Policy training needs batch['action'] of shape (B, horizon, action_dim)."
            )
        cfg, shape = self.config, list(batch["action"].shape)
        if shape[1:] != [cfg.horizon, *cfg.output_shapes["action"]]:
            raise ValueError(
                f"batch['action'] has shape {shape}, but Diffusion Policy needs [B, horizon={cfg.horizon}, "
                f"{cfg.output_shapes['action'][0]}]: build the dataset with delta_timestamps=config.delta_timestamps(fps)."
            )
        if cfg.do_mask_loss_for_padding and "action_is_pad" not in batch:
            raise KeyError(
                "do_mask_loss_for_padding=True needs batch['action_is_pad'] (B, horizon), which LeRobotDataset "
                "provides for delta_timestamps; set do_mask_loss_for_padding=False to train without it."
            )


def make_noise_scheduler(config: DiffusionConfig) -> DDPMScheduler | DDIMScheduler:
    """The diffusers scheduler of `config.noise_scheduler_type`: the noising process and its sampler."""
    scheduler_class = {"DDPM": DDPMScheduler, "DDIM": DDIMScheduler}[config.noise_scheduler_type]
    return scheduler_class(
        num_train_timesteps=config.num_train_timesteps,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        beta_schedule=config.beta_schedule,
        clip_sample=config.clip_sample,
        clip_sample_range=config.clip_sample_range,
        prediction_type=config.prediction_type,
    )


class DiffusionModel(nn.Module):
    """The network and the diffusion process, on normalised tensors."""

    def __init__(self, config: DiffusionConfig, load_backbone_weights: bool = True):
        super().__init__()
        self.config = config
        cameras = config.image_keys
        if cameras:
            crop = config.crop_shape
            sizes = [tuple(crop) if crop else tuple(config.input_shapes[k][1:]) for k in cameras]
            if config.use_separate_rgb_encoder_per_camera:
                self.rgb_encoder = nn.ModuleList(
                    SpatialSoftmaxEncoder(config, size, load_backbone_weights) for size in sizes
                )
            else:  # the config checked that every camera has the same size
                self.rgb_encoder = SpatialSoftmaxEncoder(config, sizes[0], load_backbone_weights)
        step_dim = 2 * config.spatial_softmax_num_keypoints * len(cameras)
        for key in (STATE, ENV_STATE):
            if key in config.input_shapes:
                step_dim += config.input_shapes[key][0]
        self.unet = DiffusionConditionalUnet1d(
            action_dim=config.output_shapes["action"][0],
            global_cond_dim=step_dim * config.n_obs_steps,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            diffusion_step_embed_dim=config.diffusion_step_embed_dim,
            use_film_scale_modulation=config.use_film_scale_modulation,
        )
        self.noise_scheduler = make_noise_scheduler(config)
        self.num_inference_steps = config.num_inference_steps or config.num_train_timesteps

    def global_conditioning(self, batch: dict[str, Tensor]) -> Tensor:
        """Observations, each (B, S, *shape) -> (B, S * F): per step [state, cameras, environment state]."""
        cameras = self.config.image_keys
        feats = []
        if STATE in self.config.input_shapes:
            feats.append(batch[STATE])  # (B, S, D)
        if cameras:
            b, s = batch[cameras[0]].shape[:2]
            if self.config.use_separate_rgb_encoder_per_camera:
                for key, encoder in zip(cameras, self.rgb_encoder):
                    images = batch[key].flatten(0, 1)  # (B * S, C, H, W)
                    encoded = inference_runner(encoder, (images,))(images)  # (B * S, 2K)
                    feats.append(encoded.unflatten(0, (b, s)))  # (B, S, 2K)
            else:
                images = torch.stack([batch[k] for k in cameras], dim=2).flatten(0, 2)  # (B * S * N, C, H, W)
                encoded = inference_runner(self.rgb_encoder, (images,))(images)  # (B * S * N, 2K)
                feats.append(encoded.reshape(b, s, -1))  # (B, S, N * 2K), cameras side by side
        if ENV_STATE in self.config.input_shapes:
            feats.append(batch[ENV_STATE])  # (B, S, E)
        return torch.cat(feats, dim=-1).flatten(1)  # (B, S * F)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Denoising loss on a normalised batch: inputs (B, S, ...), `action` (B, horizon, A)."""
        global_cond = self.global_conditioning(batch)  # (B, G)
        actions = batch["action"]  # (B, T, A)
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy_actions = self.noise_scheduler.add_noise(actions, noise, t)  # forward process q(x_t | x_0)
        pred = self.unet(noisy_actions, t, global_cond)  # (B, T, A)
        target = noise if self.config.prediction_type == "epsilon" else actions
        loss = F.mse_loss(pred, target, reduction="none")  # (B, T, A)
        if self.config.do_mask_loss_for_padding:
            loss = loss * ~batch["action_is_pad"].unsqueeze(-1)
        return loss.mean()

    @torch.no_grad()
    def conditional_sample(self, global_cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Denoise pure noise into an action sequence (B, horizon, A) given the conditioning (B, G)."""
        b = global_cond.shape[0]
        shape = (b, self.config.horizon, self.config.output_shapes["action"][0])
        sample = torch.randn(shape, generator=generator, device=global_cond.device, dtype=global_cond.dtype)
        self.noise_scheduler.set_timesteps(self.num_inference_steps)
        denoise = self.denoiser(global_cond)
        for t in self.noise_scheduler.timesteps:  # from the noisiest step down to 0
            pred = denoise(sample, int(t))
            sample = self.noise_scheduler.step(pred, t, sample, generator=generator).prev_sample
        return sample

    def denoiser(self, global_cond: Tensor) -> Callable[[Tensor, int], Tensor]:
        """(noisy sample (B, horizon, A), diffusion step t) -> the U-Net's prediction, for one sampling run
        conditioned on `global_cond` (B, G). The blocks' FiLM parameters come from `unet.sampling_film` (its
        weights are not read again at every step), and on CPU the U-Net replays a recording (inference_trace.py)."""
        film = self.unet.sampling_film(global_cond)
        runner = None

        def denoise(sample: Tensor, t: int) -> Tensor:
            nonlocal runner
            film_t = film(t)
            if runner is None:  # same input shapes at every step
                runner = inference_runner(self.unet, (sample, film_t), method="denoise")
            return runner(sample, film_t)

        return denoise

    @torch.no_grad()
    def generate_actions(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """Normalised observations (B, S, ...) -> the actions to execute, (B, n_action_steps, A), normalised."""
        sample = self.conditional_sample(self.global_conditioning(batch), generator)  # (B, horizon, A)
        start = self.config.n_obs_steps - 1  # the sequence starts at the oldest observation frame
        return sample[:, start : start + self.config.n_action_steps]
