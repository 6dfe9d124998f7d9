"""serial (alias tty): a host serial device or any pyserial URL, through pyserial.

A plain device (a real tty, a pty slave) is driven from its fd on the I/O loop, exactly
like the fd family. A path that is no terminal at all (QEMU's own test uses /dev/null) is
accepted as QEMU accepts it: its fd moves the bytes, line settings and breaks are
acknowledged but not applied (logged once), and it has no modem lines. URL ports without a pollable fd (loop://, socket://, rfc2217://,
spy://) get one small reader thread that reads only while the frontend has room. Line
parameters, break and modem lines map to pyserial's port API, so URL handlers that carry
them (rfc2217, loop) see them too.
"""

from __future__ import annotations

import errno
import logging
import os
import termios
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import serial

from ..configbase import BackendConfig
from ..qemuopts import STR, BackendOptions, Opts, QapiReader, Split
from ..types import ChardevError, ChardevEvent, ChardevIoctl, SerialParams, Tiocm
from .fd import FdChardev

log = logging.getLogger("e2kchar.chardev.serial")  # its name before the move to backends/

#: the rates QEMU's tty_serial_init knows, ascending
STANDARD_RATES = (50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
                  38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000,
                  1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000)

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 2: serial.STOPBITS_TWO}
_READ_TIMEOUT = 0.1


def qemu_speed(speed: int) -> int:
    """QEMU's rule: the smallest standard rate >= speed*10/11, else 115200."""
    target = speed * 10 // 11
    for rate in STANDARD_RATES:
        if target <= rate:
            return rate
    return 115200


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    args: tuple[object, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(exc)


@dataclass(kw_only=True)
class SerialConfig(BackendConfig):
    """A host tty or any pyserial URL (loop://, socket://, rfc2217://, spy://)."""

    TYPE: ClassVar[str] = "serial"
    device: str


class SerialChardev(FdChardev[SerialConfig]):
    """QEMU's chardev-serial on top of pyserial."""

    TYPE = "serial"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.port: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._rx_lock = threading.Lock()
        self._rx = bytearray()
        self._want = 0
        self._wake = threading.Event()
        self._failed = False

    # -- open / close ------------------------------------------------------------------

    def open(self) -> bool:
        url = self.config.device
        try:
            port = serial.serial_for_url(url, do_not_open=True)
            port.baudrate = 115200
            port.bytesize = serial.EIGHTBITS
            port.parity = serial.PARITY_NONE
            port.stopbits = serial.STOPBITS_ONE
            port.timeout = _READ_TIMEOUT
            port.write_timeout = 1.0
            port.open()
        except Exception as exc:  # URL handlers raise assorted errors (KeyError, ...)
            if isinstance(exc, serial.SerialException) and self._open_non_tty(url):
                return True
            raise ChardevError(f"Could not open '{url}': {_reason(exc)}") from None
        self.port = port
        self.filename = "serial"
        if type(port) is serial.Serial and getattr(port, "fd", None) is not None:
            # a real tty: event-driven on its fd (pyserial owns and closes it)
            self.set_fds(port.fd, port.fd, [])
        else:
            self._thread = threading.Thread(target=self._reader, name=f"serial-{self.label}",
                                            daemon=True)
            self._thread.start()
        return True

    def _open_non_tty(self, path: str) -> bool:
        """pyserial refused the path: if it opens and is no terminal (its termios setup
        failed), take it as a plain fd, as QEMU does; otherwise pyserial's error stands."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        if os.isatty(fd):
            os.close(fd)
            return False
        self.filename = "serial"
        self.set_fds(fd, fd, [fd])
        log.info("%s: %s is not a terminal: line settings and breaks are not applied, "
                 "and it has no modem lines", self.label, path)
        return True

    def chr_close(self) -> None:
        super().chr_close()
        port, self.port = self.port, None
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(2.0)
            if thread.is_alive():
                log.warning("%s: serial reader thread did not stop", self.label)
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # pyserial URL handlers raise assorted errors
                log.warning("%s: closing the port failed: %s", self.label, exc)

    # -- output for fd-less ports --------------------------------------------------------

    def chr_write(self, data: memoryview) -> int:
        if self.out_fd >= 0 or self._thread is None:
            return super().chr_write(data)
        port = self.port
        if port is None:
            return len(data)
        try:
            n = port.write(bytes(data))
        except serial.SerialTimeoutException:
            log.warning("%s: write timed out, %d bytes dropped", self.label, len(data))
            return len(data)
        except (serial.SerialException, OSError) as exc:
            raise OSError(errno.EIO, _reason(exc)) from None
        return len(data) if n is None else int(n)

    # -- input for fd-less ports ---------------------------------------------------------

    def _reader(self) -> None:
        """Reader thread: read only while the frontend wants data; never spins."""
        port = self.port
        assert port is not None
        while not self._stop.is_set():
            if not self._wake.wait(0.5):
                continue
            with self._rx_lock:
                want = self._want
            if want <= 0 or self._stop.is_set():
                continue
            try:
                data = port.read(1)
                if data:
                    extra = min(want - 1, port.in_waiting)
                    if extra > 0:
                        data += port.read(extra)
            except Exception as exc:  # a URL handler's peer went away
                if not self._stop.is_set():
                    log.warning("%s: serial read failed: %s", self.label, _reason(exc))
                    self.ioloop.call_soon(self._reader_failed)
                return
            if data:
                with self._rx_lock:
                    self._rx += data
                    self._want = 0
                    self._wake.clear()
                self.ioloop.call_soon(self._deliver_rx)

    def _reader_failed(self) -> None:
        if not self.closed and not self._failed:
            self._failed = True
            self.be_event(ChardevEvent.CLOSED)

    def _deliver_rx(self) -> None:
        if self.closed:
            return
        while True:
            n = self.be_can_write()
            with self._rx_lock:
                if not self._rx or n <= 0:
                    break
                chunk = bytes(self._rx[:n])
                del self._rx[:n]
            self.be_write(chunk)
        self.chr_update_read_handler()

    def chr_update_read_handler(self) -> None:
        if self._thread is None:
            super().chr_update_read_handler()
            return
        if self.closed or self._failed:
            return
        n = self.be_can_write()
        with self._rx_lock:
            pending = bool(self._rx)
            if n > 0 and not pending:
                self._want = n
                self._wake.set()
            else:
                self._want = 0
                self._wake.clear()
        if pending and n > 0:
            self.ioloop.call_soon(self._deliver_rx)
        elif n <= 0:
            if self.reader_attached():
                self.schedule_read_recheck()

    def chr_accept_input(self) -> None:
        if self._thread is not None:
            self._deliver_rx()

    # -- line control ------------------------------------------------------------------

    def chr_ioctl(self, cmd: int, arg: Any) -> Any:
        port = self.port
        if port is None:
            if self.in_fd >= 0 and cmd in (ChardevIoctl.SET_PARAMS, ChardevIoctl.SET_BREAK):
                return 0  # a non-tty: QEMU ignores the failed tcsetattr/tcsendbreak
            return -errno.ENOTSUP
        try:
            if cmd == ChardevIoctl.SET_PARAMS:
                return self._set_params(port, arg)
            if cmd == ChardevIoctl.SET_BREAK:
                port.break_condition = bool(arg)
                return 0
            if cmd == ChardevIoctl.GET_TIOCM:
                bits = 0
                for flag, on in ((Tiocm.CTS, port.cts), (Tiocm.DSR, port.dsr),
                                 (Tiocm.RI, port.ri), (Tiocm.CAR, port.cd),
                                 (Tiocm.RTS, port.rts), (Tiocm.DTR, port.dtr)):
                    if on:
                        bits |= int(flag)
                return bits
            if cmd == ChardevIoctl.SET_TIOCM:
                bits = int(arg)
                port.rts = bool(bits & Tiocm.RTS)
                port.dtr = bool(bits & Tiocm.DTR)
                return 0
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # e.g. a pty has no modem lines (ENOTTY): the frontend sees "unsupported"
            log.debug("%s: ioctl %d failed: %s", self.label, cmd, exc)
            err = getattr(exc, "errno", None)
            if err in (errno.ENOTTY, errno.EINVAL, None) and cmd in (
                    ChardevIoctl.GET_TIOCM, ChardevIoctl.SET_TIOCM):
                return -errno.ENOTSUP
            return -(err or errno.EIO)
        return -errno.ENOTSUP

    def _set_params(self, port: serial.SerialBase, params: SerialParams) -> int:
        """Apply each setting on its own (a pty refuses parity changes but takes a speed)."""
        if not isinstance(params, SerialParams):
            return -errno.EINVAL
        result = 0
        for name, value in (("baudrate", qemu_speed(params.speed)),
                            ("bytesize", params.data_bits),
                            ("parity", _PARITY[params.parity]),
                            ("stopbits", _STOPBITS[params.stop_bits])):
            before = getattr(port, name)
            try:
                setattr(port, name, value)
            except (serial.SerialException, OSError, ValueError, termios.error) as exc:
                log.debug("%s: setting %s=%s failed: %s", self.label, name, value, exc)
                # pyserial keeps the refused value and would resend it with every later
                # setting: put back what the port really has
                if hasattr(port, "_" + name):
                    setattr(port, "_" + name, before)
                result = -errno.EINVAL
        return result


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> SerialConfig:
    if opts.get("path") is None:
        raise ChardevError("chardev: serial/tty: no device path given")
    return SerialConfig(device=opts["path"], **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> SerialConfig:
    return SerialConfig(device=d.take("device", "string", True), **common)


def _to_opts(c: SerialConfig) -> list[tuple[str, Any]]:
    return [("path", c.device)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "serial", "path": text} if text.startswith("/dev/") else None


OPTIONS = BackendOptions(config=SerialConfig, chardev=SerialChardev, keys={"path": STR},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
