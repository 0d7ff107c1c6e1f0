"""Give a new motor its ID and baud rate, one motor at a time, before it is assembled into an arm.

    python lerobot/scripts/configure_motor.py --port /dev/ttyACM0 --brand feetech --model sts3215 --baudrate 1000000 --ID 1

Plug only the motor to configure on the bus (daisy-chained motors would all take the same ID): the script
looks for it at every baud rate of the brand, refuses to go on when it finds several motors (or none),
then writes the baud rate, then the ID, and reads both back.

Feetech servos get two more settings, as the reference does: their hardware offset is cleared (the
calibration is done in software) and their acceleration cap raised; then the servo turns to the middle of
its range (2048), so that it is mounted with the whole travel of its joint away from the 4095 -> 0 wrap.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from lerobot.common.robot_devices.motors import DynamixelMotorsBus, FeetechMotorsBus
from lerobot.common.robot_devices.motors.bus import MAX_MOTOR_ID, MotorsBus
from lerobot.common.robot_devices.motors.utils import configure_single_motor

BUS_CLASSES: dict[str, type[MotorsBus]] = {"dynamixel": DynamixelMotorsBus, "feetech": FeetechMotorsBus}
FEETECH_CENTER = 2048
FEETECH_MAX_ACCELERATION = 254
CENTERING_TOLERANCE = 10  # steps
CENTERING_TIMEOUT_S = 10.0


def parse_ids(text: str) -> list[int]:
    """`"1-6"`, `"1,3,5"`, `"0-252"` -> IDs to look for the motor at."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            ids += list(range(int(low), int(high) + 1)) if high else [int(low)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"IDs must look like '1-6' or '1,3,5', got {text!r}.") from None
    if not ids or any(not 0 <= i <= MAX_MOTOR_ID for i in ids):
        raise argparse.ArgumentTypeError(f"IDs must be between 0 and {MAX_MOTOR_ID}, got {text!r}.")
    return ids


def _center_feetech_motor(bus: MotorsBus, model: str, motor_id: int, timeout_s: float) -> int:
    """Turn the servo to the middle of its range and release it; return where it stopped."""
    bus.unlock_eeprom([model], [motor_id])
    bus.write_with_motor_ids([model], [motor_id], "Offset", 0)
    bus.write_with_motor_ids([model], [motor_id], "Maximum_Acceleration", FEETECH_MAX_ACCELERATION)
    bus.lock_eeprom([model], [motor_id])
    bus.write_with_motor_ids([model], [motor_id], "Torque_Enable", 1)
    bus.write_with_motor_ids([model], [motor_id], "Goal_Position", FEETECH_CENTER)
    deadline = time.monotonic() + timeout_s
    position = int(bus.read_with_motor_ids([model], [motor_id], "Present_Position")[0])
    while abs(position - FEETECH_CENTER) > CENTERING_TOLERANCE and time.monotonic() < deadline:
        time.sleep(0.05)  # the servo is turning: poll its position
        position = int(bus.read_with_motor_ids([model], [motor_id], "Present_Position")[0])
    bus.write_with_motor_ids([model], [motor_id], "Torque_Enable", 0)
    if abs(position - FEETECH_CENTER) > CENTERING_TOLERANCE:
        logging.warning(
            f"The motor stopped at {position} instead of {FEETECH_CENTER}: is its horn blocked? Free it and run "
            "the script again before assembling it."
        )
    return position


def configure_motor(
    port: str,
    brand: str,
    model: str,
    motor_id: int,
    baudrate: int,
    scan_ids: Sequence[int] = range(MAX_MOTOR_ID + 1),
    centering_timeout_s: float = CENTERING_TIMEOUT_S,
) -> dict[str, int]:
    """Set the ID and baud rate of the only motor on `port` (see the module docstring); returns
    `{"previous_id", "previous_baudrate", "id", "baudrate"}` (+ `"position"` for Feetech)."""
    if brand not in BUS_CLASSES:
        raise ValueError(f"Unknown brand {brand!r}: use one of {sorted(BUS_CLASSES)}.")
    bus = BUS_CLASSES[brand](port, {"motor": (motor_id, model)})
    bus.connect(check_motors=False)  # the motor is not at its new ID yet
    try:
        result = configure_single_motor(bus, motor_id, baudrate, model, scan_ids=scan_ids)
        if brand == "feetech":
            result["position"] = _center_feetech_motor(bus, model, motor_id, centering_timeout_s)
    finally:
        bus.disconnect()
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Set the ID and baud rate of a single motor plugged on a bus.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--port", required=True, help="serial port of the bus (e.g. /dev/ttyACM0)")
    parser.add_argument("--brand", required=True, choices=sorted(BUS_CLASSES), help="motor brand")
    parser.add_argument("--model", required=True, help="motor model (e.g. xl330-m077, sts3215)")
    parser.add_argument("--ID", type=int, required=True, help="ID to give the motor (e.g. 1 to 6)")
    parser.add_argument(
        "--baudrate", type=int, default=1_000_000, help="baud rate to give it (default 1000000)"
    )
    parser.add_argument(
        "--scan-ids",
        type=parse_ids,
        default=list(range(MAX_MOTOR_ID + 1)),
        help=f"IDs to look for the motor at (default 0-{MAX_MOTOR_ID}; e.g. 1-6 is faster for a known motor)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    models = BUS_CLASSES[args.brand].spec.control_tables
    if args.model not in models:
        parser.error(f"--model {args.model!r} is not a {args.brand} model; known models: {sorted(models)}.")
    if not 0 <= args.ID <= MAX_MOTOR_ID:
        parser.error(f"--ID must be between 0 and {MAX_MOTOR_ID}, got {args.ID}.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = configure_motor(args.port, args.brand, args.model, args.ID, args.baudrate, args.scan_ids)
    except (ConnectionError, ValueError, RuntimeError, ImportError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(
        f"Motor configured: ID {result['previous_id']} -> {result['id']}, baud rate {result['previous_baudrate']} "
        f"-> {result['baudrate']}"
        + (f", at position {result['position']}" if "position" in result else "")
        + "."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
