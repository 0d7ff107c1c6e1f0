"""Base classes of every policy: its configuration dataclass and its save / load / publish code.

A saved policy is a folder (or a Hugging Face Hub model repo) with three files, as the reference writes them:

    config.json        the policy's configuration dataclass as JSON (plus "type": "act", ...)
    model.safetensors  every parameter and buffer, normalisation statistics included
    README.md          a model card

No pickle is used: weights are safetensors and the configuration is JSON, so loading a checkpoint never runs
code from it. `from_pretrained` accepts a local folder or a Hub repo id (`lerobot/act_aloha_sim_...`); only
`config.json` and `model.safetensors` are fetched.

A policy implements the reference API:
    forward(batch) -> {"loss": scalar tensor, ...}     training loss; never mutates `batch`
    select_action(batch) -> (B, action_dim)            one action per call, from an internal queue
    reset()                                            clear that queue at the start of an episode
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lerobot.common.policies.normalize import Normalize, Unnormalize

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CARD_NAME = "README.md"

ConfigT = TypeVar("ConfigT", bound="PolicyConfig")
PolicyT = TypeVar("PolicyT", bound="PreTrainedPolicy")


OptimizerT = TypeVar("OptimizerT", bound=torch.optim.Optimizer)


def make_adam(cls: type[OptimizerT], params: Any, **kwargs: Any) -> OptimizerT:
    """`cls` (Adam or AdamW) over `params` with torch's fused implementation where it has one for the parameters'
    device (CPU, CUDA, ...), else the default one. The fused step updates all tensors in one kernel instead of
    about ten passes over each: Adam's step gets ~4x faster on CPU, where it was half of a Diffusion Policy
    training step. Same update rule, equal up to float rounding; the optimizer state dict has the same keys."""
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device or dtype
        return cls(params, **kwargs)


class PretrainedPolicyNotFoundError(FileNotFoundError):
    """No policy checkpoint (config.json + model.safetensors) at the given folder or Hub repo."""


class PolicyConfigError(ValueError):
    """A policy configuration (config.json or keyword arguments) with unknown, obsolete or foreign fields."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights or configuration do not fit the policy being loaded."""


# ----------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------


class PolicyConfig:
    """Behaviour shared by the policies' configuration dataclasses (which hold all the fields).

    Subclasses are dataclasses with `input_shapes`, `output_shapes`, `input_normalization_modes` and
    `output_normalization_modes`, and set `type` (the registry name) and the delta indices.
    """

    type: ClassVar[str]
    # Keys that older checkpoints carry: old name -> new name, or None for an obsolete key that is dropped
    # when null (and refused otherwise, since its meaning is gone).
    renamed_keys: ClassVar[dict[str, str | None]] = {}

    input_shapes: dict[str, list[int]]
    output_shapes: dict[str, list[int]]

    @property
    def observation_delta_indices(self) -> list[int] | None:
        """Frame offsets of the observations each training sample needs (None: the current frame only)."""
        return None

    @property
    def action_delta_indices(self) -> list[int] | None:
        """Frame offsets of the actions each training sample needs (None: the current action only)."""
        return None

    @property
    def drop_n_last_frames(self) -> int:
        """Frames at the end of each episode that training never samples as the current frame (0: none).

        Diffusion Policy skips the last ones, whose action horizon would be mostly padding.
        """
        return 0

    def delta_timestamps(self, fps: float) -> dict[str, list[float]]:
        """The `delta_timestamps` to build a `LeRobotDataset` with for training this policy at `fps`."""
        out = {}
        if self.observation_delta_indices is not None:
            for key in self.input_shapes:
                out[key] = [i / fps for i in self.observation_delta_indices]
        if self.action_delta_indices is not None:
            out["action"] = [i / fps for i in self.action_delta_indices]
        return out

    @property
    def image_keys(self) -> list[str]:
        """Camera inputs, in the order of `input_shapes`."""
        return [k for k in self.input_shapes if k.startswith("observation.image")]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Build the config from `config.json` contents, rejecting unknown keys with a suggestion."""
        data = dict(data)
        saved_type = data.pop("type", cls.type)
        if saved_type != cls.type:
            raise PolicyConfigError(
                f"This configuration is for a {saved_type!r} policy, not {cls.type!r}: load it with that "
                "policy's class, or with `lerobot.common.policies.factory.load_policy`."
            )
        for old, new in cls.renamed_keys.items():
            if old not in data:
                continue
            value = data.pop(old)
            if new is not None:
                data.setdefault(new, value)
            elif value is not None:
                raise PolicyConfigError(
                    f"Config key {old!r} is obsolete and only accepted as null, got {value!r}; "
                    f"see the {cls.__name__} docstring for its replacement."
                )
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - fields)
        if unknown:
            hints = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
            hints_txt = ", ".join(
                f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items()
            )
            raise PolicyConfigError(f"Unknown {cls.__name__} fields: {hints_txt}.")
        return cls(**data)

    @classmethod
    def from_json(cls: type[ConfigT], path: str | Path) -> ConfigT:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


# ----------------------------------------------------------------------------------------------------------
# Policy
# ----------------------------------------------------------------------------------------------------------


class PreTrainedPolicy(nn.Module):
    """A policy that can be saved to a folder, loaded back (from a folder or the Hub) and pushed to the Hub."""

    name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]
    # Extra constructor arguments `from_pretrained` passes, e.g. to skip loading ImageNet weights that the
    # checkpoint overwrites anyway.
    checkpoint_init_kwargs: ClassVar[dict[str, Any]] = {}

    config: PolicyConfig

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    def select_action(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def init_normalization(self, dataset_stats: Mapping[str, Mapping[str, Tensor]] | None) -> None:
        """Build the normalisers every policy holds, under the reference's state-dict names: inputs and
        targets normalised with `self.config`'s modes, outputs un-normalised. Without `dataset_stats` the
        buffers stay unset until a checkpoint is loaded."""
        c = self.config
        self.normalize_inputs = Normalize(c.input_shapes, c.input_normalization_modes, dataset_stats)
        self.normalize_targets = Normalize(c.output_shapes, c.output_normalization_modes, dataset_stats)
        self.unnormalize_outputs = Unnormalize(c.output_shapes, c.output_normalization_modes, dataset_stats)

    def check_inputs(self, batch: Mapping[str, Tensor], n_steps: int | None) -> None:
        """Every input of the config is in `batch`, shaped (B, [n_steps,] *feature_shape); `n_steps` None means
        one observation without a time axis (as `select_action` gets it)."""
        name = type(self).__name__
        missing = [k for k in self.config.input_shapes if k not in batch]
        if missing:
            raise KeyError(f"{name} batch lacks the inputs {missing}; it has {sorted(batch)}.")
        time = [] if n_steps is None else [n_steps]
        for key, shape in self.config.input_shapes.items():
            got = list(batch[key].shape)
            if got[1:] != [*time, *shape]:
                hint = (
                    ": build the dataset with delta_timestamps=config.delta_timestamps(fps)."
                    if n_steps is not None
                    else " (one observation, no time axis: select_action takes the current frame without a time axis)."
                )
                expected = ", ".join(map(str, [*time, *shape]))
                raise ValueError(f"{name} input {key!r} has shape {got}, expected [B, {expected}]{hint}")

    # -- training hooks used by lerobot/scripts/train.py ----------------------------------------------------

    def make_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of the policy's reference training recipe, built from its config's `optimizer_*` fields."""
        raise NotImplementedError(f"{type(self).__name__} does not define its optimiser (make_optimizer).")

    def make_lr_scheduler(
        self, optimizer: torch.optim.Optimizer, num_training_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule of the reference recipe, stepped once per update; None for a constant lr."""
        return None

    def update(self) -> None:
        """Called after every optimiser step (e.g. TD-MPC's EMA target network); nothing by default."""

    # -- saving -------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | Path, *, datasets: Sequence[str] = ()) -> Path:
        """Write config.json, model.safetensors and README.md to `save_directory` (created if needed).

        `datasets` (Hub repo ids) are listed in the model card.
        """
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        with open(save_directory / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(self.config.to_dict(), f, indent=4)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, save_directory / WEIGHTS_NAME, metadata={"format": "pt"})
        (save_directory / MODEL_CARD_NAME).write_text(self.model_card(datasets), encoding="utf-8")
        return save_directory

    def model_card(self, datasets: Sequence[str] = ()) -> str:
        lines = ["---", "library_name: lerobot", "license: apache-2.0", "pipeline_tag: robotics"]
        lines += ["tags:", "- lerobot", "- robotics", f"- {self.name}"]
        if datasets:
            lines += ["datasets:"] + [f"- {d}" for d in datasets]
        lines += ["---", "", f"# {type(self).__name__}", ""]
        lines += [f"A [LeRobot](https://github.com/huggingface/lerobot) policy of type `{self.name}`.", ""]
        lines += ["| feature | shape | role |", "|---|---|---|"]
        lines += [f"| `{k}` | {list(s)} | input |" for k, s in self.config.input_shapes.items()]
        lines += [f"| `{k}` | {list(s)} | output |" for k, s in self.config.output_shapes.items()]
        module = type(self).__module__
        lines += ["", "```python", f"from {module} import {type(self).__name__}", ""]
        lines += [f'policy = {type(self).__name__}.from_pretrained("<this repo id or folder>")', "```", ""]
        return "\n".join(lines)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        commit_message: str = "Upload policy",
        datasets: Sequence[str] = (),
    ) -> str:
        """Save the policy and upload it to the Hub model repo `repo_id` (created if absent)."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if branch is not None:
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, datasets=datasets)
            api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                repo_type="model",
                revision=branch,
                commit_message=commit_message,
            )
        return str(url)

    # -- loading ------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls: type[PolicyT],
        pretrained_name_or_path: str | Path,
        *,
        config: PolicyConfig | None = None,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | None = None,
        device: str | torch.device = "cpu",
        strict: bool = True,
    ) -> PolicyT:
        """Load a policy saved by `save_pretrained`, from a local folder or a Hub repo id.

        `config` replaces the saved configuration (it must describe the same weights). The policy comes back
        in eval mode on `device`. With `strict`, weights missing from or unexpected in the file are errors.
        """
        config_file, weights_file = resolve_pretrained_files(
            pretrained_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
            token=token,
        )
        if config is None:
            config = cls.config_class.from_json(config_file)
        policy = cls(config, **cls.checkpoint_init_kwargs)
        load_weights(policy, load_file(weights_file), strict=strict, source=str(pretrained_name_or_path))
        policy.to(device)
        policy.eval()
        return policy


def load_weights(model: nn.Module, state_dict: dict[str, Tensor], *, strict: bool, source: str) -> None:
    """`model.load_state_dict` with errors that name the offending keys and the checkpoint."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = [
        f"{k}: file {list(state_dict[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if mis_shaped:
        raise CheckpointMismatchError(
            f"Weights of {source!r} do not match the policy built from its config: {mis_shaped[:5]}. "
            "Was config.json edited, or a `config` passed that changes the architecture?"
        )
    if strict and (missing or unexpected):
        raise CheckpointMismatchError(
            f"Weights of {source!r} do not match the policy: missing {missing[:10]}, unexpected "
            f"{unexpected[:10]}. Pass strict=False to load the matching part only."
        )
    model.load_state_dict(state_dict, strict=False)


def resolve_pretrained_files(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | None = None,
) -> tuple[Path, Path]:
    """Paths of (config.json, model.safetensors): from a local folder, else downloaded from the Hub."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (path / n).is_file()]
        if missing:
            raise PretrainedPolicyNotFoundError(
                f"{str(path)!r} is not a saved policy: it lacks {missing}. A checkpoint folder holds "
                f"{CONFIG_NAME} and {WEIGHTS_NAME}, as written by `policy.save_pretrained(folder)` (in a "
                "training run: checkpoints/<step>/pretrained_model)."
            )
        return path / CONFIG_NAME, path / WEIGHTS_NAME
    if path.exists():
        raise PretrainedPolicyNotFoundError(
            f"{str(path)!r} is a file; pass the folder that holds {CONFIG_NAME}."
        )
    repo_id = str(name_or_path)
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") != 1:
        raise PretrainedPolicyNotFoundError(
            f"No folder at {repo_id!r}, and it is not a Hub repo id of the form 'namespace/name'."
        )
    hub_kwargs = dict(
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
        token=token,
    )
    return _download(repo_id, CONFIG_NAME, **hub_kwargs), _download(repo_id, WEIGHTS_NAME, **hub_kwargs)


def _download(repo_id: str, filename: str, *, revision: str | None, **hub_kwargs: Any) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"Hub repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, **hub_kwargs))
    except LocalEntryNotFoundError as e:
        raise PretrainedPolicyNotFoundError(
            f"{filename} of {where} is not in the local Hub cache and downloading is disabled or failed "
            f"(HF_HUB_OFFLINE / local_files_only / no network), and there is no local folder {repo_id!r}."
        ) from e
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as e:
        raise PretrainedPolicyNotFoundError(
            f"No local folder {repo_id!r} and no accessible {where} (private repos need a token): {e}"
        ) from e
    except EntryNotFoundError as e:
        raise PretrainedPolicyNotFoundError(f"{where} has no {filename}; is it a LeRobot policy?") from e
