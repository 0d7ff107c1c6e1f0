"""Dynamixel X-series motors (protocol 2.0) through ROBOTIS's `dynamixel-sdk`."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.motors.tables import DYNAMIXEL_SPEC

PROTOCOL_VERSION = 2.0


class DynamixelMotorsBus(MotorsBus):
    """Example: `DynamixelMotorsBus("/dev/ttyACM0", {"shoulder_pan": (1, "xl430-w250"), ...})`, then
    `connect()`, `read("Present_Position")`, `write("Goal_Position", values)`, `disconnect()`.

    Supported models: xl330-m077, xl330-m288, xl430-w250, xm430-w350, xm540-w270, xc430-w150.
    """

    spec = DYNAMIXEL_SPEC

    def _import_sdk(self) -> ModuleType:
        try:
            import dynamixel_sdk
        except ImportError as e:
            raise ImportError(
                "DynamixelMotorsBus needs the Dynamixel SDK: `pip install 'lerobot[dynamixel]'` "
                "(or `pip install dynamixel-sdk`)."
            ) from e
        return dynamixel_sdk

    def _make_packet_handler(self, sdk: ModuleType) -> Any:
        return sdk.PacketHandler(PROTOCOL_VERSION)
