"""rfc2217: a TCP server speaking telnet + RFC 2217 (remote serial port control).

The connection handling (listening, one client at a time, history, hotswap) is the socket
backend's; the telnet/RFC 2217 negotiation is pyserial's own server side
(``serial.rfc2217.PortManager``), fed through a stand-in serial port that wires the client
to the guest's UART like a null-modem cable: client DTR -> guest DSR and DCD, client RTS ->
guest CTS, guest DTR -> client DSR and CD, guest RTS -> client CTS, client BREAK -> a guest
break. The client's line settings are accepted and acknowledged (the guest's UART has its
own; a virtual line has no speed). See docs/interfaces.md.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from serial import rfc2217

from ..configbase import InetAddress
from ..history import History
from ..ioloop import TimerHandle
from ..qemuopts import (
    BOOL,
    NUM,
    SIZE,
    STR,
    BackendOptions,
    Opts,
    QapiReader,
    opt_bool,
    opt_size,
    qapi_addr,
)
from ..types import READ_BUF_LEN, ChardevError, ChardevEvent, ChardevIoctl, SerialParams, Tiocm
from .socket import SocketChardev, SocketConfig, check_port, inet_from_opts

log = logging.getLogger(__name__)

#: input bytes read ahead of a full frontend so that control requests still get answered
RX_SLACK = 65536
#: seconds after which a client that never sent pyserial's closing PURGE gets the line
SETTLE_TIME = 1.0


@dataclass(kw_only=True)
class Rfc2217Config(SocketConfig):
    TYPE: ClassVar[str] = "rfc2217"


class NullModemPort:
    """What PortManager reads and sets on "its" serial port, as the two ends of a
    null-modem cable: the client's settings on one side, the guest's lines on the other."""

    def __init__(self, on_break: Callable[[], None], on_purge: Callable[[], None]) -> None:
        self._on_break = on_break
        self._on_purge = on_purge
        # the client's side (what it asked for; acknowledged as asked)
        self.baudrate = 115200
        self.bytesize = 8
        self.parity = "N"
        self.stopbits: float = 1
        self.xonxoff = False
        self.rtscts = False
        self.dtr = False
        self.rts = False
        self._break = False
        # the guest's side
        self.guest_dtr = False
        self.guest_rts = False

    def new_client(self) -> None:
        """A new client starts with its lines down and pyserial's defaults."""
        self.baudrate, self.bytesize, self.parity, self.stopbits = 115200, 8, "N", 1
        self.xonxoff = self.rtscts = self.dtr = self.rts = self._break = False

    # client -> guest
    @property
    def break_condition(self) -> bool:
        return self._break

    @break_condition.setter
    def break_condition(self, value: bool) -> None:
        if value and not self._break:
            self._on_break()
        self._break = bool(value)

    def reset_input_buffer(self) -> None:
        """PURGE of the server's receive buffer: nothing is buffered outside the UART."""

    def reset_output_buffer(self) -> None:
        """PURGE of the transmit buffer: nothing to drop (output goes straight to the
        socket), but it is the last step of pyserial's open()."""
        self._on_purge()

    # guest -> client (what the client sees as its modem status)
    @property
    def dsr(self) -> bool:
        return self.guest_dtr

    @property
    def cd(self) -> bool:
        return self.guest_dtr

    @property
    def cts(self) -> bool:
        return self.guest_rts

    @property
    def ri(self) -> bool:
        return False


class TelnetHistory(History):
    """The history of a telnet line: raw guest bytes are kept (so trimming the oldest can
    never split an IAC IAC pair) and escaped when they are replayed."""

    def take(self) -> bytes:
        return super().take().replace(b"\xff", b"\xff\xff")


class _Connection:
    """PortManager's "connection": its replies go out with the socket's pending output."""

    def __init__(self, chardev: Rfc2217Chardev) -> None:
        self.chardev = chardev

    def write(self, data: bytes) -> None:
        self.chardev.send_telnet(bytes(data))


class Rfc2217Chardev(SocketChardev):
    """An RFC 2217 server: a socket server whose client also drives modem lines and breaks."""

    TYPE = "rfc2217"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._port = NullModemPort(self._client_break, self._client_purged)
        self._manager: rfc2217.PortManager | None = None
        self._negotiating = False
        self._rx = bytearray()
        self._settle_timer: TimerHandle | None = None
        #: the guest's last line settings (SET_PARAMS), reported by query_extra
        self.guest_params: SerialParams | None = None

    def open(self) -> bool:
        if self.config.telnet or self.config.tn3270 or self.config.websocket:
            raise ChardevError("rfc2217 is a telnet server already")
        opened = super().open()
        with self._conn_lock:  # the socket layer made a plain History (raw bytes so far)
            plain = self._history
            self._history = TelnetHistory(plain.limit)
            self._history.keep(plain.take())
        return opened

    def _kind(self) -> str:
        return "rfc2217"

    # -- connection ----------------------------------------------------------------------

    def _connected(self) -> None:
        """Called by the socket layer once a client is accepted; the line opens (history
        replayed, OPENED sent) only once the client has settled: pyserial flushes its
        input at the end of open(), its PURGE of the transmit buffer comes after that; a
        client that never purges gets the line after SETTLE_TIME."""
        sock = self._sock
        if sock is None:
            return
        if self._manager is None:
            self._port.new_client()
            self._negotiating = True
            self._manager = rfc2217.PortManager(self._port, _Connection(self))
            self._negotiating = False
            self._flush()
            self._add_reader()
            self._settle_timer = self.ioloop.call_later(SETTLE_TIME, self._settled)
            return

    def _settled(self) -> None:
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._manager is None or self._sock is None or self.connected or self.closed:
            return
        super()._connected()
        if self.connected:
            self._deliver_pending()

    def _disconnect(self, events: bool = True) -> None:
        self._manager = None
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        self._rx.clear()
        super()._disconnect(events)

    def send_telnet(self, data: bytes) -> None:
        """Queue telnet/RFC 2217 bytes for the client (I/O thread)."""
        with self._conn_lock:
            self._outbuf += data
        if not self._negotiating:
            self._flush()

    # -- input ---------------------------------------------------------------------------

    def _process_input(self, sock: socket.socket, data: bytes) -> None:
        manager = self._manager
        if manager is None:
            return
        rx = self._rx
        for byte in manager.filter(data):
            rx += byte
        if rx:
            self._inq.append(bytes(rx))
            rx.clear()

    def _peek_or_pause(self, sock: socket.socket) -> None:
        """The frontend is full: keep reading up to RX_SLACK bytes anyway, so that the
        client's control requests (a BREAK, modem lines) are answered while the guest is
        slow to read; pyserial waits for every acknowledgement."""
        pending = sum(len(item) for item in self._inq if isinstance(item, bytes))
        if self._manager is None or pending >= RX_SLACK:
            super()._peek_or_pause(sock)
            return
        data = self._recv(sock, READ_BUF_LEN)
        if data is None:
            return
        self._process_input(sock, data)
        self.schedule_read_recheck(0.01)

    def _client_purged(self) -> None:
        if not self.connected:
            self.ioloop.call_soon(self._settled)  # after PortManager's acknowledgement

    def _client_break(self) -> None:
        """A BREAK from the client: data before it first, then the break event."""
        if self._rx:
            self._inq.append(bytes(self._rx))
            self._rx.clear()
        self._inq.append(ChardevEvent.BREAK)

    # -- output --------------------------------------------------------------------------

    def chr_write(self, data: memoryview) -> int:
        raw = bytes(data)
        if b"\xff" not in raw:
            return super().chr_write(data)
        escaped = raw.replace(b"\xff", b"\xff\xff")
        arm = None
        with self._conn_lock:
            sock = self._sock
            if sock is None or not self.connected:
                self._history.keep(raw)
                return len(data)
            if self._outbuf and not self._flush_locked():
                raise BlockingIOError(errno.EAGAIN, "socket buffer full")
            try:
                n = sock.send(escaped)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                log.info("%s: write failed: %s", self.label, exc)
                self._outbuf.clear()
                self._history.keep(raw)
                self.ioloop.call_soon(self._disconnect_if, sock)
                return len(data)
            if n < len(escaped):
                # all or nothing: an escape pair must never be split across two writes
                self._outbuf += escaped[n:]
                arm = sock
        if arm is not None:
            self.ioloop.call_soon(self._arm_writer_for, arm)
        return len(data)

    # -- modem lines ---------------------------------------------------------------------

    def chr_ioctl(self, cmd: int, arg: Any) -> Any:
        port = self._port
        if cmd == ChardevIoctl.GET_TIOCM:
            bits = int(Tiocm.DTR) if port.guest_dtr else 0
            bits |= int(Tiocm.RTS) if port.guest_rts else 0
            if self._manager is not None:
                if port.dtr:
                    bits |= int(Tiocm.DSR | Tiocm.CAR)
                if port.rts:
                    bits |= int(Tiocm.CTS)
            return bits
        if cmd == ChardevIoctl.SET_TIOCM:
            bits = int(arg)
            dtr, rts = bool(bits & Tiocm.DTR), bool(bits & Tiocm.RTS)
            if (dtr, rts) != (port.guest_dtr, port.guest_rts):
                port.guest_dtr, port.guest_rts = dtr, rts
                self.ioloop.call_soon(self._notify_modem_state)
            return 0
        if cmd == ChardevIoctl.SET_PARAMS:
            if isinstance(arg, SerialParams):
                self.guest_params = arg
            return 0
        if cmd == ChardevIoctl.SET_BREAK:
            return 0  # a break the guest sends has no RFC 2217 notification
        return -errno.ENOTSUP

    def _notify_modem_state(self) -> None:
        manager = self._manager
        if manager is not None and not self.closed:
            manager.check_modem_lines()


# -- options --------------------------------------------------------------------------


# A console protocol: one keystroke in, one echo out. With Nagle's algorithm on, the echo of
# a keystroke waits for the client's delayed ACK (~40 ms on Linux), so RFC 2217 consoles
# default to nodelay (as pyserial's own rfc2217 server example does); nodelay=off restores it.
_NODELAY = True


def _nodelay(value: bool | None) -> bool:
    return _NODELAY if value is None else value


def _from_opts(opts: Opts, common: dict[str, Any]) -> Rfc2217Config:
    addr = inet_from_opts(opts, "rfc2217")
    check_port(addr)
    wait = opt_bool(opts, "wait")
    nodelay = opt_bool(opts, "nodelay")
    delay = opt_bool(opts, "delay")
    if delay is not None:
        nodelay = not delay
    return Rfc2217Config(addr=addr, server=True, wait=True if wait is None else wait,
                         nodelay=_nodelay(nodelay), history=opt_size(opts, "history"), **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> Rfc2217Config:
    addr = qapi_addr(d.take("addr", "object", True), f"{where}.data.addr")
    if not isinstance(addr, InetAddress):
        raise ChardevError(f"Parameter '{where}.data.addr.type' does not accept value "
                           "for rfc2217 (only 'inet')")
    return Rfc2217Config(addr=addr, server=True, wait=bool(d.take("wait", "boolean")),
                         nodelay=_nodelay(d.take("nodelay", "boolean")),
                         history=d.take("history", "integer"), **common)


def _to_opts(c: Rfc2217Config) -> list[tuple[str, Any]]:
    a = c.addr
    assert isinstance(a, InetAddress)
    return [("host", a.host), ("port", a.port), ("numeric", a.numeric), ("to", a.to),
            ("ipv4", a.ipv4), ("ipv6", a.ipv6), ("wait", c.wait), ("nodelay", c.nodelay),
            ("history", c.history)]


OPTIONS = BackendOptions(
    config=Rfc2217Config, chardev=Rfc2217Chardev,
    keys={"host": STR, "port": STR, "to": NUM, "ipv4": BOOL, "ipv6": BOOL, "numeric": BOOL,
          "wait": BOOL, "delay": BOOL, "nodelay": BOOL, "history": SIZE},
    from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts)
