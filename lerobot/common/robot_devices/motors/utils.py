"""Errors of the motor buses, and the single-motor setup (ID and baud rate) that `configure_motor.py` runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lerobot.common.robot_devices.motors.bus import MotorsBus

FIND_PORT_HINT = "Run `python lerobot/scripts/find_motors_bus_port.py` to find the port of your bus."


class RobotDeviceNotConnectedError(ConnectionError):
    """A device is used before `connect()` (or after `disconnect()`)."""


class RobotDeviceAlreadyConnectedError(ConnectionError):
    """`connect()` on a device that is already connected."""


class MotorsBusPortError(ConnectionError):
    """The serial port of a bus cannot be opened (missing, busy, no permission, unsupported baud rate)."""


class MotorNotRespondingError(ConnectionError):
    """A configured motor does not answer a ping at its ID and the bus's baud rate."""


class MotorModelMismatchError(ConnectionError):
    """The motor found at an ID reports another model number than the one configured."""


class UnknownRegisterError(ValueError):
    """A register name that the control table of a motor model does not have."""


class MotorCommunicationError(ConnectionError):
    """A read or write still failed after the bounded number of retries.

    `motor_name`, `motor_id` and `data_name` say which motor and register (motor_name/motor_id are None
    when the failure cannot be pinned to one motor, e.g. a failed transmission).
    """

    def __init__(self, message: str, motor_name: str | None, motor_id: int | None, data_name: str):
        super().__init__(message)
        self.motor_name = motor_name
        self.motor_id = motor_id
        self.data_name = data_name


def configure_single_motor(
    bus: MotorsBus,
    target_id: int,
    target_baudrate: int,
    model: str,
    scan_ids: Iterable[int] = range(1, 10),
    scan_baudrates: Iterable[int] | None = None,
) -> dict[str, int]:
    """Give the only motor plugged on `bus` the ID `target_id` and baud rate `target_baudrate`.

    Scans every baud rate of the brand (or `scan_baudrates`) for motors answering at `scan_ids`; refuses to
    go on when it finds none or more than one (several motors would all take the same ID). Writes the baud
    rate first, then the ID, each with torque off (EEPROM registers), and reads both back at the new
    settings. The bus must be connected (use `connect(check_motors=False)`, the motor is not there yet).
    Returns `{"previous_id", "previous_baudrate", "id", "baudrate"}`.
    """
    baud_table = bus.spec.baudrate_table
    if target_baudrate not in baud_table.values():
        raise ValueError(
            f"{bus.spec.name} motors support the baud rates {sorted(baud_table.values())}, not {target_baudrate}."
        )
    scan_ids = list(scan_ids)
    found: list[tuple[int, int]] = []  # (baudrate, motor id)
    for baudrate in scan_baudrates if scan_baudrates is not None else baud_table.values():
        bus.set_bus_baudrate(baudrate)
        found += [(baudrate, motor_id) for motor_id in bus.find_motor_indices(scan_ids, num_retry=0)]
    if not found:
        raise MotorNotRespondingError(
            f"No {bus.spec.name} motor answered on {bus.port} at IDs {scan_ids} for any baud rate. "
            "Check that exactly one motor is plugged in and powered."
        )
    if len(found) > 1:
        raise RuntimeError(
            f"Found several motors on {bus.port} (baud rate, ID): {found}. Plug in only the motor to configure."
        )
    baudrate, motor_id = found[0]
    bus.set_bus_baudrate(baudrate)
    logging.info(f"Found motor ID {motor_id} at {baudrate} baud on {bus.port}.")

    # EEPROM writes: torque off first (Dynamixel refuses them with torque on), unlocked (Feetech).
    bus.write_with_motor_ids([model], [motor_id], "Torque_Enable", 0)
    bus.unlock_eeprom([model], [motor_id])
    if baudrate != target_baudrate:
        index = next(i for i, rate in baud_table.items() if rate == target_baudrate)
        bus.write_with_motor_ids([model], [motor_id], "Baud_Rate", index)
        bus.set_bus_baudrate(target_baudrate)
    if motor_id != target_id:
        bus.write_with_motor_ids([model], [motor_id], "ID", target_id)
    bus.lock_eeprom([model], [target_id])

    # Sync writes carry no acknowledgment: read back at the new settings to be sure they took.
    read_id = int(bus.read_with_motor_ids([model], [target_id], "ID")[0])
    read_baud = baud_table.get(int(bus.read_with_motor_ids([model], [target_id], "Baud_Rate")[0]))
    if read_id != target_id or read_baud != target_baudrate:
        raise RuntimeError(
            f"Motor setup did not take: reads ID {read_id} at baud rate {read_baud}, "
            f"expected ID {target_id} at {target_baudrate}."
        )
    return {
        "previous_id": motor_id,
        "previous_baudrate": baudrate,
        "id": target_id,
        "baudrate": target_baudrate,
    }
