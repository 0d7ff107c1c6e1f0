"""Keyboard controls of a recording: right arrow ends the episode (or the reset) early, left arrow re-records
the episode, Esc stops the recording. Letters work too: `n` next, `r` re-record, `q` stop.

Two ways to listen, because neither works everywhere:

- `pynput` (optional, not a core dependency): global hooks, so keys work whichever window has the focus (e.g. a
  camera window). It needs an X11 display, macOS accessibility permission or Windows, and silently hears nothing
  under Wayland or over SSH -- the most common "my arrow keys do nothing" report about the reference.
- the terminal: stdin switched to cbreak mode (no line buffering, no echo) and read on a thread. Works over SSH
  and under Wayland, as long as the terminal that runs the script has the focus.

`auto` picks pynput on a local X11/macOS/Windows session when it is installed, else the terminal; when stdin is
not a terminal (CI, tests, a pipe) there are no controls and the loop simply runs on time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

NEXT, RERECORD, STOP = "next", "rerecord", "stop"
ESC = 0x1B
# Final bytes of CSI (`ESC [ ... X`) and SS3 (`ESC O X`) sequences: arrows right/left. Others are ignored.
ARROW_ACTIONS = {ord("C"): NEXT, ord("D"): RERECORD}
LETTER_ACTIONS = {ord("n"): NEXT, ord("N"): NEXT, ord("r"): RERECORD, ord("R"): RERECORD}
LETTER_ACTIONS.update({ord("q"): STOP, ord("Q"): STOP})
KEY_HELP = "right arrow / n: end the episode or reset early | left arrow / r: re-record | Esc / q: stop"
MODES = ("auto", "pynput", "terminal", "off")


class ControlEvents:
    """The flags the keyboard sets and the control loop reads and clears.

    Set from the listener thread, read by the loop: plain booleans are enough (one writer per flag, and the
    loop only needs to see a key press within a step), plus an Event so that tests and waits can block on it.
    """

    def __init__(self) -> None:
        self.exit_early = False
        self.rerecord_episode = False
        self.stop_recording = False
        self._changed = threading.Event()

    def apply(self, action: str) -> None:
        if action == NEXT:
            self.exit_early = True
        elif action == RERECORD:
            self.rerecord_episode = True
            self.exit_early = True
        elif action == STOP:
            self.stop_recording = True
            self.exit_early = True
        else:
            raise ValueError(f"Unknown control action {action!r}; expected one of {NEXT, RERECORD, STOP}.")
        log.info("Key: %s", action)
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        """Block until a key was handled (True) or `timeout` seconds passed (False); resets the signal."""
        changed = self._changed.wait(timeout)
        self._changed.clear()
        return changed


class TerminalKeyDecoder:
    """Turns the bytes a terminal sends in cbreak mode into control actions.

    Arrows arrive as escape sequences (`ESC [ C`, or `ESC O C` in application-cursor mode, or with modifiers
    `ESC [ 1 ; 5 C`), and the Esc key as a lone ESC byte. A lone ESC cannot be told from the start of a
    sequence until the next bytes come (or do not): the reader calls `flush()` when nothing followed within a
    short pause, which turns a pending lone ESC into STOP.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def feed(self, data: bytes) -> list[str]:
        actions: list[str] = []
        self._pending += data
        while self._pending:
            consumed, action = self._parse(bytes(self._pending))
            if consumed == 0:  # an incomplete escape sequence: wait for more bytes
                break
            del self._pending[:consumed]
            if action is not None:
                actions.append(action)
        return actions

    def flush(self) -> list[str]:
        """Nothing more arrived: a pending lone ESC was the Esc key; a truncated sequence is dropped."""
        pending, self._pending = bytes(self._pending), bytearray()
        return [STOP] if pending == bytes([ESC]) else []

    @staticmethod
    def _parse(buf: bytes) -> tuple[int, str | None]:
        """(bytes consumed, action or None) for the key at the start of `buf`; (0, None) if incomplete."""
        first = buf[0]
        if first != ESC:
            return 1, LETTER_ACTIONS.get(first)
        if len(buf) == 1:
            return 0, None
        second = buf[1]
        if second == ord("O"):  # SS3: exactly one more byte
            if len(buf) < 3:
                return 0, None
            return 3, ARROW_ACTIONS.get(buf[2])
        if second == ord("["):  # CSI: parameter bytes 0x20-0x3F, then one final byte 0x40-0x7E
            for i in range(2, len(buf)):
                if 0x40 <= buf[i] <= 0x7E:
                    return i + 1, ARROW_ACTIONS.get(buf[i])
                if not 0x20 <= buf[i] <= 0x3F:  # not a valid sequence: drop what we have so far
                    return i, None
            return 0, None
        # ESC followed by an ordinary byte: the Esc key, then that byte on its own (typed fast, or Alt+key).
        return 1, STOP


class KeyboardControls:
    """A running listener (or none); `stop()` ends it and restores the terminal. Also a context manager."""

    def __init__(self, mode: str, stopper: Any = None) -> None:
        self.mode = mode
        self._stopper = stopper

    def stop(self) -> None:
        stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper()

    def __enter__(self) -> KeyboardControls:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TerminalListener:
    """Reads single keys from a terminal file descriptor on a daemon thread (POSIX only).

    The terminal is put in cbreak mode (keys delivered at once, not echoed; Ctrl+C still interrupts) and
    restored by `stop()`. A self-pipe wakes the thread up so that `stop()` returns at once.
    """

    ESC_PAUSE_S = 0.05  # how long after an ESC byte a sequence's next byte may take before ESC means Esc

    def __init__(self, fd: int, events: ControlEvents) -> None:
        import termios
        import tty

        self.fd = fd
        self.events = events
        self.decoder = TerminalKeyDecoder()
        self._saved = termios.tcgetattr(fd)
        self._wake_r, self._wake_w = os.pipe()
        tty.setcbreak(fd, termios.TCSANOW)
        self._thread = threading.Thread(target=self._run, name="terminal-keys", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            timeout = self.ESC_PAUSE_S if self.decoder.pending else None
            readable, _, _ = select.select([self.fd, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                return
            if not readable:
                actions = self.decoder.flush()
            else:
                try:
                    data = os.read(self.fd, 64)
                except OSError:  # the terminal went away (e.g. SSH dropped): no more keys
                    return
                if not data:
                    return
                actions = self.decoder.feed(data)
            for action in actions:
                self.events.apply(action)

    def stop(self) -> None:
        import termios

        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        os.close(self._wake_r)
        os.close(self._wake_w)


def display_available() -> bool:
    """Whether a local graphical session can be reached (so cv2 windows and pynput hooks can work)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def global_hooks_work() -> bool:
    """Whether pynput's global hooks can hear this user's keys: not under Wayland, not over SSH."""
    if sys.platform in ("darwin", "win32"):
        return not os.environ.get("SSH_CONNECTION")
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False  # keys typed into an SSH client reach the terminal, not this machine's X server
    if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return False  # pynput sees only XWayland windows' keys there
    return bool(os.environ.get("DISPLAY"))


def pynput_importable() -> bool:
    try:
        import pynput.keyboard  # noqa: F401
    except Exception:  # ImportError, or pynput failing to find a backend (it raises at import)
        return False
    return True


def is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def in_background(fd: int) -> bool:
    """Whether we are a background job of the terminal `fd` (e.g. started with `&`): changing its mode would
    stop the process (SIGTTOU). A terminal that is not our controlling one has no such rule."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except (OSError, AttributeError):  # not our controlling terminal; or Windows, which has no job control
        return False


def choose_mode(mode: str, stdin_fd: int | None) -> str:
    """The backend `mode` resolves to here: "pynput", "terminal" or "off"."""
    if mode not in MODES:
        raise ValueError(f"Keyboard mode {mode!r} is not one of {MODES}.")
    tty_ok = stdin_fd is not None and is_tty(stdin_fd) and os.name == "posix" and not in_background(stdin_fd)
    if mode == "auto":
        if stdin_fd is None or not is_tty(stdin_fd):
            return "off"
        if global_hooks_work() and pynput_importable():
            return "pynput"
        return "terminal" if tty_ok else "off"
    if mode == "terminal" and not tty_ok:
        raise RuntimeError(
            "--keyboard terminal needs stdin to be a terminal on Linux or macOS, with the command in the "
            "foreground (not piped, not started with &); or use --keyboard pynput / off."
        )
    if mode == "pynput" and not pynput_importable():
        raise RuntimeError(
            "--keyboard pynput needs the pynput package (`pip install pynput`) and a display; "
            "or use --keyboard terminal."
        )
    return mode


def start_keyboard_controls(
    events: ControlEvents, mode: str = "auto", stdin_fd: int | None = None
) -> KeyboardControls:
    """Start listening for the control keys; returns the running controls (call `stop()` when done).

    `stdin_fd` defaults to the process's stdin.
    """
    if stdin_fd is None:
        try:
            stdin_fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):  # replaced or closed stdin (pytest capture, daemons)
            stdin_fd = None
    chosen = choose_mode(mode, stdin_fd)
    if chosen == "pynput":
        controls = _start_pynput(events)
    elif chosen == "terminal":
        listener = TerminalListener(stdin_fd, events)
        controls = KeyboardControls("terminal", listener.stop)
    else:
        controls = KeyboardControls("off")
    if controls.mode == "off":
        log.info("Keyboard controls are off (stdin is not a terminal): every period runs for its full time.")
    else:
        where = "anywhere (global hooks)" if controls.mode == "pynput" else "in this terminal"
        log.info("Keyboard controls (%s, keys %s): %s", controls.mode, where, KEY_HELP)
    return controls


def _start_pynput(events: ControlEvents) -> KeyboardControls:
    from pynput import keyboard

    special = {keyboard.Key.right: NEXT, keyboard.Key.left: RERECORD, keyboard.Key.esc: STOP}
    letters = {chr(code): action for code, action in LETTER_ACTIONS.items()}

    def on_press(key: Any) -> None:
        action = special.get(key) or letters.get(getattr(key, "char", None) or "")
        if action is not None:
            events.apply(action)

    listener = keyboard.Listener(on_press=on_press)
    listener.start()
    return KeyboardControls("pynput", listener.stop)


@contextlib.contextmanager
def keyboard_controls(events: ControlEvents, mode: str = "auto") -> Iterator[KeyboardControls]:
    """`with keyboard_controls(events) as controls:` -- always stops the listener and restores the terminal."""
    controls = start_keyboard_controls(events, mode)
    try:
        yield controls
    finally:
        controls.stop()
