"""From a run config (hydra) to the objects training needs: the policy config, the dataset, the statistics.

The policy's dataclass holds every architecture default; the run config's `policy:` section selects it by `name`
and overrides fields. What the dataclass cannot know is the data: input shapes come from the dataset's features,
restricted to what the simulated env observes (so a policy trained on a dataset with extra keys still runs in the
env), and normalisation modes keyed to the dataclass's default feature names carry over by feature type.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lerobot.common.envs.factory import observation_keys
from lerobot.common.policies.factory import get_policy_classes, shapes_from_features
from lerobot.common.policies.normalize import FEATURE_TYPES, feature_type
from lerobot.common.policies.pretrained import PolicyConfig

log = logging.getLogger("lerobot.train")

# Reference `training.*` keys that set optimiser fields of the policy config.
TRAINING_TO_POLICY_FIELDS = {
    "lr": "optimizer_lr",
    "lr_backbone": "optimizer_lr_backbone",
    "weight_decay": "optimizer_weight_decay",
}


class RunConfigError(ValueError):
    """The run config asks for something the data, env or policy cannot provide."""


def policy_fields(cfg: DictConfig) -> tuple[str, dict[str, Any]]:
    """(policy name, field overrides) from the run config's `policy` section and `training.lr`-style keys."""
    if cfg.get("policy", None) is None or cfg.policy.get("name", None) is None:
        raise RunConfigError(
            "The config has no policy.name; select one with policy=<act|diffusion|tdmpc|vqbet>."
        )
    fields = OmegaConf.to_container(cfg.policy, resolve=True)
    name = fields.pop("name")
    config_class, _ = get_policy_classes(name)
    known = {f.name for f in dataclasses.fields(config_class)}
    for train_key, field in TRAINING_TO_POLICY_FIELDS.items():
        value = cfg.training.get(train_key, None)
        if value is None:
            continue
        if field not in known:
            raise RunConfigError(
                f"training.{train_key}={value} was given but the {name} policy has no {field}."
            )
        fields[field] = value
    return name, fields


def _modes_by_type(modes: Mapping[str, str]) -> dict[str, str]:
    """Default per-key normalisation modes re-expressed per feature type (environment state follows state)."""
    by_type: dict[str, str] = {}
    for key, mode in modes.items():
        by_type[key if key in FEATURE_TYPES else feature_type(key)] = mode
    if "STATE" in by_type:
        by_type.setdefault("ENV", by_type["STATE"])
    return by_type


def make_policy_config(cfg: DictConfig, features: Mapping[str, Mapping[str, Any]]) -> PolicyConfig:
    """The policy config of the run: dataclass defaults <- yaml/CLI fields <- shapes from the dataset."""
    name, fields = policy_fields(cfg)
    config_class, _ = get_policy_classes(name)
    inputs, outputs = shapes_from_features(features)
    env_keys = observation_keys(cfg) if cfg.get("env", None) is not None else None
    if env_keys is not None:
        missing = [k for k in env_keys if k not in inputs]
        if missing:
            raise RunConfigError(
                f"The env (obs_type {cfg.env.get('gym', {}).get('obs_type')}) observes {missing}, which dataset "
                f"{cfg.dataset_repo_id} does not have (its observations: {sorted(inputs)}). Choose a dataset "
                "recorded with these observations or change env.gym.obs_type."
            )
        inputs = {k: inputs[k] for k in env_keys}
    if "action" not in outputs:
        raise RunConfigError(f"Dataset {cfg.dataset_repo_id} has no 'action' feature to learn.")

    defaults = config_class()
    if "input_shapes" not in fields:
        fields["input_shapes"] = inputs
        if "input_normalization_modes" not in fields:
            fields["input_normalization_modes"] = _modes_by_type(defaults.input_normalization_modes)
    else:
        for key, shape in fields["input_shapes"].items():
            if key not in inputs:
                raise RunConfigError(
                    f"policy.input_shapes has {key!r}, which the dataset/env does not provide "
                    f"(available: {sorted(inputs)})."
                )
            if list(shape) != inputs[key]:
                raise RunConfigError(
                    f"policy.input_shapes[{key!r}] is {list(shape)} but the dataset's {key} "
                    f"has shape {inputs[key]}."
                )
    if "output_shapes" not in fields:
        fields["output_shapes"] = outputs
        if "output_normalization_modes" not in fields:
            fields["output_normalization_modes"] = _modes_by_type(defaults.output_normalization_modes)
    return config_class.from_dict(fields)


def apply_stats_overrides(
    stats: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Mapping[str, Any]] | None,
    camera_keys: list[str],
) -> dict[str, dict[str, torch.Tensor]]:
    """Dataset stats with `override_dataset_stats` applied; the key `VISUAL` stands for every camera."""
    out = {k: {s: torch.as_tensor(v, dtype=torch.float32) for s, v in d.items()} for k, d in stats.items()}
    for key, values in (overrides or {}).items():
        targets = camera_keys if key == "VISUAL" else [key]
        for target in targets:
            for stat, value in values.items():
                if stat not in ("mean", "std", "min", "max"):
                    raise RunConfigError(
                        f"override_dataset_stats.{key}.{stat}: unknown statistic (mean/std/min/max)."
                    )
                tensor = torch.as_tensor(value, dtype=torch.float32)
                current = out.get(target, {}).get(stat)
                if current is not None and current.numel() != tensor.numel():
                    raise RunConfigError(
                        f"override_dataset_stats.{key}.{stat} has {tensor.numel()} values; {target}'s {stat} has "
                        f"{current.numel()} (shape {list(current.shape)})."
                    )
                out.setdefault(target, {})[stat] = (
                    tensor.reshape(current.shape) if current is not None else tensor
                )
    return out
