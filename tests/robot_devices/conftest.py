"""Motor buses against emulated motors: the vendor SDKs run for real and open a real pseudo-terminal, whose
other side the emulator serves (`emulated_serial_ports` redirects the port name `PORT` to it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from lerobot.common.robot_devices.motors import DynamixelMotorsBus, FeetechMotorsBus
from lerobot.common.robot_devices.motors.bus import MotorsBus
from lerobot.common.robot_devices.motors.emulator import (
    DynamixelBusEmulator,
    FeetechBusEmulator,
    MotorBusEmulator,
    emulated_serial_ports,
)

PORT = "/dev/ttyEMULATED0"

# A Koch-like mixed bus for Dynamixel (every supported model once), an SO-100 bus for Feetech.
BRANDS: dict[str, dict[str, Any]] = {
    "dynamixel": {
        "sdk": "dynamixel_sdk",
        "bus": DynamixelMotorsBus,
        "emulator": DynamixelBusEmulator,
        "motors": {
            "shoulder_pan": (1, "xl430-w250"),
            "shoulder_lift": (2, "xm430-w350"),
            "elbow_flex": (3, "xm540-w270"),
            "wrist_flex": (4, "xc430-w150"),
            "wrist_roll": (5, "xl330-m077"),
            "gripper": (6, "xl330-m288"),
        },
        "model_register": "Model_Number",
    },
    "feetech": {
        "sdk": "scservo_sdk",
        "bus": FeetechMotorsBus,
        "emulator": FeetechBusEmulator,
        "motors": {
            name: (i + 1, "sts3215")
            for i, name in enumerate(
                ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
            )
        },
        "model_register": "Model",
    },
}


@dataclass
class Rig:
    """One brand's bus class, an emulated bus holding the configured motors, and the buses made from it."""

    brand: str
    bus_cls: type[MotorsBus]
    emulator: MotorBusEmulator
    motors: dict[str, tuple[int, str]]
    model_register: str
    buses: list[MotorsBus] = field(default_factory=list)

    def make_bus(self, motors: dict | None = None, port: str = PORT, **kwargs: Any) -> MotorsBus:
        bus = self.bus_cls(port, self.motors if motors is None else motors, **kwargs)
        self.buses.append(bus)
        return bus

    def connected_bus(self, **kwargs: Any) -> MotorsBus:
        bus = self.make_bus(**kwargs)
        bus.connect()
        return bus


@contextmanager
def make_rig(brand: str, motors: dict[str, tuple[int, str]] | None = None) -> Iterator[Rig]:
    info = BRANDS[brand]
    pytest.importorskip(info["sdk"])
    motors = info["motors"] if motors is None else motors
    emulator = info["emulator"]({motor_id: model for motor_id, model in motors.values()})
    rig = Rig(brand, info["bus"], emulator, motors, info["model_register"])
    with emulated_serial_ports({PORT: emulator}):
        try:
            yield rig
        finally:
            for bus in rig.buses:
                if bus.is_connected:
                    bus.disconnect()


@pytest.fixture(params=list(BRANDS))
def rig(request):
    with make_rig(request.param) as rig:
        yield rig
