"""The emulator behind a real pseudo-terminal: termios baud rates, real pyserial ports, servo motion,
faults, clean-up of threads and fds, the round-trip time and the command line."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from lerobot.common.robot_devices.motors import DynamixelMotorsBus, FeetechMotorsBus
from lerobot.common.robot_devices.motors.emulator import (
    INST_SYNC_READ,
    DynamixelBusEmulator,
    FeetechBusEmulator,
    emulated_serial_ports,
    serve_on_pty,
)
from lerobot.common.robot_devices.motors.pty_port import LockstepSerial, PtyServer, read_baudrate
from lerobot.common.robot_devices.motors.tables import DYNAMIXEL_SPEC, FEETECH_SPEC
from lerobot.common.robot_devices.motors.utils import (
    MotorModelMismatchError,
    MotorNotRespondingError,
    MotorsBusPortError,
    configure_single_motor,
)
from tests.robot_devices.conftest import PORT, make_rig

pytest.importorskip("scservo_sdk")
pytest.importorskip("dynamixel_sdk")

SO100 = {f"m{i}": (i, "sts3215") for i in range(1, 7)}
REPO = Path(__file__).resolve().parents[2]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class _Silent:
    def handle(self, data: bytes, baudrate: int) -> bytes:
        return b""

    def has_partial_packet(self) -> bool:
        return False

    def drop_partial_packet(self) -> None:
        pass


@pytest.mark.parametrize("spec", [DYNAMIXEL_SPEC, FEETECH_SPEC], ids=["dynamixel", "feetech"])
def test_termios_reports_every_baud_rate_pyserial_sets(spec):
    # Rates without a Bxxx constant (128000, 250000) go through termios2/BOTHER: the master must see them too.
    with PtyServer(_Silent()) as server:
        for rate in spec.baudrate_table.values():
            with serial.Serial(port=server.path, baudrate=rate, timeout=0) as port:
                assert read_baudrate(port.fd) == rate
                assert read_baudrate(server._master) == rate


def test_the_sdk_talks_through_a_real_pty(rig):
    bus = rig.connected_bus()
    ser = bus.port_handler.ser
    assert isinstance(ser, serial.serialposix.Serial)
    assert ser.port.startswith("/dev/") and ser.port != PORT
    assert os.isatty(ser.fd) and os.ttyname(ser.fd) == ser.port
    assert read_baudrate(ser.fd) == 1_000_000
    # A ping written on the port comes back as a status packet in the kernel's input queue.
    ser.reset_input_buffer()
    ping = {
        "dynamixel": bytes([0xFF, 0xFF, 0xFD, 0x00, 1, 3, 0, 1, 0x19, 0x4E]),
        "feetech": bytes([0xFF, 0xFF, 1, 2, 1, 0xFB]),
    }[rig.brand]
    assert ser.write(ping) == len(ping)
    assert ser.in_waiting == {"dynamixel": 14, "feetech": 6}[rig.brand]
    assert ser.read(100)[:2] == b"\xff\xff"


@pytest.fixture
def patient_sdk(monkeypatch):
    """Free-running ports race the SDK's packet timeout (~34 ms) against the emulator's scheduling: give a
    loaded CI machine a full second, as one would for a slow USB adapter (the SDK's latency setting)."""
    monkeypatch.setattr("scservo_sdk.port_handler.LATENCY_TIMER", 500)


def test_plain_pyserial_port_without_name_redirect(patient_sdk):
    # serve_on_pty: any client opens the path with the unmodified serial.Serial (free-running timing).
    emulator = FeetechBusEmulator({i: "sts3215" for i in range(1, 7)})
    with serve_on_pty(emulator) as path:
        assert serial.Serial.__module__ == "serial.serialposix"
        bus = FeetechMotorsBus(path, SO100)
        bus.connect()
        assert not isinstance(bus.port_handler.ser, LockstepSerial)
        emulator.set_position(3, 1000)
        assert bus.read("Present_Position").tolist() == [2048, 2048, 1000, 2048, 2048, 2048]
        bus.write("Goal_Position", [100, 200, 300, 400, 500, 600])
        assert bus.read("Goal_Position").tolist() == [100, 200, 300, 400, 500, 600]
        bus.disconnect()


@pytest.mark.parametrize(
    "emulator_cls, bus_cls, model",
    [
        (FeetechBusEmulator, FeetechMotorsBus, "sts3215"),
        (DynamixelBusEmulator, DynamixelMotorsBus, "xl330-m288"),
    ],
    ids=["feetech", "dynamixel"],
)
def test_late_answers_lengthen_the_packet_timeout(emulator_cls, bus_cls, model, caplog):
    # Answers 60 ms late, past the SDKs' first 34 ms timeout (a slow adapter, or a saturated CI machine).
    # Before, each retry read the previous try's late answer as its own, and all 21 tries of the ping failed.
    # The emulator thread shares this process (and 2 cores) with the test runner: a CI machine under full load
    # once starved it for seconds, past even the longest timeout, so the connect gets more tries than the
    # default 21 to ride out such a stall. The timeout's growth itself is checked without threads below.
    emulator = emulator_cls({i: model for i in range(1, 4)}, reply_delay_s=0.06)
    with serve_on_pty(emulator) as path:
        bus = bus_cls(path, {f"m{i}": (i, model) for i in range(1, 4)}, num_retries=100)
        with caplog.at_level(logging.WARNING):
            bus.connect()
        assert bus._latency_ms >= 32  # a 66 ms timeout or more
        assert "an answer came after the packet timeout" in caplog.text
        emulator.set_position(2, 1000)
        assert bus.read("Present_Position").tolist() == [2048, 1000, 2048]
        bus.disconnect()


class _ScriptedPort:
    """A serial port whose input queue holds `arrivals[i]` bytes at the i-th look, then nothing."""

    def __init__(self, arrivals: list[int]):
        self.arrivals = list(arrivals)
        self.flushes = 0

    @property
    def in_waiting(self) -> int:
        return self.arrivals.pop(0) if self.arrivals else 0

    def reset_input_buffer(self) -> None:
        self.flushes += 1


@pytest.mark.parametrize(
    "arrivals, latency_before, latency_after, warned",
    [
        ([], 16.0, 16.0, False),  # the line stayed quiet: nothing was late
        ([0, 0, 6], 16.0, 32.0, True),  # an answer arrived while waiting: twice the timeout from now on
        ([0, 14, 0, 6], 128.0, 256.0, True),  # two late bursts in one wait still double once
        ([6], 256.0, 256.0, False),  # at the bound the timeout grows no more
    ],
)
def test_clear_input_doubles_the_timeout_after_a_late_answer(
    arrivals, latency_before, latency_after, warned, caplog
):
    bus = FeetechMotorsBus("/dev/null", {"m1": (1, "sts3215")})
    port = _ScriptedPort(arrivals)
    bus.port_handler = type("Handler", (), {"ser": port})()
    bus._latency_ms = latency_before
    with caplog.at_level(logging.WARNING):
        bus._clear_input()
    assert bus._latency_ms == latency_after
    assert ("an answer came after the packet timeout" in caplog.text) == warned
    assert port.flushes == 1 + sum(1 for n in arrivals if n)  # every arrival is flushed, not read


def test_a_dead_motor_does_not_lengthen_the_packet_timeout():
    # A lockstep port: every answer is in the input queue before the SDK reads, so nothing can come late
    # (on a free-running port under load, m1's answers may, and rightly lengthen the timeout).
    with emulated_serial_ports({"/dev/ttyDEAD": FeetechBusEmulator({1: "sts3215"})}):
        bus = FeetechMotorsBus("/dev/ttyDEAD", {"m1": (1, "sts3215"), "m2": (2, "sts3215")})
        with pytest.raises(MotorNotRespondingError, match="'m2'"):
            bus.connect()
        assert bus._latency_ms == 16


def test_configure_a_motor_found_at_a_termios2_rate():
    # A factory motor at 128 kbps (no Bxxx constant: pyserial sets it with BOTHER), moved to ID 4 at 1 Mbps.
    with make_rig("feetech", {}) as rig:
        rig.emulator.add_motor(1, "sts3215", baudrate=128_000)
        bus = rig.make_bus({"wrist": (4, "sts3215")})
        bus.connect(check_motors=False)
        assert bus.find_motor_indices([1], num_retry=0) == []  # 1 Mbps: the motor hears noise
        result = configure_single_motor(bus, 4, 1_000_000, "sts3215", scan_ids=[1], scan_baudrates=[128_000])
        assert result["previous_baudrate"] == 128_000
        assert read_baudrate(bus.port_handler.ser.fd) == 1_000_000
        bus.disconnect()
        assert rig.connected_bus(motors={"wrist": (4, "sts3215")}).read("ID").tolist() == [4]
        assert rig.emulator.get_register(4, "Baud_Rate") == 0  # index of 1 Mbps


def test_follower_follows_goals_step_by_step():
    # motion_step: a torqued servo covers at most N steps per read of Present_Position.
    leader = FeetechBusEmulator({i: "sts3215" for i in range(1, 7)})
    follower = FeetechBusEmulator({i: "sts3215" for i in range(1, 7)}, motion_step=100)
    with emulated_serial_ports({"/dev/ttyLEADER": leader, "/dev/ttyFOLLOWER": follower}):
        leader_bus, follower_bus = (
            FeetechMotorsBus("/dev/ttyLEADER", SO100),
            FeetechMotorsBus("/dev/ttyFOLLOWER", SO100),
        )
        leader_bus.connect()
        follower_bus.connect()
        follower_bus.write("Goal_Position", 3000)  # torque off: stored, nothing moves
        assert follower_bus.read("Present_Position").tolist() == [2048] * 6
        follower_bus.write("Torque_Enable", 1)
        # Enabling torque holds the servo where it is, it does not jump to the old goal.
        assert follower.get_register(1, "Goal_Position") == 2048
        for i in range(1, 7):
            leader.set_position(i, 2048 + 250 * (i - 3))  # 1548 ... 2798
        trajectory = []
        for _ in range(8):  # a teleoperation loop
            follower_bus.write("Goal_Position", leader_bus.read("Present_Position"))
            trajectory.append(follower_bus.read("Present_Position"))
        deltas = np.diff(np.array([[2048] * 6, *trajectory]), axis=0)
        assert np.abs(deltas).max() == 100
        np.testing.assert_array_equal(trajectory[-1], leader_bus.read("Present_Position"))
        # Torque off: the goal no longer pulls the joint.
        follower_bus.write("Torque_Enable", 0)
        follower_bus.write("Goal_Position", 0)
        assert follower_bus.read("Present_Position").tolist() == trajectory[-1].tolist()
        leader_bus.disconnect()
        follower_bus.disconnect()


def test_instant_motion_by_default_and_invalid_step():
    emulator = DynamixelBusEmulator({1: "xm430-w350"})
    with emulated_serial_ports({PORT: emulator}):
        bus = DynamixelMotorsBus(PORT, {"wrist": (1, "xm430-w350")})
        bus.connect()
        bus.write("Torque_Enable", 1)
        bus.write("Goal_Position", 3210)
        assert emulator.get_register(1, "Present_Position") == 3210  # no read needed
        bus.disconnect()
    with pytest.raises(ValueError, match="motion_step"):
        DynamixelBusEmulator({1: "xm430-w350"}, motion_step=0)


def test_sync_writes_are_visible_at_once_from_the_test_side(rig):
    # A sync write gets no answer: the test-side methods wait until the emulator has handled it.
    bus = rig.connected_bus()
    for goal in range(1000, 1200):
        bus.write("Goal_Position", goal, "gripper")
        assert rig.emulator.get_register(6, "Goal_Position") == goal


def test_wrong_model_fault(rig):
    rig.emulator.inject_fault("wrong_model", motor_id=2)
    model = rig.motors["shoulder_lift"][1]
    number = rig.make_bus().model_number[model]
    with pytest.raises(
        MotorModelMismatchError, match=f"'shoulder_lift' at ID 2.*reports model number {number + 1}"
    ):
        rig.connected_bus()
    assert rig.connected_bus().is_connected  # a one-off glitch
    if rig.brand == "dynamixel":
        m077 = DYNAMIXEL_SPEC.model_numbers["xl330-m077"]
        rig.emulator.inject_fault("wrong_model", motor_id=6, model_number=m077)
        with pytest.raises(MotorModelMismatchError, match=f"reports model number {m077} \\(xl330-m077\\)"):
            rig.connected_bus()
    with pytest.raises(ValueError, match="only applies to the 'wrong_model'"):
        rig.emulator.inject_fault("timeout", model_number=12)


def test_partial_packet_is_dropped_after_a_silent_gap(rig):
    bus = rig.connected_bus()
    # A header announcing 9 more bytes that never come: kept, it would swallow the start of the next packet.
    truncated = {"dynamixel": b"\xff\xff\xfd\x00\x01\x09\x00\x02", "feetech": b"\xff\xff\x01\x09\x02"}
    bus.port_handler.ser.write(truncated[rig.brand])
    rig.emulator.instructions.clear()  # (waits until the emulator took the bytes in)
    deadline = time.monotonic() + 10
    while rig.emulator.has_partial_packet():
        assert time.monotonic() < deadline, "the truncated packet was never dropped"
        time.sleep(0.01)
    assert bus.read("Present_Position").shape == (6,)
    assert rig.emulator.instructions == [(INST_SYNC_READ, 0xFE)]  # heard at the first try


def test_emulator_failures_reach_the_caller():
    class Broken(FeetechBusEmulator):
        def _execute(self, *args):
            raise ZeroDivisionError("bug in the emulator")

    with emulated_serial_ports({PORT: Broken({1: "sts3215"})}):
        bus = FeetechMotorsBus(PORT, {"a": (1, "sts3215")})
        with pytest.raises(RuntimeError, match="emulator on /dev/.* failed: ZeroDivisionError"):
            bus.connect()


def test_no_leaked_threads_or_fds_after_many_sessions():
    emulator = DynamixelBusEmulator({1: "xl330-m288"})
    threads = fds = None
    for i in range(31):
        if i == 1:  # after a first session (lazy imports and the like)
            threads, fds = threading.active_count(), _open_fds()
        with emulated_serial_ports({PORT: emulator, "/dev/ttyOTHER": FeetechBusEmulator()}):
            bus = DynamixelMotorsBus(PORT, {"gripper": (1, "xl330-m288")})
            bus.connect()
            bus.read("Present_Position")
            bus.disconnect()
        with serve_on_pty(emulator):
            pass
    assert threading.active_count() == threads
    assert _open_fds() == fds
    assert emulator._servers == []
    # Outside the context the name is a missing port again.
    with pytest.raises(MotorsBusPortError, match=PORT):
        DynamixelMotorsBus(PORT, {"gripper": (1, "xl330-m288")}).connect()


@pytest.mark.parametrize("brand", ["dynamixel", "feetech"])
def test_round_trip_of_a_six_motor_sync_read_is_fast(brand):
    # Hundreds of transactions per test must stay quick. A slow path (GIL hand-offs, an SDK packet timeout
    # of ~34 ms per transaction) would show up in the median, with a wide margin for loaded CI machines.
    with make_rig(brand) as rig:
        bus = rig.connected_bus()
        rig.emulator.instructions.clear()
        times = []
        for _ in range(200):
            start = time.perf_counter()
            bus.read("Present_Position")
            times.append(time.perf_counter() - start)
        assert sum(inst == INST_SYNC_READ for inst, _ in rig.emulator.instructions) == 200  # no retries
        assert np.median(times) < 0.015


def _lines(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_command_line_serves_until_ctrl_c(patient_sdk):
    cmd = [sys.executable, "-m", "lerobot.common.robot_devices.motors.emulator", "--brand", "feetech"]
    proc = subprocess.Popen(
        [*cmd, "--motors", "6", "--follow"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(proc.stdout)
        first = lines.get(timeout=60)
        assert "6 x sts3215 (IDs 1-6) on /dev/" in first
        path = first.rsplit(" on ", 1)[1].strip()
        bus = FeetechMotorsBus(path, SO100)  # another process: free-running timing
        bus.connect()
        assert bus.read("Present_Position").tolist() == [2048] * 6
        bus.disconnect()
        while "PING to ID 1" not in lines.get(timeout=60):  # --follow prints the packets
            pass
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Stopped." in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    bad = subprocess.run([*cmd, "--motors", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--motors must be between 1 and 252" in bad.stderr
    bad = subprocess.run(
        [*cmd, "--model", "xl330-m288"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "Unknown feetech model 'xl330-m288'" in bad.stderr
