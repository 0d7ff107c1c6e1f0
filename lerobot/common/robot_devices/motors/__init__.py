"""Motor buses of real arms: Dynamixel (protocol 2.0) and Feetech (STS) servos on a serial port.

The SDKs are optional extras: `pip install 'lerobot[dynamixel]'` / `'lerobot[feetech]'`. They are imported
when a bus connects, so this package imports without them.
"""

from lerobot.common.robot_devices.motors.dynamixel import DynamixelMotorsBus
from lerobot.common.robot_devices.motors.feetech import FeetechMotorsBus

__all__ = ["DynamixelMotorsBus", "FeetechMotorsBus"]
