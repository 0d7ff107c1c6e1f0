"""Configuration of Diffusion Policy (Chi et al., 2023, "Diffusion Policy: Visuomotor Policy Learning via Action
Diffusion", arXiv:2303.04137), with the reference lerobot defaults (PushT from images)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lerobot.common.policies.backbone import RESNET_LAYERS
from lerobot.common.policies.normalize import resolve_modes
from lerobot.common.policies.pretrained import PolicyConfig

STATE = "observation.state"
ENV_STATE = "observation.environment_state"
NOISE_SCHEDULERS = ("DDPM", "DDIM")
PREDICTION_TYPES = ("epsilon", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
# Names accepted by `diffusers.optimization.get_scheduler` (checked against diffusers in the tests).
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "piecewise_constant",
)


@dataclass
class DiffusionConfig(PolicyConfig):
    """Every setting of Diffusion Policy; the defaults are the reference's (PushT: one 96x96 camera + 2-D state).

    Inputs and outputs:
        n_obs_steps: observation frames the policy is conditioned on (the current one and those before it).
        horizon: actions generated per denoising run, starting at the oldest observation frame.
        n_action_steps: actions of each generated sequence that `select_action` executes before generating the
            next; they start at the current frame (index n_obs_steps - 1 of the sequence), so
            n_obs_steps - 1 + n_action_steps <= horizon.
        drop_n_last_frames: frames at the end of every episode that training never samples as the current
            frame, because most of their action horizon lies past the episode's end (the reference's 7 is
            horizon - n_action_steps - n_obs_steps + 1).
        input_shapes: input feature -> shape. Cameras `observation.image*` are (C, H, W);
            `observation.state` (robot) and `observation.environment_state` (e.g. PushT's 8 keypoints of the
            T block, for the state-only variant) are (D,). Any non-empty combination works.
        output_shapes: output feature -> shape; `action` is (action_dim,).
        input_normalization_modes: feature (or type VISUAL/STATE/ENV) -> "mean_std" | "min_max" | "identity".
            The reference scales cameras with mean 0.5, std 0.5 and states to [-1, 1] with min_max.
        output_normalization_modes: the same for `action`. It should be "min_max": the sampler clips the
            denoised actions to [-clip_sample_range, clip_sample_range].

    Vision encoder (used only when there are cameras):
        vision_backbone: "resnet18" or "resnet34"; its layer4 feature map feeds a spatial softmax.
        crop_shape: (H, W) crop taken before the backbone: random in training (if crop_is_random), centred
            in eval. None feeds whole images.
        crop_is_random: random crops as training augmentation; False crops the centre in training too.
        pretrained_backbone_weights: None (random init, as the reference) or a torchvision ResNet state dict
            (path, or an enum name like "ResNet18_Weights.IMAGENET1K_V1" found in torch.hub's cache). Needs
            use_group_norm=False, since pretrained batch-norm statistics mean nothing to group norm.
        use_group_norm: replace batch norm by group norm (channels // 16 groups), which does not depend on
            the batch and stays the same in train and eval.
        spatial_softmax_num_keypoints: K keypoints: a 1x1 convolution makes K heat maps of the feature map,
            each reduced to its expected (x, y); a Linear + ReLU maps the 2K coordinates to the feature.
        use_separate_rgb_encoder_per_camera: one encoder per camera instead of one shared by all cameras
            (which needs cameras of one shape).

    Conditional 1D U-Net (denoises the action sequence along time):
        down_dims: channels of the U-Net levels; the sequence is halved between levels, so horizon must be
            divisible by 2 ** len(down_dims) (the reference's rule, one factor of 2 stricter than needed).
        kernel_size: temporal kernel size of the convolutions.
        n_groups: groups of the GroupNorm after every convolution.
        diffusion_step_embed_dim: size of the sinusoidal-then-MLP embedding of the diffusion step.
        use_film_scale_modulation: FiLM with a per-channel scale and bias from the conditioning; False adds
            a bias only.

    Noise scheduler (diffusers):
        noise_scheduler_type: "DDPM" or "DDIM" (DDIM can sample with far fewer steps than it was trained with).
        num_train_timesteps: diffusion steps of the forward (noising) process.
        beta_schedule: "squaredcos_cap_v2" (the cosine schedule, which ignores beta_start/beta_end),
            "linear" or "scaled_linear".
        beta_start, beta_end: first and last noise variance of the linear schedules.
        prediction_type: what the U-Net predicts: "epsilon" (the added noise) or "sample" (the clean actions).
        clip_sample: clip each step's estimate of the clean actions to [-clip_sample_range, clip_sample_range].
        clip_sample_range: see clip_sample.

    Inference and loss:
        num_inference_steps: denoising steps when sampling; None means num_train_timesteps.
        do_mask_loss_for_padding: leave actions past the episode's end (`action_is_pad`) out of the loss.
            False, as the reference: padding repeats the last action, a fine target for "stay still".

    Optimiser (reference recipe: Adam, batch 64, grad clip 10, 200k steps):
        optimizer_lr, optimizer_betas, optimizer_eps, optimizer_weight_decay: Adam's settings.
        scheduler_name: learning-rate schedule of `diffusers.optimization.get_scheduler` ("cosine": warm-up
            then cosine decay to 0 over the run), or None for a constant learning rate.
        scheduler_warmup_steps: linear warm-up steps of that schedule.
    """

    type: ClassVar[str] = "diffusion"

    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    drop_n_last_frames: int = 7  # type: ignore[assignment]  # a field here, a property on the base class

    input_shapes: dict[str, list[int]] = field(
        default_factory=lambda: {"observation.image": [3, 96, 96], "observation.state": [2]}
    )
    output_shapes: dict[str, list[int]] = field(default_factory=lambda: {"action": [2]})
    input_normalization_modes: dict[str, str] = field(
        default_factory=lambda: {"observation.image": "mean_std", "observation.state": "min_max"}
    )
    output_normalization_modes: dict[str, str] = field(default_factory=lambda: {"action": "min_max"})

    vision_backbone: str = "resnet18"
    crop_shape: tuple[int, int] | None = (84, 84)
    crop_is_random: bool = True
    pretrained_backbone_weights: str | None = None
    use_group_norm: bool = True
    spatial_softmax_num_keypoints: int = 32
    use_separate_rgb_encoder_per_camera: bool = False

    down_dims: tuple[int, ...] = (512, 1024, 2048)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128
    use_film_scale_modulation: bool = True

    noise_scheduler_type: str = "DDPM"
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0

    num_inference_steps: int | None = None
    do_mask_loss_for_padding: bool = False

    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.95, 0.999)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-6
    scheduler_name: str | None = "cosine"
    scheduler_warmup_steps: int = 500

    def __post_init__(self) -> None:
        # JSON has no tuples: make a config read back from config.json equal to the one that was saved.
        if self.crop_shape is not None:
            self.crop_shape = tuple(int(s) for s in self.crop_shape)  # type: ignore[assignment]
        self.down_dims = tuple(int(d) for d in self.down_dims)
        self.optimizer_betas = tuple(float(b) for b in self.optimizer_betas)  # type: ignore[assignment]
        self._check_features()
        self._check_vision()
        self._check_unet()
        self._check_diffusion()

    def _check_features(self) -> None:
        unknown = [k for k in self.input_shapes if k not in (STATE, ENV_STATE) and k not in self.image_keys]
        if unknown or not self.input_shapes:
            raise ValueError(
                "Diffusion Policy takes cameras 'observation.image*', 'observation.state' and "
                f"'observation.environment_state'; input_shapes has {sorted(self.input_shapes)}."
            )
        for key in (STATE, ENV_STATE):
            if key in self.input_shapes and len(self.input_shapes[key]) != 1:
                raise ValueError(f"input_shapes[{key!r}] must be [dim], got {self.input_shapes[key]}.")
        if list(self.output_shapes) != ["action"] or len(self.output_shapes["action"]) != 1:
            raise ValueError(f"output_shapes must be {{'action': [action_dim]}}, got {self.output_shapes}.")
        resolve_modes(self.input_shapes, self.input_normalization_modes)  # raises on unknown keys/modes
        resolve_modes(self.output_shapes, self.output_normalization_modes)
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"DiffusionConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(
                f"The executed actions run from index n_obs_steps - 1 = {self.n_obs_steps - 1} for "
                f"n_action_steps = {self.n_action_steps} steps, past the horizon ({self.horizon}): "
                "lower n_action_steps or raise horizon."
            )
        if self.drop_n_last_frames < 0:
            raise ValueError(f"drop_n_last_frames must be >= 0, got {self.drop_n_last_frames}.")

    def _check_vision(self) -> None:
        if self.vision_backbone not in RESNET_LAYERS:
            raise ValueError(
                f"vision_backbone must be one of {sorted(RESNET_LAYERS)}, got {self.vision_backbone!r}."
            )
        if self.use_group_norm and self.pretrained_backbone_weights is not None:
            raise ValueError(
                f"pretrained_backbone_weights={self.pretrained_backbone_weights!r} come with batch-norm "
                "statistics that group norm cannot use: set use_group_norm=False to load them, or "
                "pretrained_backbone_weights=None."
            )
        if self.spatial_softmax_num_keypoints < 1:
            raise ValueError(
                f"spatial_softmax_num_keypoints must be >= 1, got {self.spatial_softmax_num_keypoints}."
            )
        if self.crop_shape is not None and len(self.crop_shape) != 2:
            raise ValueError(f"crop_shape must be (height, width) or None, got {self.crop_shape}.")
        shapes = {k: list(self.input_shapes[k]) for k in self.image_keys}
        for key, shape in shapes.items():
            if len(shape) != 3:
                raise ValueError(f"Camera {key!r} must have shape (C, H, W), got {shape}.")
            if self.crop_shape is not None and (
                self.crop_shape[0] > shape[1] or self.crop_shape[1] > shape[2]
            ):
                raise ValueError(
                    f"crop_shape {list(self.crop_shape)} is larger than camera {key!r} ({shape[1]}x{shape[2]}): "
                    "use a crop that fits every camera, or crop_shape=None."
                )
        if not self.use_separate_rgb_encoder_per_camera and len({tuple(s) for s in shapes.values()}) > 1:
            raise ValueError(
                f"Cameras of different shapes {shapes} cannot share one encoder (they are encoded as one "
                "batch): resize them to one shape or set use_separate_rgb_encoder_per_camera=True."
            )

    def _check_unet(self) -> None:
        if not self.down_dims:
            raise ValueError("down_dims must list at least one U-Net level.")
        factor = 2 ** len(self.down_dims)
        if self.horizon % factor != 0:
            raise ValueError(
                f"horizon ({self.horizon}) must be divisible by 2 ** len(down_dims) = {factor}: the U-Net halves "
                "the sequence between levels. Change horizon or down_dims."
            )
        for d in self.down_dims:
            if d % self.n_groups != 0:
                raise ValueError(
                    f"down_dims {list(self.down_dims)} must all be divisible by n_groups ({self.n_groups})."
                )
        if self.kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd (so convolutions keep the length), got {self.kernel_size}."
            )
        if self.diffusion_step_embed_dim % 2 != 0 or self.diffusion_step_embed_dim < 4:
            raise ValueError(
                f"diffusion_step_embed_dim must be even and >= 4 (sine and cosine halves), got "
                f"{self.diffusion_step_embed_dim}."
            )

    def _check_diffusion(self) -> None:
        if self.noise_scheduler_type not in NOISE_SCHEDULERS:
            raise ValueError(
                f"Unknown noise_scheduler_type {self.noise_scheduler_type!r}; choose one of {NOISE_SCHEDULERS}."
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"Unknown prediction_type {self.prediction_type!r}; choose one of {PREDICTION_TYPES}."
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"Unknown beta_schedule {self.beta_schedule!r}; choose one of {BETA_SCHEDULES}.")
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}.")
        if (
            self.num_inference_steps is not None
            and not 1 <= self.num_inference_steps <= self.num_train_timesteps
        ):
            raise ValueError(
                f"num_inference_steps ({self.num_inference_steps}) must be between 1 and num_train_timesteps "
                f"({self.num_train_timesteps}), or None for all of them."
            )
        if self.scheduler_name is not None and self.scheduler_name not in LR_SCHEDULERS:
            raise ValueError(
                f"Unknown scheduler_name {self.scheduler_name!r}; choose one of {LR_SCHEDULERS} or None."
            )
        if self.scheduler_warmup_steps < 0:
            raise ValueError(f"scheduler_warmup_steps must be >= 0, got {self.scheduler_warmup_steps}.")

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1 - self.n_obs_steps + self.horizon))
