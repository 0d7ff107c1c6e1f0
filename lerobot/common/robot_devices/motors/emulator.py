"""Emulated motor buses served on pseudo-terminals: the vendor SDKs talk to them through a real serial port.

Used to test (and demo) the buses without hardware: the SDK's `PortHandler` opens a pty slave (`/dev/pts/N`)
with the real pyserial, and a thread answers on the master side (see `pty_port.py`). Packets, checksums,
sync read/write, termios baud rates, timeouts and input flushes all run for real.

- `DynamixelBusEmulator`: protocol 2.0 packets (header FF FF FD 00, byte stuffing, CRC-16).
- `FeetechBusEmulator`: SCS protocol packets (header FF FF, one-byte inverted-sum checksum).

Each emulated motor holds its register memory (model number, ID, baud rate, torque, goal/present position,
...), answers only at its own baud rate (read from the pty's termios), and applies ID/baud changes after
answering. While its torque is on, Present_Position goes to Goal_Position: at once (default) or, with
`motion_step=N`, by at most N steps each time the motor answers a read of Present_Position. Enabling torque
makes a servo hold where it is (Goal_Position := Present_Position), so it never jumps to a stale goal.

Faults can be queued: a motor that stays silent (timeout), a status packet with a wrong checksum, a failed
transmission (ports opened through `emulated_serial_ports` only: it is the adapter that fails), a motor
reporting a wrong model number.

Entry points: `emulated_serial_ports({name: emulator})` (tests: `serial.Serial(port=name)` opens that
emulator's pty), `serve_on_pty(emulator)` (yields the pty path), and the command line
`python -m lerobot.common.robot_devices.motors.emulator --brand feetech --motors 6` (serves until Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from lerobot.common.robot_devices.motors.tables import (
    DYNAMIXEL_EEPROM_END,
    DYNAMIXEL_SPEC,
    FEETECH_SPEC,
    MODEL_RESOLUTION,
    BrandSpec,
)

INST_PING, INST_READ, INST_WRITE, INST_SYNC_READ, INST_SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST_ID = 0xFE
DXL_STATUS = 0x55
DXL_ERR_INSTRUCTION, DXL_ERR_ACCESS = 2, 7
FAULT_KINDS = ("timeout", "corrupt", "tx_fail", "wrong_model")


def crc16_dynamixel(data: bytes | Sequence[int]) -> int:
    """CRC-16 of protocol 2.0 (polynomial 0x8005, initial value 0, no reflection), bit by bit."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@dataclass
class EmulatedMotor:
    model: str
    memory: bytearray
    moving: bool = False  # torque on and Present_Position still on its way to Goal_Position


@dataclass
class _Fault:
    kind: str
    motor_id: int | None
    remaining: int
    model_number: int | None = None


class MotorBusEmulator:
    """The motors on one emulated bus. Subclasses implement the packet framing of their protocol.

    The methods of the physical side (what a test, or a hand moving the arm, does) first wait until the
    emulator has handled what the SDK sent, so that a test reading a register right after a sync write (which
    gets no answer) sees the write. The pty thread calls `handle`; both sides share the motors under a lock.
    """

    spec: BrandSpec
    param_width = 1  # bytes per address / length field in READ and SYNC packets

    def __init__(
        self,
        motors: dict[int, str] | None = None,
        baudrate: int | None = None,
        motion_step: int | None = None,
        reply_delay_s: float = 0.0,
    ):
        if motion_step is not None and motion_step <= 0:
            raise ValueError(
                f"motion_step must be a positive number of steps (or None: at once), not {motion_step}."
            )
        if not 0.0 <= reply_delay_s <= 10.0:
            raise ValueError(f"reply_delay_s must be between 0 and 10 seconds, not {reply_delay_s}.")
        self.motion_step = motion_step
        # Answers leave this long after their request (a slow USB adapter or a loaded machine).
        self.reply_delay_s = reply_delay_s
        self.motors: list[EmulatedMotor] = []
        self._instructions: list[tuple[int, int]] = []  # (instruction, packet ID) of every packet received
        self._faults: list[_Fault] = []
        self._inbox = bytearray()
        self._lock = threading.RLock()
        self._servers: list = []  # PtyServers this emulator answers on
        for motor_id, model in (motors or {}).items():
            self.add_motor(motor_id, model, baudrate=baudrate)

    # --- the physical side ---------------------------------------------------------------------------------
    @property
    def instructions(self) -> list[tuple[int, int]]:
        """(instruction, packet ID) of every packet received so far (clear it to count from now on)."""
        self._settle()
        return self._instructions

    def add_motor(self, motor_id: int, model: str, baudrate: int | None = None, position: int = 2048) -> None:
        if model not in self.spec.control_tables:
            raise ValueError(
                f"Unknown {self.spec.name} model {model!r}; emulated models: {sorted(self.spec.control_tables)}."
            )
        rate = self.spec.default_baudrate if baudrate is None else baudrate
        if rate not in self.spec.baudrate_table.values():
            raise ValueError(
                f"{self.spec.name} motors support {sorted(self.spec.baudrate_table.values())} baud, not {rate}."
            )
        self._settle()
        motor = EmulatedMotor(model=model, memory=bytearray(256))
        baud_index = next(i for i, r in self.spec.baudrate_table.items() if r == rate)
        address, size = self.spec.model_number_register
        motor.memory[address : address + size] = self.spec.model_numbers[model].to_bytes(size, "little")
        for name, value in {**self._defaults(), "ID": motor_id, "Baud_Rate": baud_index}.items():
            self._poke(motor, name, value)
        if self.spec.single_turn_positions:
            position %= MODEL_RESOLUTION[model]
        self._poke(motor, "Present_Position", position)
        self._poke(motor, "Goal_Position", position)
        with self._lock:
            self.motors.append(motor)

    def remove_motor(self, motor_id: int) -> None:
        self._settle()
        with self._lock:
            self.motors.remove(self._find(motor_id))

    def motor(self, motor_id: int) -> EmulatedMotor:
        self._settle()
        with self._lock:
            return self._find(motor_id)

    def get_register(self, motor_id: int, name: str) -> int:
        self._settle()
        with self._lock:
            return self._peek(self._find(motor_id), name)

    def set_register(self, motor_id: int, name: str, value: int) -> None:
        """Set a register directly (bypasses the protocol and the motor's write rules)."""
        self._settle()
        with self._lock:
            self._poke(self._find(motor_id), name, value)

    def set_position(self, motor_id: int, steps: int) -> None:
        """Move the joint by hand: single-turn encoders report it modulo one turn. The motor stops moving
        toward its goal (until the next goal is written)."""
        self._settle()
        with self._lock:
            motor = self._find(motor_id)
            if self.spec.single_turn_positions:
                steps %= MODEL_RESOLUTION[motor.model]
            self._poke(motor, "Present_Position", steps)
            motor.moving = False

    def inject_fault(
        self, kind: str, motor_id: int | None = None, count: int = 1, model_number: int | None = None
    ) -> None:
        """Queue `count` faults: "timeout" (the motor does not answer), "corrupt" (its status packet gets a
        wrong checksum), "tx_fail" (the port's write sends nothing and reports 0 bytes; ports opened through
        `emulated_serial_ports` only), or "wrong_model" (its answer to a ping / model number read carries
        `model_number`, by default its own plus one, a model the bus does not know).
        `motor_id=None`: whichever motor answers next. A silent motor (timeout) uses up no other fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; use one of {FAULT_KINDS}.")
        if model_number is not None and kind != "wrong_model":
            raise ValueError(f"model_number only applies to the 'wrong_model' fault, not {kind!r}.")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}.")
        self._settle()
        with self._lock:
            self._faults.append(_Fault(kind, motor_id, count, model_number))

    def clear_faults(self) -> None:
        """Forget the faults still queued (the line is clean again)."""
        self._settle()
        with self._lock:
            self._faults.clear()

    def _settle(self) -> None:
        for server in list(self._servers):
            server.settle()

    # --- the pty side (called by the server thread, see pty_port.PacketEndpoint) ------------------------------
    def handle(self, data: bytes, baudrate: int) -> bytes:
        """Feed bytes received at `baudrate`; returns the status packets the motors send back."""
        out = bytearray()
        with self._lock:
            self._inbox += data
            while (packet := self._next_packet()) is not None:
                motor_id, instruction, params = packet
                self._instructions.append((instruction, motor_id))
                self._execute(out, baudrate, motor_id, instruction, params)
        return bytes(out)

    def has_partial_packet(self) -> bool:
        return len(self._inbox) > 0

    def drop_partial_packet(self) -> None:
        # A servo resets its packet parser after a silent gap: a truncated packet must not swallow the next.
        with self._lock:
            self._inbox.clear()

    def take_tx_fault(self) -> bool:
        with self._lock:
            return self._take_fault("tx_fail", None) is not None

    # --- the protocol side ---------------------------------------------------------------------------------
    def _defaults(self) -> dict[str, int]:
        return {}

    def _find(self, motor_id: int) -> EmulatedMotor:
        found = [m for m in self.motors if self._id(m) == motor_id]
        if len(found) != 1:
            raise KeyError(f"{len(found)} emulated motors have ID {motor_id}.")
        return found[0]

    def _id(self, motor: EmulatedMotor) -> int:
        address, _ = self.spec.control_tables[motor.model]["ID"]
        return motor.memory[address]

    def _baudrate(self, motor: EmulatedMotor) -> int:
        address, _ = self.spec.control_tables[motor.model]["Baud_Rate"]
        return self.spec.baudrate_table.get(motor.memory[address], -1)

    def _poke(self, motor: EmulatedMotor, name: str, value: int) -> None:
        address, size = self.spec.control_tables[motor.model][name]
        motor.memory[address : address + size] = self.spec.encode(name, value, size).to_bytes(size, "little")

    def _peek(self, motor: EmulatedMotor, name: str) -> int:
        address, size = self.spec.control_tables[motor.model][name]
        return self.spec.decode(name, int.from_bytes(motor.memory[address : address + size], "little"), size)

    def _covers(self, motor: EmulatedMotor, name: str, address: int, length: int) -> bool:
        start, size = self.spec.control_tables[motor.model][name]
        return address < start + size and start < address + length

    def _take_fault(self, kind: str, motor_id: int | None) -> _Fault | None:
        for fault in self._faults:
            if fault.kind == kind and fault.remaining > 0 and fault.motor_id in (None, motor_id):
                fault.remaining -= 1
                return fault
        return None

    def _execute(
        self, out: bytearray, baudrate: int, packet_id: int, instruction: int, params: bytes
    ) -> None:
        # Motors only decode packets sent at their own baud rate.
        listening = [m for m in self.motors if self._baudrate(m) == baudrate]
        w = self.param_width
        if instruction in (INST_SYNC_READ, INST_SYNC_WRITE):
            address = int.from_bytes(params[:w], "little")
            length = int.from_bytes(params[w : 2 * w], "little")
            body = params[2 * w :]
            if instruction == INST_SYNC_READ:
                for motor_id in body:  # motors answer one after the other, in the requested order
                    for motor in [m for m in listening if self._id(m) == motor_id]:
                        if self._answers(motor):
                            self._send_status(out, motor, 0, self._read_memory(motor, address, length))
            else:
                for k in range(0, len(body) - length, length + 1):
                    for motor in [m for m in listening if self._id(m) == body[k]]:
                        self._write_memory(motor, address, body[k + 1 : k + 1 + length])
            return
        targets = [m for m in listening if packet_id in (self._id(m), BROADCAST_ID)]
        for motor in targets:
            answer = packet_id != BROADCAST_ID or instruction == INST_PING
            if instruction == INST_PING:
                if self._answers(motor):
                    self._send_status(out, motor, 0, self._ping_params(motor))
            elif instruction == INST_READ:
                address = int.from_bytes(params[:w], "little")
                length = int.from_bytes(params[w : 2 * w], "little")
                if self._answers(motor):
                    self._send_status(out, motor, 0, self._read_memory(motor, address, length))
            elif instruction == INST_WRITE:
                address = int.from_bytes(params[:w], "little")
                # The status goes out with the old ID, at the old rate, before a change takes effect.
                error = self._write_error(motor, address)
                if answer and self._answers(motor):
                    self._send_status(out, motor, error, b"")
                if error == 0:
                    self._write_memory(motor, address, params[w:])
            elif answer and self._answers(motor):
                self._send_status(out, motor, DXL_ERR_INSTRUCTION, b"")

    def _read_memory(self, motor: EmulatedMotor, address: int, length: int) -> bytes:
        """What a read of `length` bytes at `address` returns (advancing a moving joint by one step first)."""
        if self._covers(motor, "Present_Position", address, length):
            self._advance(motor)
        data = bytearray(motor.memory[address : address + length])
        model_address, model_size = self.spec.model_number_register
        if address <= model_address and model_address + model_size <= address + length:
            fault = self._take_fault("wrong_model", self._id(motor))
            if fault is not None:
                number = fault.model_number
                if number is None:
                    number = (
                        int.from_bytes(motor.memory[model_address : model_address + model_size], "little") + 1
                    )
                start = model_address - address
                data[start : start + model_size] = number.to_bytes(model_size, "little")
        return bytes(data)

    def _write_memory(self, motor: EmulatedMotor, address: int, data: bytes) -> None:
        """Store `data` at `address` if the motor's rules allow it (a sync write gets no status to refuse)."""
        if self._write_error(motor, address):
            return
        torque_was_on = self._peek(motor, "Torque_Enable") != 0
        motor.memory[address : address + len(data)] = data
        torque_on = self._peek(motor, "Torque_Enable") != 0
        if not torque_on:
            motor.moving = False
        elif self._covers(motor, "Goal_Position", address, len(data)):
            motor.moving = True
            if self.motion_step is None:
                self._advance(motor)  # the emulated servo reaches its goal at once
        elif not torque_was_on:
            # Torque just came on: the servo holds its present position instead of jumping to an old goal.
            self._poke(motor, "Goal_Position", self._peek(motor, "Present_Position"))
            motor.moving = False

    def _advance(self, motor: EmulatedMotor) -> None:
        if not motor.moving:
            return
        present, goal = self._peek(motor, "Present_Position"), self._peek(motor, "Goal_Position")
        step = goal - present
        if self.motion_step is not None:
            step = max(-self.motion_step, min(self.motion_step, step))
        self._poke(motor, "Present_Position", present + step)
        motor.moving = present + step != goal

    def _write_error(self, motor: EmulatedMotor, address: int) -> int:
        """Protocol error code a write at `address` gets (0: accepted)."""
        return 0

    def _answers(self, motor: EmulatedMotor) -> bool:
        """False when a queued timeout fault keeps the motor silent this time."""
        return self._take_fault("timeout", self._id(motor)) is None

    def _send_status(self, out: bytearray, motor: EmulatedMotor, error: int, params: bytes) -> None:
        motor_id = self._id(motor)
        packet = bytearray(self._status_packet(motor_id, error, params))
        if self._take_fault("corrupt", motor_id):
            packet[-1] ^= 0xFF
        out += packet

    # Protocol specifics.
    def _next_packet(self) -> tuple[int, int, bytes] | None:
        raise NotImplementedError

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        raise NotImplementedError

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        raise NotImplementedError


class DynamixelBusEmulator(MotorBusEmulator):
    """X-series motors speaking protocol 2.0."""

    spec = DYNAMIXEL_SPEC
    param_width = 2

    def _defaults(self) -> dict[str, int]:
        return {
            "Firmware_Version": 52,
            "Operating_Mode": 3,
            "Max_Position_Limit": 4095,
            "Position_P_Gain": 800,
        }

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        return self._read_memory(motor, 0, 2) + bytes(motor.memory[6:7])  # model number, firmware version

    def _write_error(self, motor: EmulatedMotor, address: int) -> int:
        torque_address, _ = self.spec.control_tables[motor.model]["Torque_Enable"]
        return DXL_ERR_ACCESS if address < DYNAMIXEL_EEPROM_END and motor.memory[torque_address] else 0

    def _next_packet(self) -> tuple[int, int, bytes] | None:
        box = self._inbox
        start = box.find(b"\xff\xff\xfd\x00")
        if start < 0:
            del box[: max(0, len(box) - 3)]
            return None
        del box[:start]
        if len(box) < 7:
            return None
        length = int.from_bytes(box[5:7], "little")
        if len(box) < 7 + length:
            return None
        packet = bytes(box[: 7 + length])
        del box[: 7 + length]
        if crc16_dynamixel(packet[:-2]) != int.from_bytes(packet[-2:], "little"):
            return self._next_packet()  # a real motor drops a packet with a bad CRC
        body = packet[7:-2].replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")  # remove byte stuffing
        return packet[4], body[0], body[1:]

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        # Byte stuffing: an FF FF FD inside the packet gets an extra FD so it is not taken for a header.
        body = (bytes([DXL_STATUS, error]) + params).replace(b"\xff\xff\xfd", b"\xff\xff\xfd\xfd")
        head = b"\xff\xff\xfd\x00" + bytes([motor_id]) + (len(body) + 2).to_bytes(2, "little")
        packet = head + body
        return packet + crc16_dynamixel(packet).to_bytes(2, "little")


class FeetechBusEmulator(MotorBusEmulator):
    """STS-series servos speaking the SCS protocol."""

    spec = FEETECH_SPEC
    param_width = 1

    def _defaults(self) -> dict[str, int]:
        return {"Max_Angle_Limit": 4095, "P_Coefficient": 32, "D_Coefficient": 32, "Lock": 1}

    def _ping_params(self, motor: EmulatedMotor) -> bytes:
        return b""  # the SDK reads the model number with a separate READ

    def _next_packet(self) -> tuple[int, int, bytes] | None:
        box = self._inbox
        start = box.find(b"\xff\xff")
        if start < 0:
            del box[: max(0, len(box) - 1)]
            return None
        del box[:start]
        if len(box) < 4:
            return None
        length = box[3]
        if len(box) < 4 + length:
            return None
        packet = bytes(box[: 4 + length])
        del box[: 4 + length]
        if (~sum(packet[2:-1])) & 0xFF != packet[-1]:
            return self._next_packet()
        return packet[2], packet[4], packet[5:-1]

    def _status_packet(self, motor_id: int, error: int, params: bytes) -> bytes:
        body = bytes([motor_id, len(params) + 2, error]) + params
        return b"\xff\xff" + body + bytes([(~sum(body)) & 0xFF])


@contextmanager
def serve_on_pty(emulator: MotorBusEmulator) -> Iterator[str]:
    """Serve `emulator` on a new pseudo-terminal; yields its path (e.g. `/dev/pts/3`) for any serial client.

    A plain `serial.Serial(path)` runs free (see `pty_port.py`): fine for a demo or a tolerant client; tests
    wanting exact fault counts use `emulated_serial_ports`."""
    with _served(emulator) as server:
        yield server.path


@contextmanager
def _served(emulator: MotorBusEmulator) -> Iterator:
    # Imported here: pty_port needs POSIX terminals, the packet emulation does not.
    from lerobot.common.robot_devices.motors.pty_port import PtyServer

    with PtyServer(emulator) as server:
        emulator._servers.append(server)
        try:
            yield server
        finally:
            emulator._servers.remove(server)


@contextmanager
def emulated_serial_ports(buses: dict[str, MotorBusEmulator]) -> Iterator[dict[str, MotorBusEmulator]]:
    """Within this context, `serial.Serial(port=name, ...)` opens the pty served by the emulator registered
    for `name` (a real pyserial port kept in step with the emulator, see `pty_port.LockstepSerial`); other
    ports open for real (so a missing port fails as it would on hardware)."""
    import serial

    from lerobot.common.robot_devices.motors.pty_port import LockstepSerial

    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(_served(emulator)) for name, emulator in buses.items()}
        previous = serial.Serial

        def open_port(*args, **kwargs):
            port = args[0] if args else kwargs.get("port")
            if port not in servers:
                return previous(*args, **kwargs)
            if args:
                args = (servers[port].path, *args[1:])
            else:
                kwargs["port"] = servers[port].path
            return LockstepSerial(*args, server=servers[port], tx_fault=buses[port].take_tx_fault, **kwargs)

        serial.Serial = open_port
        try:
            yield buses
        finally:
            serial.Serial = previous


BRANDS: dict[str, type[MotorBusEmulator]] = {"dynamixel": DynamixelBusEmulator, "feetech": FeetechBusEmulator}
DEFAULT_MODELS = {"dynamixel": "xl330-m288", "feetech": "sts3215"}


def main(argv: Sequence[str] | None = None) -> None:
    """Serve an emulated bus until Ctrl-C, e.g. to try `control_robot.py` without hardware."""
    parser = argparse.ArgumentParser(
        prog="python -m lerobot.common.robot_devices.motors.emulator",
        description="Serve emulated motors on a pseudo-terminal; give the printed path as the bus port.",
    )
    parser.add_argument("--brand", choices=sorted(BRANDS), required=True)
    parser.add_argument("--motors", type=int, default=6, help="number of motors, IDs 1..N (default 6)")
    parser.add_argument("--model", help="model of every motor (default: xl330-m288 / sts3215)")
    parser.add_argument("--baudrate", type=int, help="baud rate of the motors (default: the brand's 1 Mbps)")
    parser.add_argument(
        "--motion-step",
        type=int,
        help="a torqued motor moves at most this many steps toward its goal per read (default: at once)",
    )
    parser.add_argument(
        "--reply-delay-ms",
        type=float,
        default=0.0,
        help="answer this many ms late, like a slow USB adapter (the SDKs time out after ~34 ms at first)",
    )
    parser.add_argument("--follow", action="store_true", help="print every packet received, as it comes")
    args = parser.parse_args(argv)
    model = args.model or DEFAULT_MODELS[args.brand]
    if not 1 <= args.motors <= 252:
        parser.error(f"--motors must be between 1 and 252, not {args.motors}.")
    try:
        emulator = BRANDS[args.brand](
            {i: model for i in range(1, args.motors + 1)},
            baudrate=args.baudrate,
            motion_step=args.motion_step,
            reply_delay_s=args.reply_delay_ms / 1000.0,
        )
    except (KeyError, ValueError) as e:
        parser.error(str(e))
    with serve_on_pty(emulator) as path:
        print(
            f"Emulated {args.brand} bus: {args.motors} x {model} (IDs 1-{args.motors}) on {path}", flush=True
        )
        print("Ctrl-C to stop.", flush=True)
        try:
            _serve_forever(emulator, args.follow)
        except KeyboardInterrupt:
            print("Stopped.", file=sys.stderr)


def _serve_forever(emulator: MotorBusEmulator, follow: bool) -> None:
    names = {INST_PING: "PING", INST_READ: "READ", INST_WRITE: "WRITE"}
    names |= {INST_SYNC_READ: "SYNC_READ", INST_SYNC_WRITE: "SYNC_WRITE"}
    while True:  # until Ctrl-C
        time.sleep(0.2)
        # Emptied as it goes: a session of hours at 200 Hz must not grow the log without bound.
        with emulator._lock:
            received = list(emulator._instructions)
            emulator._instructions.clear()
        for instruction, packet_id in received if follow else []:
            print(f"{names.get(instruction, f'0x{instruction:02X}')} to ID {packet_id}", flush=True)


if __name__ == "__main__":
    main()
