"""Brand-independent motor bus: named motors and named registers on top of a vendor SDK.

All packet building, parsing and checksums are the vendor SDK's (`dynamixel_sdk`, `scservo_sdk`): this
class only chooses registers, groups motors into one sync read/write, retries, converts values and applies
the calibration. `DynamixelMotorsBus` and `FeetechMotorsBus` pick the SDK and the brand's tables.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from types import ModuleType
from typing import Any

import numpy as np

from lerobot.common.robot_devices.motors.calibration import (
    apply_calibration,
    revert_calibration,
    validate_calibration,
)
from lerobot.common.robot_devices.motors.tables import (
    MODEL_RESOLUTION,
    POSITION_REGISTERS,
    BrandSpec,
    Register,
)
from lerobot.common.robot_devices.motors.utils import (
    FIND_PORT_HINT,
    MotorCommunicationError,
    MotorModelMismatchError,
    MotorNotRespondingError,
    MotorsBusPortError,
    RobotDeviceAlreadyConnectedError,
    RobotDeviceNotConnectedError,
    UnknownRegisterError,
)

MAX_MOTOR_ID = 252  # 253 is reserved, 254 is the broadcast ID


# A bus whose answers come late (a USB adapter's latency timer, a loaded machine) gets a longer packet timeout,
# doubling each time a late answer is seen, up to this latency allowance (a timeout of about half a second).
MAX_LATENCY_MS = 256.0


class MotorsBus:
    """A serial bus of servos, e.g. `DynamixelMotorsBus("/dev/ttyACM0", {"gripper": (6, "xl330-m288")})`.

    `read`/`write` address registers by name for all motors (or a subset by name) in one group sync packet.
    `Present_Position`/`Goal_Position` are int32 steps, continuous across encoder turns, or float32 degrees /
    percent once `set_calibration` was called.
    """

    spec: BrandSpec  # set by the brand subclasses

    def __init__(
        self,
        port: str,
        motors: dict[str, Sequence[Any]],
        extra_model_control_table: dict[str, dict[str, Register]] | None = None,
        extra_model_resolution: dict[str, int] | None = None,
        extra_model_number: dict[str, int] | None = None,
        baudrate: int | None = None,
        num_retries: int | None = None,
    ):
        self.port = port
        self.model_ctrl_table: dict[str, Any] = {
            **self.spec.control_tables,
            **(extra_model_control_table or {}),
        }
        self.model_resolution = {**MODEL_RESOLUTION, **(extra_model_resolution or {})}
        self.model_number = {**self.spec.model_numbers, **(extra_model_number or {})}
        # Accept any (id, model) pair, e.g. the lists a YAML/Hydra config produces.
        self.motors: dict[str, tuple[int, str]] = {}
        for name, pair in motors.items():
            motor_id, model = int(pair[0]), str(pair[1])
            if model not in self.model_ctrl_table:
                raise ValueError(
                    f"Motor '{name}': unknown {self.spec.name} model '{model}'. "
                    f"Known models: {sorted(self.model_ctrl_table)} (add others with extra_model_control_table)."
                )
            if not 0 <= motor_id <= MAX_MOTOR_ID:
                raise ValueError(f"Motor '{name}': ID {motor_id} is outside [0, {MAX_MOTOR_ID}].")
            self.motors[name] = (motor_id, model)
        ids = [motor_id for motor_id, _ in self.motors.values()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Two motors share an ID on {port}: {self.motors}")
        self.baudrate = baudrate if baudrate is not None else self.spec.default_baudrate
        self.num_retries = self.spec.num_retries if num_retries is None else num_retries
        self.port_handler: Any = None
        self.packet_handler: Any = None
        self.is_connected = False
        self.calibration: dict[str, list] | None = None
        self.logs: dict[str, Any] = {}
        self._readers: dict[tuple, Any] = {}
        self._latency_ms = 16.0  # the SDKs' default latency timer; read from the SDK at connect
        self._reset_turn_tracking()

    # --- brand hooks -----------------------------------------------------------------------------------
    def _import_sdk(self) -> ModuleType:
        raise NotImplementedError

    def _make_packet_handler(self, sdk: ModuleType) -> Any:
        raise NotImplementedError

    def unlock_eeprom(self, motor_models: Sequence[str], motor_ids: Sequence[int]) -> None:
        """Make EEPROM registers (ID, baud rate, limits) writable; nothing to do on Dynamixel."""

    def lock_eeprom(self, motor_models: Sequence[str], motor_ids: Sequence[int]) -> None:
        """Undo `unlock_eeprom`."""

    # --- properties ------------------------------------------------------------------------------------
    @property
    def motor_names(self) -> list[str]:
        return list(self.motors)

    @property
    def motor_models(self) -> list[str]:
        return [model for _, model in self.motors.values()]

    @property
    def motor_indices(self) -> list[int]:
        return [motor_id for motor_id, _ in self.motors.values()]

    @property
    def sdk(self) -> ModuleType:
        return self._import_sdk()

    # --- connection ------------------------------------------------------------------------------------
    def connect(self, check_motors: bool = True) -> None:
        """Open the port; with `check_motors`, ping every motor and check its model number.

        `check_motors=False` is for setting up motors that are not at their configured ID yet.
        """
        if self.is_connected:
            raise RobotDeviceAlreadyConnectedError(
                f"{type(self).__name__}({self.port}) is already connected."
            )
        sdk = self._import_sdk()
        self.port_handler = sdk.PortHandler(self.port)
        self.packet_handler = self._make_packet_handler(sdk)
        self._open_port()
        self.is_connected = True
        self._readers.clear()
        self._reset_turn_tracking()
        if check_motors:
            try:
                self._check_motors()
            except Exception:
                self.disconnect()
                raise

    def _open_port(self) -> None:
        try:
            # setBaudRate opens (or reopens) the port at that rate; openPort() would use the SDK default.
            opened = self.port_handler.setBaudRate(self.baudrate)
        except OSError as e:  # serial.SerialException is an OSError
            raise MotorsBusPortError(
                f"Could not open the motor bus port '{self.port}': {e}. {FIND_PORT_HINT}"
            ) from e
        if not opened:
            raise MotorsBusPortError(
                f"The {self.spec.name} SDK cannot open '{self.port}' at {self.baudrate} baud (unsupported rate)."
            )
        # The SDK's packet timeout is 2 x its module-wide LATENCY_TIMER + 2 ms (+ the bytes' transfer time).
        # This port's allowance starts there and grows when answers come late (see _clear_input).
        module = sys.modules.get(type(self.port_handler).__module__)
        self._latency_ms = float(getattr(module, "LATENCY_TIMER", 16))
        self.port_handler.setPacketTimeout = self._set_packet_timeout

    def _set_packet_timeout(self, packet_length: int) -> None:
        # The SDKs' own formula, with this bus's latency allowance in place of their module constant.
        handler = self.port_handler
        handler.packet_start_time = handler.getCurrentTime()
        handler.packet_timeout = handler.tx_time_per_byte * packet_length + 2.0 * self._latency_ms + 2.0

    def reconnect(self) -> None:
        """Close and reopen the port (e.g. after a USB hiccup), keeping the calibration."""
        if self.is_connected:
            self.port_handler.closePort()
            self.is_connected = False
        self.connect(check_motors=False)

    def disconnect(self) -> None:
        if not self.is_connected:
            raise RobotDeviceNotConnectedError(f"{type(self).__name__}({self.port}) is not connected.")
        self.port_handler.closePort()
        self.port_handler = None
        self.packet_handler = None
        self._readers.clear()
        self.is_connected = False

    def __del__(self) -> None:
        if getattr(self, "is_connected", False):
            # At interpreter shutdown the port may already be gone: nothing sensible left to do then.
            with contextlib.suppress(Exception):
                self.disconnect()

    def _require_connected(self) -> None:
        if not self.is_connected:
            raise RobotDeviceNotConnectedError(
                f"{type(self).__name__}({self.port}) is not connected. Call `connect()` first."
            )

    def ping(self, motor_id: int, num_retry: int | None = None) -> int | None:
        """Model number of the motor answering at `motor_id`, or None when none answers."""
        self._require_connected()
        for attempt in range(1 + (self.num_retries if num_retry is None else num_retry)):
            if attempt:
                # A late answer to the previous try would be read as the answer to the SDK's follow-up
                # model-number read (the Feetech SDK then fails with an IndexError).
                self._clear_input()
            try:
                model_number, comm, _ = self.packet_handler.ping(self.port_handler, motor_id)
            except IndexError:  # the Feetech SDK indexes a truncated model-number reply: a failed try
                continue
            if comm == self.sdk.COMM_SUCCESS:
                return int(model_number)
        return None

    def _check_motors(self) -> None:
        missing, wrong = [], []
        for name, (motor_id, model) in self.motors.items():
            found = self.ping(motor_id)
            if found is None:
                missing.append(f"'{name}' (ID {motor_id}, model {model})")
            elif model in self.model_number and found != self.model_number[model]:
                found_model = [m for m, n in self.model_number.items() if n == found]
                wrong.append(
                    f"'{name}' at ID {motor_id} is configured as {model} (model number "
                    f"{self.model_number[model]}) but reports model number {found}"
                    + (f" ({found_model[0]})" if found_model else "")
                )
        if missing:
            raise MotorNotRespondingError(
                f"No answer from motor(s) {', '.join(missing)} on {self.port} at {self.port_handler.getBaudRate()} "
                "baud. Check power and cables; a new motor needs its ID and baud rate set first with "
                f"`python lerobot/scripts/configure_motor.py --port {self.port} --brand {self.spec.name} ...`."
            )
        if wrong:
            raise MotorModelMismatchError("Wrong motor model: " + "; ".join(wrong) + ".")

    def find_motor_indices(self, possible_ids: Iterable[int] | None = None, num_retry: int = 2) -> list[int]:
        """IDs among `possible_ids` (default 0-252) that answer a ping at the current baud rate."""
        ids = range(MAX_MOTOR_ID + 1) if possible_ids is None else possible_ids
        return [motor_id for motor_id in ids if self.ping(motor_id, num_retry=num_retry) is not None]

    def set_bus_baudrate(self, baudrate: int) -> None:
        """Talk at another baud rate (does not change the motors' own setting: write `Baud_Rate` for that)."""
        self._require_connected()
        if baudrate not in self.spec.baudrate_table.values():
            raise ValueError(
                f"{self.spec.name} motors support {sorted(self.spec.baudrate_table.values())} baud, not {baudrate}."
            )
        if self.port_handler.getBaudRate() != baudrate:
            self.baudrate = baudrate
            self._open_port()

    def set_calibration(self, calibration: dict[str, Any]) -> None:
        """Use this calibration (file format, see `calibration.py`) for the position registers."""
        self.calibration = validate_calibration(calibration, self.motor_names)

    # --- registers -------------------------------------------------------------------------------------
    @staticmethod
    def _labels(ids: Sequence[int], names: Sequence[str] | None) -> list[str]:
        # How error messages call a motor: by name on a configured bus, by ID while setting motors up.
        return [f"'{n}'" for n in names] if names is not None else [f"ID {i}" for i in ids]

    def _register(self, data_name: str, models: Sequence[str], labels: Sequence[str]) -> Register:
        registers = set()
        for model, label in zip(models, labels):
            table = self.model_ctrl_table[model]
            if data_name not in table:
                raise UnknownRegisterError(
                    f"Register '{data_name}' does not exist on model {model} (motor {label}). "
                    f"Its registers: {sorted(table)}"
                )
            registers.add(tuple(table[data_name]))
        if len(registers) > 1:
            raise ValueError(
                f"'{data_name}' sits at different (address, size) {sorted(registers)} on the models {set(models)}: "
                "a sync read/write needs one; read these motors in separate calls."
            )
        return registers.pop()

    def _names(self, motor_names: str | Sequence[str] | None) -> list[str]:
        names = (
            self.motor_names
            if motor_names is None
            else [motor_names]
            if isinstance(motor_names, str)
            else list(motor_names)
        )
        unknown = [name for name in names if name not in self.motors]
        if unknown:
            raise ValueError(f"Unknown motor(s) {unknown} on {self.port}; motors: {self.motor_names}")
        return names

    def _clear_input(self) -> None:
        """Before a retry, drop what is left of the failed exchange, including an answer still on its way.

        The SDKs take any status packet from the right ID as the answer (the Feetech SDK's clearPort only
        flushes the output). Flushing only what has arrived lets a late answer land after the flush: the retry
        then reads it as its own answer and every later try stays one answer behind (a ping "answered" by the
        model-number reply, whose own read then gets the ping's reply), until all retries are spent. So the
        input is flushed until the line has been quiet for as long as a short answer may take. Bytes that
        arrive in that time are a late answer: the packet timeout doubles (up to MAX_LATENCY_MS).
        """
        ser = self.port_handler.ser
        quiet_s = (2.0 * self._latency_ms + 2.0) / 1000.0
        ser.reset_input_buffer()
        late = False
        start = last = time.monotonic()
        # Bounded: a line that never goes quiet (noise, another talker) must not hang the retry.
        while (now := time.monotonic()) - last < quiet_s and now - start < 10 * quiet_s:
            time.sleep(min(0.002, quiet_s / 4))
            if ser.in_waiting:
                ser.reset_input_buffer()
                late = True
                last = time.monotonic()
        if late and self._latency_ms < MAX_LATENCY_MS:
            self._latency_ms = min(2.0 * self._latency_ms, MAX_LATENCY_MS)
            logging.warning(
                f"{type(self).__name__}({self.port}): an answer came after the packet timeout; waiting up to "
                f"{2.0 * self._latency_ms + 2.0:.0f} ms from now on. On real hardware, check the USB adapter's "
                "latency timer (Linux: /sys/bus/usb-serial/devices/*/latency_timer, 1 ms is best)."
            )

    def _sync_read(
        self, ids: list[int], models: list[str], data_name: str, names: list[str] | None, retries: int
    ) -> list[int]:
        labels = self._labels(ids, names)
        address, size = self._register(data_name, models, labels)
        sdk = self.sdk
        key = (data_name, address, size, tuple(ids))
        reader = self._readers.get(key)
        if reader is None:
            reader = sdk.GroupSyncRead(self.port_handler, self.packet_handler, address, size)
            for motor_id in ids:
                reader.addParam(motor_id)
            self._readers[key] = reader
        comm = sdk.COMM_SUCCESS
        for attempt in range(retries + 1):
            if attempt:
                self._clear_input()
            comm = reader.txRxPacket()
            if comm == sdk.COMM_SUCCESS:
                break
        else:
            # The SDK fills the motors' data in order and stops at the first failure, leaving it empty.
            failed = [i for i, motor_id in enumerate(ids) if not reader.data_dict.get(motor_id)]
            i = failed[0] if failed else None
            who = (
                f"motor {labels[i]} (ID {ids[i]}, model {models[i]})" if i is not None else f"motors {labels}"
            )
            raise MotorCommunicationError(
                f"Reading '{data_name}' from {who} on {self.port} failed {retries + 1} times: "
                f"{self.packet_handler.getTxRxResult(comm)}",
                motor_name=names[i] if i is not None and names is not None else None,
                motor_id=ids[i] if i is not None else None,
                data_name=data_name,
            )
        return [
            self.spec.decode(data_name, int(reader.getData(motor_id, address, size)), size)
            for motor_id in ids
        ]

    def _sync_write(
        self,
        ids: list[int],
        models: list[str],
        data_name: str,
        values: Sequence[int],
        names: list[str] | None,
        retries: int,
    ) -> None:
        labels = self._labels(ids, names)
        address, size = self._register(data_name, models, labels)
        sdk = self.sdk
        writer = sdk.GroupSyncWrite(self.port_handler, self.packet_handler, address, size)
        for motor_id, value, label in zip(ids, values, labels):
            try:
                raw = self.spec.encode(data_name, int(value), size)
            except ValueError as e:
                raise ValueError(f"Motor {label}: {e}") from None
            writer.addParam(motor_id, list(raw.to_bytes(size, "little")))
        comm = sdk.COMM_SUCCESS
        for _ in range(retries + 1):
            comm = writer.txPacket()
            if comm == sdk.COMM_SUCCESS:
                return
        raise MotorCommunicationError(
            f"Writing '{data_name}' to motors {labels} on {self.port} failed {retries + 1} times: "
            f"{self.packet_handler.getTxRxResult(comm)}",
            motor_name=None,
            motor_id=None,
            data_name=data_name,
        )

    def read_with_motor_ids(
        self,
        motor_models: Sequence[str],
        motor_ids: Sequence[int],
        data_name: str,
        num_retry: int | None = None,
    ) -> np.ndarray:
        """Raw (decoded, uncalibrated) register values of motors given by ID, e.g. while setting them up."""
        self._require_connected()
        ids, models = [int(i) for i in motor_ids], list(motor_models)
        retries = self.num_retries if num_retry is None else num_retry
        return np.array(self._sync_read(ids, models, data_name, None, retries), dtype=np.int64)

    def write_with_motor_ids(
        self,
        motor_models: Sequence[str],
        motor_ids: Sequence[int],
        data_name: str,
        values: int | Sequence[int] | np.ndarray,
        num_retry: int | None = None,
    ) -> None:
        """Write raw register values to motors given by ID (no calibration)."""
        self._require_connected()
        ids, models = [int(i) for i in motor_ids], list(motor_models)
        values = self._as_values(values, len(ids), data_name)
        retries = self.num_retries if num_retry is None else num_retry
        self._sync_write(ids, models, data_name, self._as_ints(values, data_name), None, retries)

    def read(self, data_name: str, motor_names: str | Sequence[str] | None = None) -> np.ndarray:
        """Read a register of all motors (or the named ones) in one sync read."""
        self._require_connected()
        start = time.perf_counter()
        names = self._names(motor_names)
        ids = [self.motors[n][0] for n in names]
        models = [self.motors[n][1] for n in names]
        values = np.array(
            self._sync_read(ids, models, data_name, names, self.num_retries),
            dtype=np.int64,
        )
        if data_name in POSITION_REGISTERS:
            values = self._unwrap(ids, models, values, update=data_name == "Present_Position").astype(
                np.int32
            )
            if self.calibration is not None:
                res = [self.model_resolution[m] for m in models]
                values = apply_calibration(values, names, self.calibration, res)
        self._log("read", data_name, start)
        return values

    def write(
        self,
        data_name: str,
        values: float | Sequence[float] | np.ndarray,
        motor_names: str | Sequence[str] | None = None,
    ) -> None:
        """Write a register of all motors (or the named ones) in one sync write; a scalar goes to all."""
        self._require_connected()
        start = time.perf_counter()
        names = self._names(motor_names)
        ids = [self.motors[n][0] for n in names]
        models = [self.motors[n][1] for n in names]
        values = self._as_values(values, len(names), data_name)
        if data_name in POSITION_REGISTERS:
            if self.calibration is not None:
                res = [self.model_resolution[m] for m in models]
                values = revert_calibration(values, names, self.calibration, res)
            values = self._to_motor_frame(ids, models, np.round(values).astype(np.int64))
        ints = self._as_ints(values, data_name)
        self._sync_write(ids, models, data_name, ints, names, self.num_retries)
        self._log("write", data_name, start)

    @staticmethod
    def _as_values(values: Any, n: int, data_name: str) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size == 1:
            array = np.repeat(array, n)
        if array.size != n:
            raise ValueError(f"Writing '{data_name}': got {array.size} values for {n} motors.")
        return array

    @staticmethod
    def _as_ints(values: np.ndarray, data_name: str) -> list[int]:
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError(f"Register '{data_name}' takes integers, got {values.tolist()}.")
        return [int(v) for v in values]

    def _log(self, op: str, data_name: str, start: float) -> None:
        self.logs[f"delta_timestamp_s_{op}_{data_name}"] = time.perf_counter() - start
        self.logs[f"timestamp_utc_{op}_{data_name}"] = datetime.now(timezone.utc)

    # --- encoder turns -----------------------------------------------------------------------------------
    def _reset_turn_tracking(self) -> None:
        # Single-turn servos (Feetech) report Present_Position modulo one turn, so a joint passing the
        # 4095 -> 0 boundary would jump by a full turn. Per motor ID we keep the last reported value and the
        # whole turns (in steps) to add to it: a jump of more than half a turn between two readings is taken
        # as the reading wrapping, not as motion (a joint cannot turn half a turn between two reads).
        # Dynamixel X-series count turns themselves (signed 32-bit multi-turn value): trusted as they are.
        self._last_reported: dict[int, int] = {}
        self._turn_offset: dict[int, int] = {}

    def _unwrap(self, ids: list[int], models: list[str], reported: np.ndarray, update: bool) -> np.ndarray:
        if not self.spec.single_turn_positions:
            return reported.astype(np.int64)
        out = np.zeros(len(ids), dtype=np.int64)
        for i, (motor_id, model) in enumerate(zip(ids, models)):
            resolution = self.model_resolution[model]
            raw = int(reported[i])
            offset = self._turn_offset.get(motor_id, 0)
            previous = self._last_reported.get(motor_id)
            if previous is not None:
                if update:
                    offset -= round((raw - previous) / resolution) * resolution
                else:
                    # A goal is taken on the turn nearest to the last present position.
                    offset += round((previous - raw) / resolution) * resolution
            if update:
                self._last_reported[motor_id] = raw
                self._turn_offset[motor_id] = offset
            out[i] = raw + offset
        return out

    def _to_motor_frame(self, ids: list[int], models: list[str], unwrapped: np.ndarray) -> np.ndarray:
        """Continuous goal steps -> what a single-turn motor expects: the tracked turns removed and the goal
        brought into [0, resolution). The servo moves there within its single turn, i.e. a goal across the
        4095 -> 0 boundary is reached the long way round: keep joint ranges away from it (calibration)."""
        if not self.spec.single_turn_positions:
            return unwrapped
        out = np.zeros(len(ids), dtype=np.int64)
        for i, (motor_id, model) in enumerate(zip(ids, models)):
            raw = int(unwrapped[i]) - self._turn_offset.get(motor_id, 0)
            out[i] = raw % self.model_resolution[model]
        return out
