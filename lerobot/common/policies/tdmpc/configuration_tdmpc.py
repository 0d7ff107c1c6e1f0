"""Configuration of TD-MPC (Hansen et al., 2022, arXiv:2203.04955) in its FOWM form (Feng et al., 2023,
"Finetuning Offline World Models in the Real World", arXiv:2310.16029), as the reference lerobot configures it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lerobot.common.policies.normalize import resolve_modes
from lerobot.common.policies.pretrained import PolicyConfig

STATE = "observation.state"
ENV_STATE = "observation.environment_state"
REWARD = "next.reward"


def conv_encoder_output_size(side: int) -> int:
    """Side of the image encoder's feature map for a (side x side) image: four valid convolutions with
    kernels 7, 5, 3, 3 and stride 2 (84 -> 39 -> 18 -> 8 -> 3)."""
    for kernel in (7, 5, 3, 3):
        side = (side - kernel) // 2 + 1
    return side


@dataclass
class TDMPCConfig(PolicyConfig):
    """Every setting of TD-MPC; the defaults are the reference's (xarm lift: one 84x84 camera + robot state).

    Inputs and outputs:
        n_action_repeats: times `select_action` repeats each planned action before planning again.
        horizon: planning horizon (in steps) of MPC, and the length of the latent rollouts in training.
        n_action_steps: actions of each plan that `select_action` executes before planning again, an
            alternative to action repeats (not in the original method). Above 1 it needs
            n_action_repeats == 1, use_mpc and n_action_steps <= horizon.
        input_shapes: input feature -> shape. At most one camera `observation.image*`, square, (C, H, W) with
            H = W >= 39 (the encoder's four strided convolutions); `observation.state` and
            `observation.environment_state` are (D,). Each present modality is encoded and the codes averaged.
        output_shapes: output feature -> shape; `action` is (action_dim,).
        input_normalization_modes: feature (or type VISUAL/STATE/ENV) -> "mean_std" | "min_max" | "identity".
            Empty (the reference's null): inputs are used as they are (images in [0, 1]).
        output_normalization_modes: must map `action` (or ACTION) to "min_max": planning and the policy's
            tanh head assume every action dimension lives in [-1, 1].

    Networks (the "task-oriented latent dynamics" model):
        image_encoder_hidden_dim: channels of the four convolutions of the image encoder.
        state_encoder_hidden_dim: hidden width of the MLPs encoding the state and the environment state.
        latent_dim: size of the latent state z.
        q_ensemble_size: number of Q functions in the ensemble (>= 2: their spread is the uncertainty).
        mlp_dim: hidden width of the dynamics, reward, pi, Q and V MLPs.
        discount: discount factor gamma of returns and TD targets.

    Planning (MPPI with cross-entropy-method updates, in `select_action`):
        use_mpc: plan with MPC; False executes the policy prior pi's action directly.
        cem_iterations: refinement iterations of the action distribution per plan.
        max_std: initial (and maximum) std of the Gaussian over action sequences.
        min_std: floor of that std, and the std of the noise added to pi's actions when sampling
            trajectories from it.
        n_gaussian_samples: action sequences drawn from the Gaussian per iteration (> 0).
        n_pi_samples: action sequences drawn by rolling out pi in the latent model (may be 0).
        uncertainty_regularizer_coeff: lambda of FOWM eq. 4: each step's value is penalised by lambda times
            the std of the Q ensemble.
        n_elites: best sequences that update the Gaussian each iteration.
        elite_weighting_temperature: elites are weighted by softmax(temperature * value); despite the
            reference name the value is multiplied, so larger means greedier.
        gaussian_mean_momentum: alpha of mean <- alpha * mean + (1 - alpha) * elite mean.

    Training:
        max_random_shift_ratio: random-shift augmentation of the camera image in training: the image is
            replicate-padded by round(ratio * size) pixels and randomly cropped back (0 disables it).
        reward_coeff: weight of the reward-prediction loss.
        expectile_weight: tau of the expectile loss of V (IQL): V below its target is weighted tau, above
            1 - tau; tau near 1 makes V estimate the best in-sample Q values.
        value_coeff: weight of the Q (TD) loss and of the V (expectile) loss.
        consistency_coeff: weight of the latent consistency loss.
        advantage_scaling: beta of the advantage-weighted regression of pi: weights exp(beta * A), clamped
            at 100.
        pi_coeff: weight of the pi loss.
        temporal_decay_coeff: rho: the losses of rollout step t are weighted rho ** t.
        target_model_momentum: EMA momentum of the target network, updated by `update()` after every
            optimiser step: target <- momentum * target + (1 - momentum) * online.

    Optimiser (reference recipe: Adam, batch 256, grad clip 10):
        optimizer_lr: Adam learning rate.
    """

    type: ClassVar[str] = "tdmpc"

    n_action_repeats: int = 2
    horizon: int = 5
    n_action_steps: int = 1

    input_shapes: dict[str, list[int]] = field(
        default_factory=lambda: {"observation.image": [3, 84, 84], "observation.state": [4]}
    )
    output_shapes: dict[str, list[int]] = field(default_factory=lambda: {"action": [4]})
    input_normalization_modes: dict[str, str] = field(default_factory=dict)
    output_normalization_modes: dict[str, str] = field(default_factory=lambda: {"action": "min_max"})

    image_encoder_hidden_dim: int = 32
    state_encoder_hidden_dim: int = 256
    latent_dim: int = 50
    q_ensemble_size: int = 5
    mlp_dim: int = 512
    discount: float = 0.9

    use_mpc: bool = True
    cem_iterations: int = 6
    max_std: float = 2.0
    min_std: float = 0.05
    n_gaussian_samples: int = 512
    n_pi_samples: int = 51
    uncertainty_regularizer_coeff: float = 1.0
    n_elites: int = 50
    elite_weighting_temperature: float = 0.5
    gaussian_mean_momentum: float = 0.1

    max_random_shift_ratio: float = 0.0476
    reward_coeff: float = 0.5
    expectile_weight: float = 0.9
    value_coeff: float = 0.1
    consistency_coeff: float = 20.0
    advantage_scaling: float = 3.0
    pi_coeff: float = 0.5
    temporal_decay_coeff: float = 0.5
    target_model_momentum: float = 0.995

    optimizer_lr: float = 3e-4

    def __post_init__(self) -> None:
        if self.input_normalization_modes is None:  # the reference's config.json writes null
            self.input_normalization_modes = {}
        self._check_features()
        self._check_planning()
        for name in ("horizon", "n_action_repeats", "n_action_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TDMPCConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.n_action_steps > 1:
            if self.n_action_repeats != 1:
                raise ValueError(
                    f"n_action_steps={self.n_action_steps} executes several planned actions, which excludes "
                    f"repeating each one: set n_action_repeats=1 (got {self.n_action_repeats})."
                )
            if not self.use_mpc:
                raise ValueError(
                    f"n_action_steps={self.n_action_steps} needs use_mpc=True: without MPC the policy prior "
                    "gives one action per call, not a plan."
                )
            if self.n_action_steps > self.horizon:
                raise ValueError(
                    f"n_action_steps ({self.n_action_steps}) must be <= horizon ({self.horizon}): a plan "
                    "holds only `horizon` actions."
                )
        for name in ("discount", "expectile_weight", "target_model_momentum", "gaussian_mean_momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TDMPCConfig.{name} must be in [0, 1], got {getattr(self, name)}.")
        if not 0.0 <= self.max_random_shift_ratio < 0.5:
            raise ValueError(
                f"max_random_shift_ratio must be in [0, 0.5) (a fraction of the image size), "
                f"got {self.max_random_shift_ratio}."
            )

    def _check_features(self) -> None:
        unknown = [k for k in self.input_shapes if k not in (STATE, ENV_STATE) and k not in self.image_keys]
        if unknown or not self.input_shapes:
            raise ValueError(
                f"TD-MPC takes 'observation.state', 'observation.environment_state' and one camera "
                f"'observation.image*'; input_shapes has {sorted(self.input_shapes)}."
            )
        if len(self.image_keys) > 1:
            raise ValueError(
                f"TD-MPC handles at most one camera, got {self.image_keys}: keep one in input_shapes."
            )
        for key in self.image_keys:
            shape = list(self.input_shapes[key])
            if len(shape) != 3 or shape[1] != shape[2]:
                raise ValueError(
                    f"TD-MPC needs a square (C, H, H) image for {key!r}, got {shape}: resize or crop it "
                    "(the random-shift augmentation and the encoder assume a square)."
                )
            if conv_encoder_output_size(shape[1]) < 1:
                raise ValueError(
                    f"Image {key!r} of size {shape[1]}x{shape[2]} is too small for the encoder's four strided "
                    "convolutions; it needs at least 39x39 pixels (the reference uses 84x84)."
                )
        if list(self.output_shapes) != ["action"] or len(self.output_shapes["action"]) != 1:
            raise ValueError(f"output_shapes must be {{'action': [action_dim]}}, got {self.output_shapes}.")
        if resolve_modes(self.output_shapes, self.output_normalization_modes).get("action") != "min_max":
            raise ValueError(
                f"TD-MPC needs actions normalised to [-1, 1]: output_normalization_modes must map 'action' "
                f"to 'min_max', got {self.output_normalization_modes}."
            )
        resolve_modes(self.input_shapes, self.input_normalization_modes)  # raises on unknown keys/modes

    def _check_planning(self) -> None:
        if self.n_gaussian_samples < 1:
            raise ValueError(
                f"n_gaussian_samples must be >= 1 (CEM samples from its Gaussian), got {self.n_gaussian_samples}."
            )
        if self.n_pi_samples < 0:
            raise ValueError(f"n_pi_samples must be >= 0, got {self.n_pi_samples}.")
        n_samples = self.n_gaussian_samples + self.n_pi_samples
        if not 1 <= self.n_elites <= n_samples:
            raise ValueError(
                f"n_elites ({self.n_elites}) must be between 1 and n_gaussian_samples + n_pi_samples "
                f"({n_samples})."
            )
        if self.cem_iterations < 1:
            raise ValueError(f"cem_iterations must be >= 1, got {self.cem_iterations}.")
        if self.q_ensemble_size < 2:
            raise ValueError(
                f"q_ensemble_size must be >= 2 (the ensemble's spread is the uncertainty estimate and "
                f"targets take the minimum of two members), got {self.q_ensemble_size}."
            )
        if not 0.0 <= self.min_std <= self.max_std or self.max_std <= 0:
            raise ValueError(
                f"Need 0 <= min_std <= max_std and max_std > 0, got min_std={self.min_std}, "
                f"max_std={self.max_std}."
            )

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(self.horizon + 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.horizon))

    @property
    def reward_delta_indices(self) -> list[int]:
        return list(range(self.horizon))

    def delta_timestamps(self, fps: float) -> dict[str, list[float]]:
        """Observations at t .. t + horizon, actions and rewards at t .. t + horizon - 1 (the rollout)."""
        out = {key: [i / fps for i in self.observation_delta_indices] for key in self.input_shapes}
        out["action"] = [i / fps for i in self.action_delta_indices]
        out[REWARD] = [i / fps for i in self.reward_delta_indices]
        return out
