"""Find the serial port of a motor bus: list the ports, unplug the bus's USB cable, see which port went away.

    python lerobot/scripts/find_motors_bus_port.py

Give the port it prints as `port:` of the arm in the robot config (lerobot/configs/robot/*.yaml), or as
`--port` of configure_motor.py. On Linux you may need read/write access to it (`sudo chmod 666 <port>`,
or add yourself to the `dialout` group).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# After the cable is pulled the operating system takes a moment to remove the device file.
SETTLE_TIMEOUT_S = 3.0
POLL_INTERVAL_S = 0.1


def find_available_ports() -> list[str]:
    """Serial ports: COM ports on Windows, /dev/tty* elsewhere (macOS names USB buses /dev/tty.usbmodem*)."""
    if platform.system() == "Windows":
        from serial.tools import list_ports

        return sorted(port.device for port in list_ports.comports())
    return sorted(str(path) for path in Path("/dev").glob("tty*"))


def find_port(
    list_ports: Callable[[], list[str]] = find_available_ports,
    prompt: Callable[[str], Any] = input,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    output: Callable[[str], Any] = print,
) -> str:
    """Ask the user to unplug the bus, and return the only port that disappeared (OSError otherwise)."""
    output("Finding all available ports for the motor bus.")
    before = list_ports()
    output(f"Ports before disconnecting: {before}")
    prompt("Remove the USB cable from your motor bus and press Enter when done.")
    deadline = time.monotonic() + settle_timeout_s
    while True:
        gone = sorted(set(before) - set(list_ports()))
        if gone or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_S)  # polling the device list: there is no event to wait on
    if not gone:
        raise OSError(
            "Could not detect the port: no port disappeared. Was the USB cable of the bus (not its power) "
            "unplugged? Plug it back in and try again."
        )
    if len(gone) > 1:
        raise OSError(
            f"Could not detect the port: several ports disappeared ({gone}). Unplug only the bus and try again."
        )
    output(f"The port of this motor bus is '{gone[0]}'")
    output("Reconnect the USB cable.")
    return gone[0]


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        description="Find the serial port of a motor bus by unplugging it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    ).parse_args(argv)
    try:
        find_port()
    except OSError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
