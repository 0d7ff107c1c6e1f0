"""`make_robot`: a robot from a config dict, a hydra config, a yaml file or a robot type name.

The yaml files of lerobot/configs/robot/ hold the robot keys at their top level, as the reference's do, and
declare `# @package robot`: in a hydra config, `robot=so100` puts them under `robot:`. A whole hydra config
(with its `robot:` section) is accepted as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from lerobot.common.robot_devices.robots.calibration_procedure import Prompt
from lerobot.common.robot_devices.robots.configs import RobotConfigError
from lerobot.common.robot_devices.robots.manipulator import ManipulatorRobot

ROBOT_CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "robot"


def available_robot_configs() -> list[str]:
    return sorted(path.stem for path in ROBOT_CONFIG_DIR.glob("*.yaml"))


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = OmegaConf.load(path)
    except OSError as e:
        raise RobotConfigError(f"Cannot read the robot config {path}: {e}") from e
    except yaml.YAMLError as e:
        raise RobotConfigError(f"The robot config {path} is not valid yaml: {e}") from e
    if not isinstance(loaded, DictConfig):
        raise RobotConfigError(f"The robot config {path} must hold a mapping, not a list.")
    return OmegaConf.to_container(loaded, resolve=True)


def _source_dict(cfg: str | Path | dict | DictConfig) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        return dict(cfg)
    text = str(cfg)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return _load_yaml(Path(text).expanduser())
    if text not in available_robot_configs():
        raise RobotConfigError(
            f"Unknown robot '{text}': give a yaml path or one of {available_robot_configs()} "
            f"(the configs of {ROBOT_CONFIG_DIR})."
        )
    return _load_yaml(ROBOT_CONFIG_DIR / f"{text}.yaml")


def _unwrap(cfg: dict[str, Any]) -> dict[str, Any]:
    # A whole hydra config carries the robot keys under `robot:`.
    if "type" not in cfg and "robot_type" not in cfg and isinstance(cfg.get("robot"), dict):
        return dict(cfg["robot"])
    return cfg


def load_robot_config(
    cfg: str | Path | dict | DictConfig, overrides: Sequence[str] = (), **replace: Any
) -> dict[str, Any]:
    """The robot config as a plain dict (not yet checked: `ManipulatorRobot` does that).

    `overrides` are command-line style edits: `key.sub=value` (value read as yaml, e.g.
    `max_relative_target=5` or `cameras={}`) and `~key` to remove a key (`~cameras`: no cameras).
    `replace` sets top-level keys, replacing their whole value (`cameras={}`, `calibration_dir=...`).
    """
    robot = _unwrap(_source_dict(cfg))
    robot.update(replace)
    conf = OmegaConf.create(robot)
    for override in overrides:
        if override.startswith("~"):
            *parents, last = override[1:].split(".")
            node = OmegaConf.select(conf, ".".join(parents)) if parents else conf
            if not isinstance(node, DictConfig) or last not in node:
                raise RobotConfigError(f"Cannot remove '{override[1:]}': the robot config has no such key.")
            del node[last]
        elif "=" in override:
            key, value = override.split("=", 1)
            conf.merge_with(OmegaConf.from_dotlist([f"{key}={value}"]))
            if value.strip() == "{}":  # merging {} would keep the old mapping: an empty one was asked for
                OmegaConf.update(conf, key, {}, merge=False)
        else:
            raise RobotConfigError(f"Robot override '{override}' is neither `key=value` nor `~key`.")
    return OmegaConf.to_container(conf, resolve=True)


def make_robot(
    cfg: str | Path | dict | DictConfig,
    overrides: Sequence[str] = (),
    prompt: Prompt | None = None,
    **replace: Any,
) -> ManipulatorRobot:
    """A (not yet connected) robot. Examples: `make_robot("so100")`, `make_robot("koch", cameras={})`,
    `make_robot("lerobot/configs/robot/aloha.yaml", ["max_relative_target=10"])`, `make_robot(cfg.robot)`.

    `prompt(message)` is what the guided calibration calls when the user must move an arm (default `input`).
    """
    return ManipulatorRobot(load_robot_config(cfg, overrides, **replace), prompt=prompt)
