"""Configuration of ACT, the Action Chunking Transformer (Zhao et al., 2023, arXiv:2304.13705)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lerobot.common.policies.backbone import RESNET_LAYERS
from lerobot.common.policies.pretrained import PolicyConfig


@dataclass
class ACTConfig(PolicyConfig):
    """Every setting of ACT; the defaults are the reference's (ALOHA bimanual, one top camera).

    Inputs and outputs:
        n_obs_steps: observation frames per sample; ACT uses the current one only (must be 1).
        chunk_size: actions predicted per forward pass (the "chunk"), i.e. the action horizon.
        n_action_steps: actions of each predicted chunk that `select_action` executes before predicting the
            next chunk (<= chunk_size). Must be 1 with temporal ensembling.
        input_shapes: input feature -> shape. Cameras `observation.image*` are (C, H, W); `observation.state`
            (robot joints) and `observation.environment_state` (e.g. object poses) are (D,). At least one
            camera or the environment state is needed; the robot state is optional.
        output_shapes: output feature -> shape; `action` is (action_dim,).
        input_normalization_modes: feature (or type VISUAL/STATE/ENV) -> "mean_std" | "min_max" | "identity".
        output_normalization_modes: the same for `action`.

    Vision backbone (used only when there are cameras):
        vision_backbone: "resnet18" or "resnet34", batch norm frozen; the layer4 feature map is used.
        pretrained_backbone_weights: None (random init), a path to a torchvision ResNet state dict (.safetensors
            or .pth), or a torchvision enum name such as "ResNet18_Weights.IMAGENET1K_V1", which is looked up
            in torch.hub's cache and never downloaded (see `backbone.resolve_pretrained_weights`).
        replace_final_stride_with_dilation: dilate layer4 instead of striding it; unsupported by the basic
            ResNet block (kept for config compatibility, must be False).

    Transformer:
        pre_norm: LayerNorm before (True) or after (False, as ACT) each attention / feed-forward sub-layer.
        dim_model: width of every token.
        n_heads: attention heads.
        dim_feedforward: hidden width of the feed-forward sub-layers.
        feedforward_activation: "relu" or "gelu".
        n_encoder_layers: layers of the transformer encoder over the observation tokens.
        n_decoder_layers: layers of the decoder. The original ACT configured 7 but, through a bug, used only
            the first; 1 reproduces its results.
        dropout: dropout in the transformer layers.

    Variational objective (CVAE):
        use_vae: train with a CVAE encoder that compresses the action chunk into a latent "style" variable;
            at inference the latent is zero (the prior mean).
        latent_dim: size of that latent.
        n_vae_encoder_layers: transformer layers of the CVAE encoder.
        kl_weight: weight of the KL term in the loss (loss = L1 + kl_weight * KL).

    Inference:
        temporal_ensemble_coeff: None to execute chunks open loop; a float k to predict a chunk at every step
            and execute the weighted average of all predictions for the current step, weight exp(-k * i)
            with i = 0 for the oldest prediction. The original ACT used 0.01. (Replaces the reference's
            older `temporal_ensemble_momentum`, which configs may still carry as null.)

    Optimiser (reference training recipe: AdamW, batch 8, grad clip 10, no schedule):
        optimizer_lr: learning rate of everything but the backbone.
        optimizer_lr_backbone: learning rate of the vision backbone.
        optimizer_weight_decay: AdamW weight decay.
    """

    type: ClassVar[str] = "act"
    # Real-robot configs of the reference carried `temporal_ensemble_momentum: null` (since renamed).
    renamed_keys: ClassVar[dict[str, str | None]] = {"temporal_ensemble_momentum": None}

    n_obs_steps: int = 1
    chunk_size: int = 100
    n_action_steps: int = 100

    input_shapes: dict[str, list[int]] = field(
        default_factory=lambda: {"observation.images.top": [3, 480, 640], "observation.state": [14]}
    )
    output_shapes: dict[str, list[int]] = field(default_factory=lambda: {"action": [14]})
    input_normalization_modes: dict[str, str] = field(
        default_factory=lambda: {"observation.images.top": "mean_std", "observation.state": "mean_std"}
    )
    output_normalization_modes: dict[str, str] = field(default_factory=lambda: {"action": "mean_std"})

    vision_backbone: str = "resnet18"
    pretrained_backbone_weights: str | None = "ResNet18_Weights.IMAGENET1K_V1"
    replace_final_stride_with_dilation: bool = False

    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    dropout: float = 0.1

    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    kl_weight: float = 10.0

    temporal_ensemble_coeff: float | None = None

    optimizer_lr: float = 1e-5
    optimizer_lr_backbone: float = 1e-5
    optimizer_weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.n_obs_steps != 1:
            raise ValueError(
                f"ACT uses the current observation only: n_obs_steps must be 1, got {self.n_obs_steps}."
            )
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be between 1 and chunk_size ({self.chunk_size}): "
                "a policy can only execute actions it has predicted."
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                "Temporal ensembling predicts a chunk at every step, so it needs n_action_steps=1 "
                f"(got {self.n_action_steps})."
            )
        if not self.image_keys and "observation.environment_state" not in self.input_shapes:
            raise ValueError(
                "ACT needs at least one camera ('observation.image*') or 'observation.environment_state' among "
                f"input_shapes; got {sorted(self.input_shapes)}."
            )
        unknown = [
            k
            for k in self.input_shapes
            if k not in ("observation.state", "observation.environment_state") and k not in self.image_keys
        ]
        if unknown:
            raise ValueError(
                f"ACT does not know the inputs {unknown}; it takes 'observation.state', "
                "'observation.environment_state' and cameras 'observation.image*'."
            )
        heights = {k: self.input_shapes[k][1] for k in self.image_keys}
        if len(set(heights.values())) > 1:
            raise ValueError(
                f"All cameras must have the same height (their feature maps are put side by side): {heights}. "
                "Resize them to a common height."
            )
        if "action" not in self.output_shapes:
            raise ValueError(f"output_shapes must contain 'action', got {sorted(self.output_shapes)}.")
        if self.vision_backbone not in RESNET_LAYERS:
            raise ValueError(
                f"vision_backbone must be one of {sorted(RESNET_LAYERS)}, got {self.vision_backbone!r}."
            )
        if self.replace_final_stride_with_dilation:
            raise ValueError(
                "replace_final_stride_with_dilation is not supported by ResNet-18/34 basic blocks."
            )
        if self.dim_model % self.n_heads != 0:
            raise ValueError(f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads}).")
        if self.image_keys and self.dim_model % 4 != 0:
            raise ValueError(
                f"dim_model ({self.dim_model}) must be a multiple of 4 with cameras: the 2D sinusoidal position "
                "embedding uses dim_model / 2 sine-cosine pairs per axis."
            )
        if self.feedforward_activation not in ("relu", "gelu"):
            raise ValueError(
                f"feedforward_activation must be 'relu' or 'gelu', got {self.feedforward_activation!r}."
            )

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))
