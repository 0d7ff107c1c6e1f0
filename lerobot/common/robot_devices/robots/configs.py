"""The robot config (the `robot:` section of lerobot/configs/robot/*.yaml), parsed and checked up front.

A robot config only describes hardware (ports, motor IDs and models, cameras, safety limits): it never names
code to import. Every mistake is reported before a port is opened, with the key and value at fault, because
a half-connected arm with torque on is the worst place to discover a typo.

Configs written for the reference implementation (`robot_type:` and `_target_:` keys naming its classes)
are read too: a known class name is mapped to the bus or camera `type` it stands for, nothing is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ROBOT_TYPES = ("koch", "koch_bimanual", "so100", "moss", "aloha")
KOCH_TYPES = ("koch", "koch_bimanual")
BUS_TYPES = ("dynamixel", "feetech")
ROBOT_KEYS = (
    "type",
    "calibration_dir",
    "max_relative_target",
    "gripper_open_degree",
    "leader_arms",
    "follower_arms",
    "cameras",
)
BUS_KEYS = ("type", "port", "motors")

# Class names of the reference implementation's `_target_` entries, and what each one means here.
_REFERENCE_TARGETS = {
    "ManipulatorRobot": None,
    "DynamixelMotorsBus": "dynamixel",
    "FeetechMotorsBus": "feetech",
    "OpenCVCamera": "opencv",
    "IntelRealSenseCamera": "intelrealsense",
}


class RobotConfigError(ValueError):
    """A robot config that cannot describe a working robot (the message names the key and the fix)."""


@dataclass
class MotorsBusConfig:
    """One arm: a bus `type` (dynamixel | feetech) on `port`, with motors `{name: (id, model)}` in order."""

    type: str
    port: str
    motors: dict[str, tuple[int, str]]


@dataclass
class RobotConfig:
    type: str
    calibration_dir: str
    leader_arms: dict[str, MotorsBusConfig] = field(default_factory=dict)
    follower_arms: dict[str, MotorsBusConfig] = field(default_factory=dict)
    # Camera configs as the cameras package takes them ({name: {type: opencv, camera_index, fps, ...}}).
    cameras: dict[str, Any] = field(default_factory=dict)
    # Largest change of a goal position per step, in degrees (or % for grippers): None, one number, or one
    # number per follower motor (the same list for every follower arm).
    max_relative_target: float | list[float] | None = None
    # Koch only: the leader gripper is torqued to this angle and acts as a spring trigger.
    gripper_open_degree: float | None = None

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> RobotConfig:
        return parse_robot_config(cfg)

    @property
    def picture_robot(self) -> str:
        """The robot name of the reference pictures (both koch variants use the koch pictures)."""
        return "koch" if self.type in KOCH_TYPES else self.type


def _target_type(target: Any, where: str) -> str | None:
    name = str(target).rsplit(".", 1)[-1]
    if name not in _REFERENCE_TARGETS:
        raise RobotConfigError(
            f"{where}: `_target_: {target}` is not a class this config format knows; configs never name code "
            f"to import. Replace it with `type:` ({', '.join(t for t in _REFERENCE_TARGETS.values() if t)})."
        )
    return _REFERENCE_TARGETS[name]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RobotConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}.")
    return value


def _parse_motors(value: Any, where: str) -> dict[str, tuple[int, str]]:
    motors = _mapping(value, where)
    if not motors:
        raise RobotConfigError(f"{where} lists no motors; give `motor_name: [id, model]` entries.")
    parsed: dict[str, tuple[int, str]] = {}
    for name, pair in motors.items():
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        if (
            not ok
            or isinstance(pair[0], bool)
            or not isinstance(pair[0], int)
            or not isinstance(pair[1], str)
        ):
            raise RobotConfigError(
                f"{where}.{name} must be `[id, model]` (an integer and a model name, e.g. [1, xl330-m077]), "
                f"got {pair!r}."
            )
        parsed[str(name)] = (int(pair[0]), pair[1])
    return parsed


def _parse_bus(value: Any, where: str) -> MotorsBusConfig:
    bus = dict(_mapping(value, where))
    if "_target_" in bus:
        target_type = _target_type(bus.pop("_target_"), where)
        bus.setdefault("type", target_type)
    unknown = sorted(set(bus) - set(BUS_KEYS))
    if unknown:
        raise RobotConfigError(f"{where}: unknown key(s) {unknown}; an arm has the keys {list(BUS_KEYS)}.")
    bus_type = bus.get("type")
    if bus_type not in BUS_TYPES:
        raise RobotConfigError(f"{where}.type must be one of {list(BUS_TYPES)}, got {bus_type!r}.")
    port = bus.get("port")
    if not isinstance(port, str) or not port:
        raise RobotConfigError(
            f"{where}.port must be the serial port of the arm (e.g. /dev/ttyACM0), got {port!r}. "
            "Find it with `python lerobot/scripts/find_motors_bus_port.py`."
        )
    return MotorsBusConfig(
        type=bus_type, port=port, motors=_parse_motors(bus.get("motors"), f"{where}.motors")
    )


def _parse_camera(value: Any, where: str) -> dict[str, Any]:
    camera = dict(_mapping(value, where))
    if "_target_" in camera:
        target_type = _target_type(camera.pop("_target_"), where)
        camera.setdefault("type", target_type)
    if "type" not in camera:
        raise RobotConfigError(f"{where} needs a `type` (e.g. `type: opencv`).")
    return camera


def _positive_number(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise RobotConfigError(
            f"{where} must be a positive number (degrees, or % for grippers), got {value!r}."
        )
    return float(value)


def _parse_max_relative_target(
    value: Any, followers: dict[str, MotorsBusConfig]
) -> float | list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        return _positive_number(value, "max_relative_target")
    limits = [_positive_number(v, f"max_relative_target[{i}]") for i, v in enumerate(value)]
    for name, arm in followers.items():
        if len(arm.motors) != len(limits):
            raise RobotConfigError(
                f"max_relative_target has {len(limits)} values but follower arm '{name}' has "
                f"{len(arm.motors)} motors {list(arm.motors)}: give one value per motor, or a single number."
            )
    return limits


def _check_arm_pairs(cfg: RobotConfig) -> None:
    """Teleoperation copies leader arm `x` onto follower arm `x`, position by position."""
    if not cfg.leader_arms:
        return
    if set(cfg.leader_arms) != set(cfg.follower_arms):
        raise RobotConfigError(
            f"Leader arms {sorted(cfg.leader_arms)} and follower arms {sorted(cfg.follower_arms)} must have the "
            "same names: each leader drives the follower of its name."
        )
    for name, leader in cfg.leader_arms.items():
        follower = cfg.follower_arms[name]
        if list(leader.motors) != list(follower.motors):
            raise RobotConfigError(
                f"Leader arm '{name}' has the motors {list(leader.motors)} but its follower has "
                f"{list(follower.motors)}: list the same motor names in the same order."
            )


def parse_robot_config(cfg: dict[str, Any]) -> RobotConfig:
    """Check a plain robot config dict (the `robot:` section) and return a `RobotConfig`."""
    cfg = dict(_mapping(cfg, "The robot config"))
    if "_target_" in cfg:
        _target_type(cfg.pop("_target_"), "robot")
    if "robot_type" in cfg:  # the reference implementation's name of `type`
        if "type" in cfg and cfg["type"] != cfg["robot_type"]:
            raise RobotConfigError(
                f"robot: `type: {cfg['type']}` and `robot_type: {cfg['robot_type']}` disagree."
            )
        cfg["type"] = cfg.pop("robot_type")
    unknown = sorted(set(cfg) - set(ROBOT_KEYS))
    if unknown:
        raise RobotConfigError(
            f"robot: unknown key(s) {unknown}; a robot config has the keys {list(ROBOT_KEYS)}."
        )
    robot_type = cfg.get("type")
    if robot_type not in ROBOT_TYPES:
        raise RobotConfigError(f"robot.type must be one of {list(ROBOT_TYPES)}, got {robot_type!r}.")
    calibration_dir = cfg.get("calibration_dir")
    if not isinstance(calibration_dir, str) or not calibration_dir:
        raise RobotConfigError(
            f"robot.calibration_dir must be a folder path (e.g. .cache/calibration/{robot_type}), "
            f"got {calibration_dir!r}."
        )
    leaders = {
        str(name): _parse_bus(arm, f"leader_arms.{name}")
        for name, arm in _mapping(cfg.get("leader_arms"), "leader_arms").items()
    }
    followers = {
        str(name): _parse_bus(arm, f"follower_arms.{name}")
        for name, arm in _mapping(cfg.get("follower_arms"), "follower_arms").items()
    }
    if not followers:
        raise RobotConfigError("robot.follower_arms is empty: a robot needs at least one follower arm.")
    cameras = {
        str(name): _parse_camera(camera, f"cameras.{name}")
        for name, camera in _mapping(cfg.get("cameras"), "cameras").items()
    }
    gripper_open_degree = cfg.get("gripper_open_degree")
    if gripper_open_degree is not None:
        if robot_type not in KOCH_TYPES:
            raise RobotConfigError(
                f"gripper_open_degree is a koch feature (a torqued leader gripper as trigger); the {robot_type} "
                "leader gripper cannot do it. Set `gripper_open_degree: null`."
            )
        if isinstance(gripper_open_degree, bool) or not isinstance(gripper_open_degree, int | float):
            raise RobotConfigError(
                f"gripper_open_degree must be a number of degrees, got {gripper_open_degree!r}."
            )
        gripper_open_degree = float(gripper_open_degree)
        missing = [name for name, arm in leaders.items() if "gripper" not in arm.motors]
        if missing:
            raise RobotConfigError(
                f"gripper_open_degree is set but leader arm(s) {missing} have no 'gripper' motor."
            )
    config = RobotConfig(
        type=robot_type,
        calibration_dir=calibration_dir,
        leader_arms=leaders,
        follower_arms=followers,
        cameras=cameras,
        max_relative_target=_parse_max_relative_target(cfg.get("max_relative_target"), followers),
        gripper_open_degree=gripper_open_degree,
    )
    _check_arm_pairs(config)
    return config
