"""A pseudo-terminal that an emulated motor bus answers on, so the vendor SDKs talk through a real serial port.

The SDK opens the pty's slave side (`/dev/pts/N`) with the real pyserial: termios settings (the baud rate
included, custom rates such as 1 Mbps through termios2), non-blocking reads, `in_waiting` and input flushes
are the kernel's. A background thread reads the request bytes from the master side, blocked in `select()`
(no polling, no GIL held while idle), hands them to the emulator and writes its status packets back.

Two ways to open the slave:

- Plain `serial.Serial(path)` (`serve_on_pty`, the command line): free-running, like a USB adapter. The SDK's
  packet timeout (about 34 ms) runs against the emulator thread's scheduling: on a heavily loaded machine an
  answer can come too late and the SDK reports a timeout, as it would with a slow adapter (`MotorsBus` then
  retries with a longer timeout once it has seen a late answer).
- `LockstepSerial` (what `emulated_serial_ports` hands out): the same bytes through the same pty, but before
  each read the port waits until the emulator has processed every byte written to it and its answer is in
  the port's input queue. Tests then see exactly the faults they inject, however loaded the machine is.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, Protocol

from serial.serialposix import Serial as PosixSerial

# Linux termios2: pyserial sets rates without a Bxxx constant (e.g. 128000, 250000) with BOTHER and the rate
# in c_ispeed/c_ospeed, which plain tcgetattr cannot report. Layout as pyserial uses it: ints 9 and 10.
TCGETS2 = getattr(termios, "TCGETS2", 0x802C542A)
BOTHER = 0o010000
_TERMIOS2_OSPEED_INDEX = 10
_SPEED_CONSTANTS = {
    getattr(termios, name): int(name[1:]) for name in dir(termios) if re.fullmatch(r"B\d+", name)
}

# How long a reader waits for the emulator before concluding that it is stuck (a bug, not a slow answer).
CATCH_UP_TIMEOUT_S = 10.0
# A partial packet left on the line for this long is dropped, as a servo resets its parser after a gap.
PARTIAL_PACKET_TIMEOUT_S = 0.05
_READ_CHUNK = 4096


class PacketEndpoint(Protocol):
    """What answers on the pty: bytes in, status bytes out."""

    def handle(self, data: bytes, baudrate: int) -> bytes: ...

    def has_partial_packet(self) -> bool: ...

    def drop_partial_packet(self) -> None: ...


def read_baudrate(fd: int) -> int:
    """Baud rate the terminal of `fd` is set to (either side of a pty: the master reports the slave's)."""
    _, _, cflag, _, _, ospeed, _ = termios.tcgetattr(fd)
    if sys.platform.startswith("linux"):
        if cflag & termios.CBAUD == BOTHER:
            buf = struct.pack("64i", *([0] * 64))
            buf = fcntl.ioctl(fd, TCGETS2, buf)
            return struct.unpack("64i", buf)[_TERMIOS2_OSPEED_INDEX]
        return _SPEED_CONSTANTS.get(cflag & termios.CBAUD, 0)
    return int(ospeed)  # BSD / macOS: speed_t is the rate itself


def _bytes_waiting(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


class PtyServer:
    """A pty whose master side a thread serves with `endpoint`. Use as a context manager; `path` is the
    slave device to open. Counters (bytes written by lockstep ports, bytes processed, bytes answered) let
    readers and the emulator's test-side methods wait until everything sent so far has been handled."""

    def __init__(self, endpoint: PacketEndpoint):
        if os.name != "posix":
            raise NotImplementedError("Emulated motor buses need POSIX pseudo-terminals (Linux or macOS).")
        self._endpoint = endpoint
        try:
            self._master, self._slave = os.openpty()
        except OSError as e:
            raise OSError(
                f"Cannot create a pseudo-terminal for the motor emulator ({e}). In a container, mount "
                "/dev/pts (devpts) or run the emulator where /dev/ptmx is available."
            ) from e
        # The emulator keeps its own slave fd open so that the pty lives across the SDK closing and reopening
        # the port (with no slave open, master reads fail with EIO). Raw mode at once: an echoing terminal
        # would send the emulator's answers back to it before pyserial configures the port.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._cond = threading.Condition()
        self._sent = self._processed = self._replied = self._consumed = 0
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self.thread = threading.Thread(target=self._serve, name=f"motor-emulator {self.path}", daemon=True)

    def __enter__(self) -> PtyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.thread.is_alive():
            os.write(self._wake_w, b"x")
            self.thread.join(CATCH_UP_TIMEOUT_S)
        with self._cond:
            self._cond.notify_all()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    # --- the emulator side ---------------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while True:
                # Only a partial packet needs a wake-up without input (to drop it after a gap).
                idle = PARTIAL_PACKET_TIMEOUT_S if self._endpoint.has_partial_packet() else None
                ready, _, _ = select.select([self._master, self._wake_r], [], [], idle)
                if self._wake_r in ready:
                    return
                if not ready:
                    self._endpoint.drop_partial_packet()
                    continue
                try:
                    data = os.read(self._master, _READ_CHUNK)
                except BlockingIOError:
                    continue
                with self._cond:
                    self._busy = True
                reply = self._endpoint.handle(data, read_baudrate(self._master))
                if reply and (delay := getattr(self._endpoint, "reply_delay_s", 0.0)):
                    time.sleep(delay)
                written = self._send(reply)
                with self._cond:
                    self._busy = False
                    self._processed += len(data)
                    self._replied += written
                    self._cond.notify_all()
        except BaseException as e:  # surfaced to the reader waiting for an answer, not lost in a thread
            with self._cond:
                self._error = e
                self._busy = False
                self._cond.notify_all()

    def _send(self, reply: bytes) -> int:
        # A full input queue (nobody reading the port) drops the rest, as a real line would.
        written = 0
        while written < len(reply):
            try:
                written += os.write(self._master, reply[written:])
            except BlockingIOError:
                break
        return written

    # --- waiting for the emulator -------------------------------------------------------------------------
    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            done = self._cond.wait_for(
                lambda: predicate() or self._error is not None or self._closed, CATCH_UP_TIMEOUT_S
            )
            if self._error is not None:
                raise RuntimeError(
                    f"The motor emulator on {self.path} failed: {self._error!r}"
                ) from self._error
            if not done:
                raise TimeoutError(
                    f"The motor emulator on {self.path} did not {what} within {CATCH_UP_TIMEOUT_S} s."
                )

    def catch_up(self) -> None:
        """Wait until every byte written through lockstep ports was processed and the answers can be read."""
        self._wait(lambda: self._processed >= self._sent, "process the request")
        if self._closed:
            return
        with self._cond:
            expected = self._replied - self._consumed
        # The kernel moves written bytes to the reading side asynchronously (a work queue): wait for them.
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while (waiting := _bytes_waiting(self._slave)) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"The answer of the motor emulator on {self.path} did not arrive.")
            if waiting == 0:
                select.select([self._slave], [], [], remaining)
            else:
                time.sleep(5e-5)

    def settle(self) -> None:
        """Wait until the emulator has handled what was sent to it: exact for lockstep ports; for other ports,
        until the master side has no unread byte (a write still in the kernel's queue can be missed)."""
        if threading.current_thread() is self.thread or self._closed:
            return
        self._wait(lambda: self._processed >= self._sent, "process the request")
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while not self._closed and (self._busy or _bytes_waiting(self._master) > 0):
            if time.monotonic() > deadline:
                raise TimeoutError(f"The motor emulator on {self.path} did not go idle.")
            time.sleep(1e-4)

    # --- bookkeeping of lockstep ports ----------------------------------------------------------------------
    def note_sent(self, n: int) -> None:
        with self._cond:
            self._sent += n

    def note_read(self, n: int) -> None:
        with self._cond:
            self._consumed += n

    def note_flushed(self) -> None:
        """The port's input queue was emptied: every answer so far is gone (catch_up ran just before)."""
        with self._cond:
            self._consumed = self._replied


class LockstepSerial(PosixSerial):
    """pyserial's own port on the pty slave, kept in step with the emulator (see the module docstring).

    `tx_fault()` returning True makes one write fail: nothing goes out and `write` reports 0 bytes, which
    the SDKs see as a failed transmission (a USB adapter refusing a write).
    """

    def __init__(
        self, *args: Any, server: PtyServer, tx_fault: Callable[[], bool] | None = None, **kwargs: Any
    ):
        self._server = server
        self._tx_fault = tx_fault
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        self._server.catch_up()
        super().open()  # flushes the input queue
        self._server.note_flushed()

    def _reconfigure_port(self, *args: Any, **kwargs: Any) -> None:
        # pyserial's hook that applies termios settings: requests already written must be heard at the
        # baud rate they were sent at, before a new rate takes effect.
        self._server.catch_up()
        super()._reconfigure_port(*args, **kwargs)

    def close(self) -> None:
        try:
            if self.is_open:
                self._server.catch_up()  # like a UART draining its output before the port closes
        finally:
            super().close()

    @property
    def in_waiting(self) -> int:
        self._server.catch_up()
        return super().in_waiting

    def read(self, size: int = 1) -> bytes:
        self._server.catch_up()
        data = super().read(size)
        self._server.note_read(len(data))
        return data

    def reset_input_buffer(self) -> None:
        self._server.catch_up()
        super().reset_input_buffer()
        self._server.note_flushed()

    def write(self, data: Any) -> int:
        if self._tx_fault is not None and self._tx_fault():
            return 0
        written = super().write(data)
        self._server.note_sent(written)
        return written
