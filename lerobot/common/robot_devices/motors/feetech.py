"""Feetech STS/SCS-series servos (e.g. the STS3215 of SO-100 and Moss arms) through `feetech-servo-sdk`."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.motors.tables import FEETECH_SPEC

# The SCS SDK keeps the byte order in a module global set by PacketHandler(end): 0 = little-endian, which is
# what the STS models use (1 is for the older big-endian SCS models).
PROTOCOL_END = 0


class FeetechMotorsBus(MotorsBus):
    """Example: `FeetechMotorsBus("/dev/ttyACM0", {"shoulder_pan": (1, "sts3215"), ...})`.

    Present_Position of these servos is a 12-bit single-turn reading: the bus tracks turns so that positions
    stay continuous when a joint passes the 4095 <-> 0 boundary.
    """

    spec = FEETECH_SPEC

    def _import_sdk(self) -> ModuleType:
        try:
            import scservo_sdk
        except ImportError as e:
            raise ImportError(
                "FeetechMotorsBus needs the Feetech SDK: `pip install 'lerobot[feetech]'` "
                "(or `pip install feetech-servo-sdk`)."
            ) from e
        return scservo_sdk

    def _make_packet_handler(self, sdk: ModuleType) -> Any:
        return sdk.PacketHandler(PROTOCOL_END)

    def unlock_eeprom(self, motor_models: Sequence[str], motor_ids: Sequence[int]) -> None:
        # With Lock=1 the servo does not keep EEPROM writes (ID, baud rate, limits) across power cycles.
        self.write_with_motor_ids(motor_models, motor_ids, "Lock", 0)

    def lock_eeprom(self, motor_models: Sequence[str], motor_ids: Sequence[int]) -> None:
        self.write_with_motor_ids(motor_models, motor_ids, "Lock", 1)
