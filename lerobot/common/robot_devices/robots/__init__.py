"""Robots built from their yaml config (lerobot/configs/robot/): leader and follower arms, cameras, safety.

`make_robot("so100")` returns a `ManipulatorRobot`; `with robot:` connects it (running the guided calibration
for arms without a calibration file) and always disconnects it with torque off.
"""

from lerobot.common.robot_devices.robots.calibration_procedure import CalibrationError, CalibrationFileError
from lerobot.common.robot_devices.robots.configs import RobotConfig, RobotConfigError
from lerobot.common.robot_devices.robots.factory import available_robot_configs, load_robot_config, make_robot
from lerobot.common.robot_devices.robots.manipulator import ManipulatorRobot, RobotDisconnectError

__all__ = [
    "CalibrationError",
    "CalibrationFileError",
    "ManipulatorRobot",
    "RobotConfig",
    "RobotConfigError",
    "RobotDisconnectError",
    "available_robot_configs",
    "load_robot_config",
    "make_robot",
]
