"""Configuration of VQ-BeT (Lee et al., 2024, "Behavior Generation with Latent Actions", arXiv:2403.03181)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lerobot.common.policies.backbone import RESNET_LAYERS
from lerobot.common.policies.normalize import resolve_modes
from lerobot.common.policies.pretrained import PolicyConfig

STATE = "observation.state"
# Keys that the reference's seed-era config.json carries but that configure nothing there either.
IGNORED_REFERENCE_KEYS = ("mlp_hidden_dim",)


@dataclass
class VQBeTConfig(PolicyConfig):
    """Every setting of VQ-BeT; the defaults are the reference's (PushT: one 96x96 camera, 2-D state/action).

    Inputs and outputs:
        n_obs_steps: observation frames per sample, the current one and n_obs_steps - 1 before it.
        n_action_pred_token: action query tokens for the current step and the future: the GPT predicts a chunk
            for the current step and for n_action_pred_token - 1 steps after it (the future ones only add
            training signal). The reference dataclass says 3, its PushT yaml 7.
        action_chunk_size: actions per predicted chunk; also what `select_action` executes per prediction.
        input_shapes: input feature -> shape. `observation.state` (D,) is required, and one or more cameras
            `observation.image*` (C, H, W), all of the same shape (they share one encoder).
        output_shapes: output feature -> shape; `action` is (action_dim,).
        input_normalization_modes: feature (or type VISUAL/STATE) -> "mean_std" | "min_max" | "identity".
        output_normalization_modes: the same for `action`.

    Vision encoder (ResNet trunk -> spatial softmax keypoints -> Linear + ReLU, shared by all cameras):
        vision_backbone: "resnet18" or "resnet34".
        crop_shape: (H, W) crop applied before the backbone (None: no crop); must fit in the images.
        crop_is_random: random crop in training (center crop always at inference), as augmentation.
        pretrained_backbone_weights: None (random init), a path to a torchvision ResNet state dict, or a
            torchvision enum name such as "ResNet18_Weights.IMAGENET1K_V1" (looked up in torch.hub's cache,
            never downloaded). Incompatible with use_group_norm.
        use_group_norm: GroupNorm (C // 16 groups) instead of BatchNorm in the backbone.
        spatial_softmax_num_keypoints: K; the image feature is the K keypoints' (x, y), i.e. 2K values.

    Residual VQ-VAE (phase 1: learns a discrete vocabulary of action chunks):
        n_vqvae_training_steps: training forward calls that train the VQ-VAE alone; afterwards it is frozen
            and the GPT trains (phase 2). The count is a buffer of the weights, so it survives checkpoints.
        vqvae_n_embed: codes per codebook; the residual VQ has 2 codebooks (primary and secondary code).
        vqvae_embedding_dim: size of the latent and of each code.
        vqvae_enc_hidden_dim: hidden width of the VQ-VAE's MLP encoder and decoder.

    GPT (phase 2: observation tokens -> code logits and offsets):
        gpt_block_size: maximum number of tokens (the causal mask's size), at least
            n_obs_steps * (n_cameras + 2) + n_action_pred_token - 1.
        gpt_input_dim: size of the tokens fed to the GPT (image, state and action query tokens).
        gpt_output_dim: size of the GPT's outputs, read by the code and offset heads.
        gpt_n_layer: transformer blocks.
        gpt_n_head: attention heads; must divide gpt_hidden_dim.
        gpt_hidden_dim: width of the residual stream.
        dropout: dropout in the GPT.

    Loss and sampling:
        offset_loss_weight: weight of the L1 error of the predicted actions (code centre + offset).
        primary_code_loss_weight: weight of the focal loss on the first (coarse) code.
        secondary_code_loss_weight: weight of the focal loss on the second (residual) code.
        bet_softmax_temperature: temperature of the softmax that the codes are sampled from (> 0).
        sequentially_select: sample the primary code first and condition the secondary code's head on it,
            instead of predicting both independently.

    Optimiser (Adam with parameter groups) and schedule (reference recipe: batch 64, grad clip 10, 250k steps):
        optimizer_lr: learning rate of the vision encoder, projections, action token and heads.
        optimizer_betas, optimizer_eps: Adam's betas and eps for those.
        optimizer_weight_decay: their (L2) weight decay.
        optimizer_vqvae_lr: learning rate of the VQ-VAE's encoder and decoder (phase 1).
        optimizer_vqvae_weight_decay: their weight decay.
        optimizer_bet_lr: learning rate of the GPT ("BeT") transformer.
        optimizer_bet_weight_decay: weight decay of the GPT's linear weights (its biases, LayerNorms and
            position embedding get none).
        optimizer_bet_betas: Adam betas of the GPT.
        scheduler_warmup_steps: linear warm-up at the start of phase 2. The learning rate is constant during
            phase 1, then warms up and follows a cosine down to 0 at the end of training.

    The reference's GPT hyper-parameters (bet_*) come from its yaml; its seed-era optimiser trained the GPT at
    optimizer_lr / optimizer_weight_decay instead: set optimizer_bet_lr=1e-4, optimizer_bet_weight_decay=1e-6
    and optimizer_bet_betas=(0.95, 0.999) to reproduce that. The reference's `mlp_hidden_dim` key, which
    configured nothing, is accepted in config.json and dropped.
    """

    type: ClassVar[str] = "vqbet"

    n_obs_steps: int = 5
    n_action_pred_token: int = 3
    action_chunk_size: int = 5

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

    n_vqvae_training_steps: int = 20000
    vqvae_n_embed: int = 16
    vqvae_embedding_dim: int = 256
    vqvae_enc_hidden_dim: int = 128

    gpt_block_size: int = 500
    gpt_input_dim: int = 512
    gpt_output_dim: int = 512
    gpt_n_layer: int = 8
    gpt_n_head: int = 8
    gpt_hidden_dim: int = 512
    dropout: float = 0.1

    offset_loss_weight: float = 10000.0
    primary_code_loss_weight: float = 5.0
    secondary_code_loss_weight: float = 0.5
    bet_softmax_temperature: float = 0.1
    sequentially_select: bool = False

    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.95, 0.999)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-6
    optimizer_vqvae_lr: float = 1e-3
    optimizer_vqvae_weight_decay: float = 1e-4
    optimizer_bet_lr: float = 5.5e-5
    optimizer_bet_weight_decay: float = 2e-4
    optimizer_bet_betas: tuple[float, float] = (0.9, 0.999)
    scheduler_warmup_steps: int = 500

    def __post_init__(self) -> None:
        # JSON has no tuples: normalise so that a config read back from config.json equals the original.
        self.input_shapes = {k: [int(s) for s in v] for k, v in self.input_shapes.items()}
        self.output_shapes = {k: [int(s) for s in v] for k, v in self.output_shapes.items()}
        if self.crop_shape is not None:
            if len(self.crop_shape) != 2:
                raise ValueError(f"crop_shape must be (height, width) or None, got {self.crop_shape!r}.")
            self.crop_shape = (int(self.crop_shape[0]), int(self.crop_shape[1]))
        for name in ("optimizer_betas", "optimizer_bet_betas"):
            betas = tuple(float(b) for b in getattr(self, name))
            if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
                raise ValueError(f"{name} must be two numbers in [0, 1), got {getattr(self, name)!r}.")
            setattr(self, name, betas)
        self._check_inputs_and_outputs()
        self._check_sizes()

    def _check_inputs_and_outputs(self) -> None:
        if STATE not in self.input_shapes:
            raise ValueError(f"VQ-BeT needs '{STATE}' among input_shapes; got {sorted(self.input_shapes)}.")
        if not self.image_keys:
            raise ValueError(
                "VQ-BeT needs at least one camera ('observation.image*') among input_shapes; "
                f"got {sorted(self.input_shapes)}."
            )
        unknown = [k for k in self.input_shapes if k != STATE and k not in self.image_keys]
        if unknown:
            raise ValueError(
                f"VQ-BeT does not know the inputs {unknown}; it takes '{STATE}' and cameras "
                "'observation.image*' (no environment state)."
            )
        if len(self.input_shapes[STATE]) != 1:
            raise ValueError(f"input_shapes['{STATE}'] must be (D,), got {self.input_shapes[STATE]}.")
        shapes = {k: self.input_shapes[k] for k in self.image_keys}
        first_key, first = next(iter(shapes.items()))
        for key, shape in shapes.items():
            if len(shape) != 3 or shape[0] != 3:
                raise ValueError(
                    f"Camera input {key!r} must have shape (3, H, W) (the ResNet takes RGB), got {shape}."
                )
            if shape != first:
                raise ValueError(
                    f"All cameras must have the same shape (they share one encoder): {key!r} is {shape}, "
                    f"{first_key!r} is {first}. Resize them to a common shape."
                )
        if self.crop_shape is not None and (self.crop_shape[0] > first[1] or self.crop_shape[1] > first[2]):
            raise ValueError(
                f"crop_shape {self.crop_shape} does not fit in the camera images {first[1:]} (H, W); "
                "use a smaller crop or None."
            )
        if list(self.output_shapes) != ["action"] or len(self.output_shapes["action"]) != 1:
            raise ValueError(f"output_shapes must be {{'action': [action_dim]}}, got {self.output_shapes}.")
        resolve_modes(self.input_shapes, self.input_normalization_modes)
        resolve_modes(self.output_shapes, self.output_normalization_modes)

    def _check_sizes(self) -> None:
        positive = (
            "n_obs_steps",
            "n_action_pred_token",
            "action_chunk_size",
            "spatial_softmax_num_keypoints",
            "n_vqvae_training_steps",
            "vqvae_n_embed",
            "vqvae_embedding_dim",
            "vqvae_enc_hidden_dim",
            "gpt_block_size",
            "gpt_input_dim",
            "gpt_output_dim",
            "gpt_n_layer",
            "gpt_n_head",
            "gpt_hidden_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.vision_backbone not in RESNET_LAYERS:
            raise ValueError(
                f"vision_backbone must be one of {sorted(RESNET_LAYERS)}, got {self.vision_backbone!r}."
            )
        if self.use_group_norm and self.pretrained_backbone_weights is not None:
            raise ValueError(
                "use_group_norm replaces the backbone's BatchNorm layers, which pretrained weights were trained "
                "with: set pretrained_backbone_weights=None or use_group_norm=False."
            )
        if self.gpt_hidden_dim % self.gpt_n_head != 0:
            raise ValueError(
                f"gpt_hidden_dim ({self.gpt_hidden_dim}) must be divisible by gpt_n_head ({self.gpt_n_head})."
            )
        if self.n_tokens > self.gpt_block_size:
            raise ValueError(
                f"The GPT sees {self.n_tokens} tokens (n_obs_steps * (n_cameras + 2) + n_action_pred_token - 1) "
                f"but gpt_block_size is {self.gpt_block_size}; raise gpt_block_size."
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.bet_softmax_temperature <= 0:
            raise ValueError(
                f"bet_softmax_temperature must be > 0 (codes are sampled from softmax(logits / T)), "
                f"got {self.bet_softmax_temperature}."
            )
        if self.scheduler_warmup_steps < 0:
            raise ValueError(f"scheduler_warmup_steps must be >= 0, got {self.scheduler_warmup_steps}.")

    @property
    def n_tokens(self) -> int:
        """Tokens per GPT input: per observation step one per camera, the state and an action query, then the
        future action queries."""
        return self.n_obs_steps * (len(self.image_keys) + 2) + self.n_action_pred_token - 1

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        # A chunk of action_chunk_size actions starting at every observation step and every future query.
        return list(range(1 - self.n_obs_steps, self.n_action_pred_token + self.action_chunk_size - 1))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VQBeTConfig:
        data = {k: v for k, v in data.items() if k not in IGNORED_REFERENCE_KEYS}
        return super().from_dict(data)
