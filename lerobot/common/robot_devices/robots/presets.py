"""Motor settings each robot needs before it moves (operating modes, gains, limits), as the reference sets them.

These are written at every connection, with torque off (several are EEPROM registers that the motors
refuse to change with torque on), so an arm behaves the same whatever another program left in its motors.
"""

from __future__ import annotations

from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.robots.configs import KOCH_TYPES, RobotConfig

# Dynamixel operating modes. Extended position: a joint may turn past 360 degrees without its reading
# jumping (an arm assembled with a motor near 0 / 4095 would otherwise wrap at a crucial point).
# Current-based position: the gripper closes on an object with limited force, and a torqued leader gripper
# springs back to its goal when released.
EXTENDED_POSITION_MODE = 4
CURRENT_BASED_POSITION_MODE = 5

# Trossen Robotics' advice for the Aloha follower arms.
ALOHA_FOLLOWER_VELOCITY_LIMIT = 131


def _set_dynamixel_modes(arm: MotorsBus) -> None:
    others = [name for name in arm.motor_names if name != "gripper"]
    if others:
        arm.write("Operating_Mode", EXTENDED_POSITION_MODE, others)
    if "gripper" in arm.motor_names:
        arm.write("Operating_Mode", CURRENT_BASED_POSITION_MODE, "gripper")


def _koch_preset(config: RobotConfig, leaders: dict[str, MotorsBus], followers: dict[str, MotorsBus]) -> None:
    for arm in followers.values():
        _set_dynamixel_modes(arm)
        if "elbow_flex" in arm.motor_names:
            # Stiffer elbow: closes the gap between the recorded states and the actions.
            arm.write("Position_P_Gain", 1500, "elbow_flex")
            arm.write("Position_I_Gain", 0, "elbow_flex")
            arm.write("Position_D_Gain", 600, "elbow_flex")
    if config.gripper_open_degree is not None:
        for arm in leaders.values():
            _set_dynamixel_modes(arm)


def _aloha_preset(
    config: RobotConfig, leaders: dict[str, MotorsBus], followers: dict[str, MotorsBus]
) -> None:
    for arm in [*followers.values(), *leaders.values()]:
        # Shoulder and elbow have two motors each: the shadow also listens to its partner's ID, so that
        # both always get the same goal and never fight each other.
        for joint in ("shoulder", "elbow"):
            if f"{joint}_shadow" in arm.motor_names and joint in arm.motor_names:
                arm.write("Secondary_ID", int(arm.read("ID", joint)[0]), f"{joint}_shadow")
    for arm in followers.values():
        arm.write("Velocity_Limit", ALOHA_FOLLOWER_VELOCITY_LIMIT)
        # The leader gripper (xc430-w150) has no current-based mode: only the followers get one.
        _set_dynamixel_modes(arm)


def _so100_preset(
    config: RobotConfig, leaders: dict[str, MotorsBus], followers: dict[str, MotorsBus]
) -> None:
    for arm in followers.values():
        arm.write("Mode", 0)  # position control
        arm.write("P_Coefficient", 16)  # half the default of 32: less shaking
        arm.write("I_Coefficient", 0)
        arm.write("D_Coefficient", 32)
        # Unlocked, Maximum_Acceleration goes to EEPROM (it only takes effect from there after a reboot).
        # This register is not in the published STS3215 table; 254 speeds up acceleration and braking.
        arm.write("Lock", 0)
        arm.write("Maximum_Acceleration", 254)
        arm.write("Acceleration", 254)


def apply_robot_preset(
    config: RobotConfig, leaders: dict[str, MotorsBus], followers: dict[str, MotorsBus]
) -> None:
    """Write the robot type's motor settings; every motor must have its torque off."""
    if config.type in KOCH_TYPES:
        _koch_preset(config, leaders, followers)
    elif config.type == "aloha":
        _aloha_preset(config, leaders, followers)
    elif config.type in ("so100", "moss"):
        _so100_preset(config, leaders, followers)
    else:
        raise NotImplementedError(f"No motor preset for robot type '{config.type}'.")
