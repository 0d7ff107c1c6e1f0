"""Building policies by name, and loading saved ones without knowing their class.

`POLICIES` is the whole registry: name -> (config class, policy class), as "module:attribute" strings so a
policy's module (and its dependencies) is imported only when that policy is used. A new policy adds one line.

    policy = make_policy("act", dataset_stats=dataset.stats, chunk_size=50)
    policy = make_policy(ACTConfig(...), dataset_stats=dataset.stats)
    policy = load_policy("lerobot/act_aloha_sim_transfer_cube_human")   # or a checkpoint folder
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from lerobot.common.policies.pretrained import PolicyConfig, PreTrainedPolicy, resolve_pretrained_files

POLICIES: dict[str, tuple[str, str]] = {
    "act": (
        "lerobot.common.policies.act.configuration_act:ACTConfig",
        "lerobot.common.policies.act.modeling_act:ACTPolicy",
    ),
    "diffusion": (
        "lerobot.common.policies.diffusion.configuration_diffusion:DiffusionConfig",
        "lerobot.common.policies.diffusion.modeling_diffusion:DiffusionPolicy",
    ),
    "tdmpc": (
        "lerobot.common.policies.tdmpc.configuration_tdmpc:TDMPCConfig",
        "lerobot.common.policies.tdmpc.modeling_tdmpc:TDMPCPolicy",
    ),
    "vqbet": (
        "lerobot.common.policies.vqbet.configuration_vqbet:VQBeTConfig",
        "lerobot.common.policies.vqbet.modeling_vqbet:VQBeTPolicy",
    ),
}


def available_policies() -> list[str]:
    return list(POLICIES)


def _import(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def get_policy_classes(name: str) -> tuple[type[PolicyConfig], type[PreTrainedPolicy]]:
    """(config class, policy class) of the policy registered as `name`."""
    if name not in POLICIES:
        raise ValueError(f"Unknown policy {name!r}; available: {available_policies()}.")
    config_target, policy_target = POLICIES[name]
    return _import(config_target), _import(policy_target)


def make_policy_config(name: str, **fields: Any) -> PolicyConfig:
    """The config of policy `name`: its defaults, with `fields` replaced."""
    config_class, _ = get_policy_classes(name)
    return config_class.from_dict(fields)


def make_policy(
    policy: str | PolicyConfig,
    dataset_stats: Mapping[str, Mapping[str, Tensor]] | None = None,
    **config_fields: Any,
) -> PreTrainedPolicy:
    """A freshly initialised policy, from a name (plus config fields) or from a config.

    `dataset_stats` (e.g. `LeRobotDataset.stats`) set the normalisation; without them the policy must load
    weights (`load_state_dict`) before use.
    """
    if isinstance(policy, str):
        config = make_policy_config(policy, **config_fields)
    else:
        if config_fields:
            raise TypeError(
                f"Config fields {sorted(config_fields)} given with a config object; set them on it."
            )
        config = policy
    _, policy_class = get_policy_classes(config.type)
    return policy_class(config, dataset_stats=dataset_stats)


def load_policy(
    pretrained_name_or_path: str | Path, *, policy_type: str | None = None, **kwargs: Any
) -> PreTrainedPolicy:
    """Load a saved policy (folder or Hub repo id) of any registered type; `kwargs` go to `from_pretrained`.

    The type comes from config.json's "type"; checkpoints of the reference implementation have none, so
    pass `policy_type` ("act", ...) for those.
    """
    hub_kwargs = {
        k: kwargs.pop(k)
        for k in ("revision", "cache_dir", "force_download", "local_files_only", "token")
        if k in kwargs
    }
    config_file, _ = resolve_pretrained_files(pretrained_name_or_path, **hub_kwargs)
    with open(config_file, encoding="utf-8") as f:
        saved_type = json.load(f).get("type")
    policy_type = policy_type or saved_type
    if policy_type is None:
        raise ValueError(
            f"{config_file} does not say which policy it is (no 'type' key, as in checkpoints of the reference "
            f"implementation): pass policy_type, one of {available_policies()}."
        )
    _, policy_class = get_policy_classes(policy_type)
    return policy_class.from_pretrained(config_file.parent, **kwargs)


def shapes_from_features(
    features: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """(input_shapes, output_shapes) for a policy config from a dataset's `features`.

    Observations (`observation.*`) become inputs, `action` the output. Camera features, stored (H, W, C) in
    the dataset, become (C, H, W) as the policy sees them.
    """
    inputs, outputs = {}, {}
    for key, feature in features.items():
        shape = [int(s) for s in feature["shape"]]
        if feature.get("dtype") in ("image", "video"):
            names = list(feature.get("names") or ["height", "width", "channels"])
            if len(shape) != 3 or sorted(names) != ["channels", "height", "width"]:
                raise ValueError(
                    f"Camera feature {key!r} has shape {shape} with names {names}; expected 3 axes."
                )
            shape = [shape[names.index(axis)] for axis in ("channels", "height", "width")]
        if key.startswith("observation."):
            inputs[key] = shape
        elif key == "action":
            outputs[key] = shape
    return inputs, outputs
