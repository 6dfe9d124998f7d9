"""socket: tcp / unix streams, server or client, with telnet, tn3270 and websocket modes.

One connection at a time: a server stops accepting while a client is attached and re-arms
its listener when the client leaves; a client with reconnect-ms retries on a timer. The
guest's output is a non-blocking send from the CPU thread; while nobody is connected a
server keeps it in a bounded buffer (history=BYTES, 64 KiB by default) replayed to the next
peer; history=0 drops it, as QEMU does (a client socket drops unless history= is given).
Input stops while the frontend cannot take more and resumes on accept_input.

Collaborators in e2kchar/chardev/: sockaddr.py (addresses, resolution), socklisten.py
(``Listener``: binding, accepting, the unix socket file), sockconnect.py (``Connector``:
client connects and the reconnect timer). This class is the connection: its read and write
paths, the telnet and websocket framing on them, history, and the chardev's state and
filenames.

``fd=N`` hands a connected or listening socket over, as in QEMU: once the chardev is
registered under its id (created, or a chardev-change onto it committed) it owns the
socket and closes N, so chardev-remove or a swap away from it closes the connection and
the peer sees EOF. Until then the chardev works on a duplicate and N stays the caller's:
a failed open or a vetoed or failed swap onto it closes only the duplicate, and the
connection goes on. An fd socket holds no exclusive resource, so a failed swap away from
it never closes it to re-open its config: the old chardev stays live (hotswap.py).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig, FdAddress, InetAddress, SocketAddress, UnixAddress
from ..history import DEFAULT_LIMIT, History
from ..ioloop import FdWatch
from ..qemuopts import (
    BOOL,
    NUM,
    SIZE,
    STR,
    BackendOptions,
    NotLegacySyntax,
    Opts,
    QapiReader,
    Split,
    opt_bool,
    opt_num,
    opt_size,
    qapi_addr,
)
from ..ratelog import forget_owner, log_limited
from ..sockaddr import (
    CONNECT_TIMEOUT,
    UNIX_PATH_MAX,
    check_port,
    connected_names,
    disconnected_filename,
    inet_family,
    strerror,
    unix_sockaddr,
)
from ..sockconnect import Connector, connect_now
from ..socklisten import Listener
from ..telnet import TELNET_NEGOTIATION, TN3270_NEGOTIATION, TelnetFilter
from ..types import READ_BUF_LEN, ChardevError, ChardevEvent
from ..websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    HandshakeError,
    ServerSession,
    WebSocketError,
    bad_request,
    close_payload,
    encode_frame,
)

log = logging.getLogger("e2kchar.chardev.socket")  # its name before the move to backends/
#: what QEMU prints on stderr whatever the verbosity (``e2kchar run`` shows it without -v)
notice = logging.getLogger("e2kchar.chardev.socket.notice")

__all__ = ["CONNECT_TIMEOUT", "OPTIONS", "UNIX_PATH_MAX", "SocketChardev", "SocketConfig",
           "check_port", "inet_family", "unix_sockaddr"]

_DISCONNECTED, _HANDSHAKE, _CONNECTED = range(3)




@dataclass(kw_only=True)
class SocketConfig(BackendConfig):
    TYPE: ClassVar[str] = "socket"
    addr: SocketAddress
    server: bool | None = None
    wait: bool | None = None
    nodelay: bool | None = None
    telnet: bool | None = None
    tn3270: bool | None = None
    websocket: bool | None = None
    reconnect: int | None = None  # seconds (QEMU's older option)
    reconnect_ms: int | None = None
    tls_creds: str | None = None
    history: int | None = None  # e2kchar: bytes kept while no client is attached


class SocketChardev(Chardev[SocketConfig]):
    """QEMU's chardev-socket (tcp, unix, fd), plus a bounded history for late peers."""

    TYPE = "socket"
    closed_on_finalize = True
    #: output bytes beyond which a websocket ping gets no pong (a client that never reads)
    WS_PONG_BACKLOG: ClassVar[int] = 65536

    @classmethod
    def exclusive_resource(cls, config: Any) -> object | None:
        """A listening server holds its port or path: a swap to a server on the same
        address must release the old one first (no "address already in use")."""
        if not config.server:
            return None
        addr = config.addr
        if isinstance(addr, UnixAddress):
            return ("unix", addr.path, bool(addr.abstract))
        if isinstance(addr, InetAddress) and addr.port not in ("", "0"):
            return ("tcp", addr.port)
        return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn_lock = threading.Lock()  # _sock/_state/_outbuf/_history, both threads
        self._listener = Listener(self.ioloop, self._owner, self._new_connection,
                                  self._start_listening, self._is_closed)
        self._connector: Connector | None = None  # clients with a tcp or unix address
        self._sock: socket.socket | None = None
        self._fd = -1
        self._state = _DISCONNECTED
        self._outbuf = bytearray()
        self._inq: deque[bytes | ChardevEvent] = deque()
        self._history = History(0)
        self._read_watch = FdWatch(self.ioloop, self._on_readable)
        self._write_watch = FdWatch(self.ioloop, self._on_writable, write=True)
        self._pending_open = False
        self._connections = 0  # connections made so far, for chr_wait_connected
        self._handed_fd = -1  # fd=N: the caller's N, closed once we are registered
        self._telnet: TelnetFilter | None = None
        self._ws: ServerSession | None = None  # websocket=on: this connection's session
        self._addr: SocketAddress | None = None
        self.is_listen = False
        self.is_telnet = False
        self.is_tn3270 = False
        self.do_telnetopt = False  # negotiate and filter IAC (servers only, as QEMU)
        self.is_websocket = False
        self.local_name = ""
        self.peer_name = ""

    # ------------------------------------------------------------------------------------
    # public properties (QEMU's QOM "addr" and "connected")

    @property
    def addr(self) -> SocketAddress | None:
        """The socket address; for a server the bound one (real port when 0 was given)."""
        return self._addr

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED

    # ------------------------------------------------------------------------------------
    # open

    def open(self) -> bool:
        cfg = self.config
        self.is_listen = cfg.server is not False
        self.is_tn3270 = bool(cfg.tn3270)
        # the filename says "telnet" whenever telnet=on (a client too, tn3270 not), as
        # QEMU's; negotiation is a server-side feature in QEMU
        self.is_telnet = bool(cfg.telnet)
        self.do_telnetopt = self.is_listen and (self.is_telnet or self.is_tn3270)
        self.is_websocket = bool(cfg.websocket)
        reconnect_ms = cfg.reconnect_ms
        if reconnect_ms is None:
            reconnect_ms = (cfg.reconnect or 0) * 1000
        if reconnect_ms < 0:
            raise ChardevError("'reconnect-ms' must not be negative")
        self._history = History(cfg.history if cfg.history is not None or not self.is_listen
                                else DEFAULT_LIMIT)
        if cfg.tls_creds:
            raise ChardevError(f"No TLS credentials with id '{cfg.tls_creds}'")
        if self.is_websocket and not self.is_listen:
            raise ChardevError("Websocket client is not implemented")
        if self.is_websocket and self.do_telnetopt:
            raise ChardevError("'websocket' option is incompatible with telnet")
        if reconnect_ms and self.is_listen:
            raise ChardevError(
                "'reconnect' option is incompatible with socket in server listen mode")
        addr = cfg.addr
        self._addr = addr
        if isinstance(addr, InetAddress):
            check_port(addr)
        if isinstance(addr, FdAddress):
            return self._open_fd(addr)
        if self.is_listen:
            self._addr = self._listener.bind(addr)
            self._set_disconnected_filename()
            if cfg.wait:
                # said before the first client can be accepted, as QEMU prints it
                notice.info("QEMU waiting for connection on: %s", self.filename)
            self._start_listening()
            return False
        self._set_disconnected_filename()
        if isinstance(addr, UnixAddress):
            unix_sockaddr(addr)  # a bad path is a creation error, not a retry loop
        self._connector = Connector(self.ioloop, self._owner, addr, reconnect_ms,
                                    self._new_connection, self._is_closed,
                                    lambda: self._sock is not None)
        if reconnect_ms:
            self._connector.start()
            return False
        self._new_connection(connect_now(addr))
        return False

    def _owner(self) -> str:
        return self.label or ""

    def _is_closed(self) -> bool:
        return self.closed

    def _open_fd(self, addr: FdAddress) -> bool:
        try:
            num = int(addr.str)
        except ValueError:
            raise ChardevError(f"File descriptor named '{addr.str}' has not been found") \
                from None
        try:
            dup = os.dup(num)
        except OSError as exc:
            raise ChardevError(f"Failed to use socket fd {num}: {strerror(exc)}") from None
        try:
            sock = socket.socket(fileno=dup)
        except OSError as exc:
            os.close(dup)
            raise ChardevError(f"Failed to use socket fd {num}: {strerror(exc)}") from None
        try:
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
        if listening != self.is_listen:
            sock.close()
            raise ChardevError(f"fd {num} is {'' if listening else 'not '}a listening socket "
                               f"but server={'on' if self.is_listen else 'off'}")
        self._set_disconnected_filename()
        self._handed_fd = num
        if listening:
            self._listener.adopt(sock)
            self._start_listening()
        else:
            self._new_connection(sock)
        return False

    def chr_registered(self) -> None:
        """fd=N: the socket is ours now; the caller's N goes (only our duplicate is left)."""
        num, self._handed_fd = self._handed_fd, -1
        if num >= 0:
            try:
                os.close(num)
            except OSError as exc:
                log.warning("%s: could not close the handed-over fd %d: %s", self.label, num,
                            strerror(exc))

    def chr_release_exclusive(self) -> bool:
        """A hotswap to a server on our port: close the listener (a client stays)."""
        if not self.is_listen or isinstance(self._addr, FdAddress):
            return False
        return self._listener.close()

    def chr_reacquire_exclusive(self) -> None:
        if self._listener.sock is not None or self.closed or self._addr is None:
            return
        try:
            self._addr = self._listener.bind(self._addr)
        except ChardevError as exc:
            log.error("%s: could not listen again after a failed swap: %s", self.label, exc)
            return
        self._start_listening()

    # ------------------------------------------------------------------------------------
    # filenames

    def _kind(self) -> str:
        return "telnet" if self.is_telnet else "tcp"

    def _set_disconnected_filename(self) -> None:
        if self._addr is not None:
            self.filename = disconnected_filename(self._addr, self._kind(), self.is_listen)

    def _set_connected_filename(self, sock: socket.socket) -> None:
        if self._addr is None:
            return
        names = connected_names(self._addr, self._kind(), self.is_listen, sock)
        if names is not None:
            self.filename, self.local_name, self.peer_name = names

    # ------------------------------------------------------------------------------------
    # connection lifecycle (I/O thread)

    def _start_listening(self) -> None:
        if not self.closed and self._sock is None:
            self._listener.start()

    def _schedule_reconnect(self) -> None:
        if self._connector is not None:
            self._connector.schedule()

    def _new_connection(self, sock: socket.socket) -> None:
        if self.closed or self._sock is not None:
            sock.close()  # one client at a time
            return
        try:
            sock.setblocking(False)
            if self.config.nodelay and sock.family in (
                    socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.warning("%s: cannot set up the connection: %s", self.label, strerror(exc))
            sock.close()
            self._schedule_reconnect()
            return
        self._listener.stop()
        with self._conn_lock:
            self._sock = sock
            self._fd = sock.fileno()
            self._state = _HANDSHAKE
            self._outbuf.clear()
        self._inq.clear()
        self._set_connected_filename(sock)
        if self.is_websocket:
            self._ws = ServerSession()
            self._add_reader()
        elif self.do_telnetopt:
            self._telnet = TelnetFilter(self.is_tn3270)
            self._pending_open = True
            self._send_control(TN3270_NEGOTIATION if self.is_tn3270 else TELNET_NEGOTIATION)
        else:
            self._telnet = None
            self._connected()

    def _connected(self) -> None:
        """The connection is usable: replay history, start reading, emit OPENED."""
        sock = self._sock
        if sock is None:
            return
        self._pending_open = False
        with self._conn_lock:
            self._state = _CONNECTED
            if self._history:
                kept = self._history.take()
                self._outbuf += encode_frame(OP_BINARY, kept) if self.is_websocket else kept
        if self._connector is not None:
            self._connector.connected()
        self._connections += 1
        self._flush()
        if self._sock is not sock:
            return  # the history replay found the peer gone
        self._add_reader()
        self.be_event(ChardevEvent.OPENED)
        if self.has_watches:
            self.chr_arm_watch()

    def _disconnect(self, events: bool = True) -> None:
        """Drop the current connection; servers listen again, clients maybe reconnect."""
        sock = self._sock
        if sock is None:
            return
        was_open = self._state == _CONNECTED
        self._read_watch.disarm()
        self._write_watch.disarm()
        with self._conn_lock:
            self._sock = None
            self._fd = -1
            self._state = _DISCONNECTED
            self._outbuf.clear()
        try:
            sock.close()
        except OSError:
            pass
        self._inq.clear()
        self._pending_open = False
        self._ws = None
        self.local_name = self.peer_name = ""
        if self.closed:
            return
        self._set_disconnected_filename()
        if events and was_open:
            self.be_event(ChardevEvent.CLOSED)
        if self.closed:
            return
        if self.is_listen:
            self._start_listening()
        else:
            self._schedule_reconnect()
        if self.has_watches:
            self.ioloop.call_soon(self.fire_watches)  # output is dropped now: "writable"

    def forget_history(self) -> None:
        with self._conn_lock:
            self._history.take()

    def _disconnect_if(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self._disconnect()

    # ------------------------------------------------------------------------------------
    # output

    def _flush_locked(self) -> bool:
        """Under _conn_lock: send pending control/frame bytes; True once all are out."""
        sock = self._sock
        if sock is None:
            self._outbuf.clear()
            return True
        while self._outbuf:
            try:
                n = sock.send(self._outbuf)
            except (BlockingIOError, InterruptedError):
                return False
            del self._outbuf[:n]
        return True

    def _try_flush(self) -> bool | None:
        """I/O thread: push _outbuf. True once empty, False while the socket is full,
        None when the peer is gone (the connection is dropped then)."""
        with self._conn_lock:
            try:
                done: bool | None = self._flush_locked()
            except OSError as exc:
                log.info("%s: peer gone while sending: %s", self.label, strerror(exc))
                done = None
        if done is None:
            self._disconnect()
        return done

    def _flush(self) -> None:
        """I/O thread: push _outbuf; arm the writer while something remains."""
        if self._sock is None:
            return
        done = self._try_flush()
        if done is False:
            self._arm_writer()
        elif done and self._pending_open:
            self._connected()

    def _send_control(self, data: bytes) -> None:
        with self._conn_lock:
            self._outbuf += data
        self._flush()

    def _send_and_close(self, data: bytes) -> None:
        """Best effort final words (websocket close, HTTP 400), then disconnect."""
        with self._conn_lock:
            self._outbuf += data
            try:
                self._flush_locked()
            except OSError:
                pass
        self._disconnect()

    def _arm_writer(self) -> None:
        if self._sock is not None and not self.closed:
            self._write_watch.arm(self._fd)

    def _arm_writer_for(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self._arm_writer()

    def _on_writable(self) -> None:
        if self._sock is None or not self._try_flush():
            return  # still full (writer stays armed) or the peer is gone
        self._write_watch.disarm()
        if self._pending_open:
            self._connected()
        self.fire_watches()

    def chr_write(self, data: memoryview) -> int:
        arm: socket.socket | None = None
        with self._conn_lock:
            sock = self._sock
            if sock is None or self._state != _CONNECTED:
                self._history.keep(data)
                return len(data)  # nobody listening: QEMU drops and reports success
            try:
                if self._outbuf and not self._flush_locked():
                    raise BlockingIOError(errno.EAGAIN, "socket buffer full")
                if self.is_websocket:
                    frame = encode_frame(OP_BINARY, bytes(data))
                    try:
                        n = sock.send(frame)
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    if n < len(frame):
                        self._outbuf += frame[n:]
                        arm = sock
                    result = len(data)
                else:
                    result = sock.send(data)
            except (BlockingIOError, InterruptedError):
                raise BlockingIOError(errno.EAGAIN, "socket buffer full") from None
            except OSError as exc:
                # the peer went away mid-write: keep what we could not send for the next one
                log.info("%s: write failed: %s", self.label, strerror(exc))
                self._outbuf.clear()
                self._history.keep(data)
                self.ioloop.call_soon(self._disconnect_if, sock)
                return len(data)
        if arm is not None:
            self.ioloop.call_soon(self._arm_writer_for, arm)
        return result

    def chr_arm_watch(self) -> None:
        if self._sock is None or self._state != _CONNECTED:
            self.ioloop.call_soon(self.fire_watches)
            return
        self._arm_writer()

    # ------------------------------------------------------------------------------------
    # input

    def _add_reader(self) -> None:
        if self._sock is not None and not self.closed:
            self._read_watch.arm(self._fd)

    def _pause_reader(self) -> None:
        self._read_watch.disarm()

    def chr_update_read_handler(self) -> None:
        if self.closed or self._sock is None:
            return
        if self._state == _CONNECTED:
            self._deliver_pending()
        self._add_reader()

    def chr_accept_input(self) -> None:
        if self._sock is not None and self._state == _CONNECTED:
            self._deliver_pending()

    def _deliver_pending(self) -> None:
        inq = self._inq
        while inq and self._sock is not None and not self.closed:
            item = inq[0]
            if isinstance(item, ChardevEvent):
                inq.popleft()
                self.be_event(item)
                continue
            n = self.be_can_write()
            if n <= 0:
                return
            if n >= len(item):
                inq.popleft()
                self.be_write(item)
            else:
                inq[0] = item[n:]
                self.be_write(item[:n])

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None or self.closed:
            return
        if self._state == _HANDSHAKE and self._ws is not None and not self._ws.upgraded:
            self._read_ws_handshake(sock)
            return
        if self._state == _CONNECTED:
            self._deliver_pending()
        n = 0 if (self._inq or self._state != _CONNECTED) else self.be_can_write()
        if n <= 0:
            self._peek_or_pause(sock)
            return
        data = self._recv(sock, min(n, READ_BUF_LEN))
        if data is None:
            return
        self._process_input(sock, data)
        if self._sock is sock:
            self._deliver_pending()

    def _recv(self, sock: socket.socket, size: int, flags: int = 0) -> bytes | None:
        """One non-blocking recv: the bytes, or None when there are none yet or the peer
        has gone (the connection is then already torn down)."""
        try:
            data = sock.recv(size, flags)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            log.info("%s: read failed: %s", self.label, strerror(exc))
            self._disconnect()
            return None
        if not data:
            self._disconnect()
            return None
        return data

    def _peek_or_pause(self, sock: socket.socket) -> None:
        """The frontend is full: notice a hang-up anyway, else wait until it has room."""
        if self._recv(sock, 1, socket.MSG_PEEK) is None:
            return
        self._pause_reader()
        self.schedule_read_recheck(0.01 if self.reader_attached() else 0.1)

    def _process_input(self, sock: socket.socket, data: bytes) -> None:
        if self._telnet is not None:
            self._inq.extend(self._telnet.feed(data))
        elif self._ws is not None:
            self._process_ws(sock, data)
        else:
            self._inq.append(data)

    # -- websocket -----------------------------------------------------------------------

    def _read_ws_handshake(self, sock: socket.socket) -> None:
        data = self._recv(sock, READ_BUF_LEN)
        if data is None:
            return
        ws = self._ws
        assert ws is not None
        try:
            upgraded = ws.upgrade(data)
        except HandshakeError as exc:
            log.warning("%s: websocket handshake failed: %s", self.label, exc)
            self._send_and_close(bad_request(str(exc)))
            return
        if upgraded is None:
            return
        response, rest = upgraded
        self._send_control(response)
        if self._sock is not sock:
            return
        self._connected()
        if rest and self._sock is sock:
            self._process_ws(sock, rest)
            if self._sock is sock:
                self._deliver_pending()

    def _process_ws(self, sock: socket.socket, data: bytes) -> None:
        ws = self._ws
        assert ws is not None
        try:
            frames = ws.frames(data)
        except WebSocketError as exc:
            log.warning("%s: websocket protocol error: %s", self.label, exc)
            self._send_and_close(encode_frame(OP_CLOSE, close_payload(exc.status, str(exc))))
            return
        for opcode, payload in frames:
            if opcode in (OP_BINARY, OP_TEXT, OP_CONT):
                if payload:
                    self._inq.append(payload)
            elif opcode == OP_PING:
                # RFC 6455 5.5.3 lets a pong answer only the latest ping: while the client
                # does not read, its pings get none, so a ping flood cannot grow the backlog
                if len(self._outbuf) <= self.WS_PONG_BACKLOG:
                    self._send_control(encode_frame(OP_PONG, payload))
                else:
                    log_limited(log, logging.WARNING, (self.label, "pong"),
                                "%s: websocket client pings but does not read; pongs "
                                "skipped", self.label)
            elif opcode == OP_CLOSE:
                self._send_and_close(encode_frame(
                    OP_CLOSE, close_payload(CLOSE_NORMAL, "peer requested close")))
                return
            if self._sock is not sock:
                return

    # ------------------------------------------------------------------------------------
    # control and teardown

    @property
    def output_backlog(self) -> int:
        """Bytes waiting for the peer to read (bounded for control frames)."""
        return len(self._outbuf)

    def chr_disconnect(self) -> None:
        self._disconnect()

    def chr_wait_connected(self, timeout: float | None) -> None:
        """Block (never on the I/O thread) until a peer connects.

        With timeout None (the registry, right after creation) only a wait=on server waits,
        for its first client; an explicit timeout waits for a connection from any socket.
        """
        if self.ioloop.in_loop_thread() or self.connected:
            return
        if timeout is None and not (self.is_listen and self.config.wait):
            return
        seen = 0 if timeout is None else self._connections
        if timeout is not None:  # a wait=on server said so when it started listening
            log.info("waiting for connection on: %s", self.filename)
        deadline = None if timeout is None else time.monotonic() + timeout

        def arrived() -> bool:
            return self._connections > seen or self.closed

        while not arrived():
            remaining = 60.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise ChardevError(f"timed out waiting for a connection on {self.filename}")
            self.ioloop.run_until(arrived, min(remaining, 60.0))
        if self.closed:
            raise ChardevError(f"chardev '{self.label}' closed while waiting for a connection")

    def chr_close(self) -> None:
        if self._connector is not None:
            self._connector.close()
        if self.is_websocket and self._state == _CONNECTED:
            with self._conn_lock:  # tell the browser why the line went away (best effort)
                self._outbuf += encode_frame(OP_CLOSE, close_payload(CLOSE_GOING_AWAY,
                                                                     "chardev closed"))
                try:
                    self._flush_locked()
                except OSError:
                    pass
        self._disconnect(events=False)
        self._listener.close()
        self._listener.remove_path()
        forget_owner(self.label)


# -- options --------------------------------------------------------------------------


def inet_from_opts(opts: Opts, backend: str) -> InetAddress:
    """host=, port= and their flags of a -chardev socket or rfc2217 option string."""
    host = opts.get("host")
    if host is None:
        raise ChardevError(f"chardev: {backend}: no host given")
    if opts.get("port") is None:
        raise ChardevError(f"chardev: {backend}: no port given")
    return InetAddress(host=host, port=opts["port"], numeric=opt_bool(opts, "numeric"),
                       to=opt_num(opts, "to"), ipv4=opt_bool(opts, "ipv4"),
                       ipv6=opt_bool(opts, "ipv6"))


def _from_opts(opts: Opts, common: dict[str, Any]) -> SocketConfig:
    path, host, fd = opts.get("path"), opts.get("host"), opts.get("fd")
    given = [x for x in (path, host, fd) if x is not None]
    if len(given) > 1:
        raise ChardevError("Exactly one of 'path', 'fd' or 'host' required")
    addr: SocketAddress
    if path is not None:
        addr = UnixAddress(path=path, abstract=opt_bool(opts, "abstract"),
                           tight=opt_bool(opts, "tight"))
    elif fd is not None:
        addr = FdAddress(str=fd)
    else:
        addr = inet_from_opts(opts, "socket")
    server = opt_bool(opts, "server") or False
    wait = opt_bool(opts, "wait")
    if wait is None:
        wait = server  # CLI: servers wait for a client unless told otherwise
    if not server:
        wait = False
    nodelay = opt_bool(opts, "nodelay")
    delay = opt_bool(opts, "delay")
    if delay is not None:
        nodelay = not delay
    if opts.get("tls-creds") is not None and not isinstance(addr, InetAddress):
        raise ChardevError("TLS can only be used over TCP socket")
    return SocketConfig(
        addr=addr, server=server, wait=wait, nodelay=nodelay,
        telnet=opt_bool(opts, "telnet"), tn3270=opt_bool(opts, "tn3270"),
        websocket=opt_bool(opts, "websocket"), reconnect=opt_num(opts, "reconnect"),
        reconnect_ms=opt_num(opts, "reconnect-ms"), tls_creds=opts.get("tls-creds"),
        history=opt_size(opts, "history"), **common,
    )


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> SocketConfig:
    addr = qapi_addr(d.take("addr", "object", True), f"{where}.data.addr")
    server = d.take("server", "boolean")
    wait = d.take("wait", "boolean")
    server = True if server is None else server
    return SocketConfig(
        addr=addr, server=server, wait=bool(wait) if server else False,
        nodelay=d.take("nodelay", "boolean"), telnet=d.take("telnet", "boolean"),
        tn3270=d.take("tn3270", "boolean"), websocket=d.take("websocket", "boolean"),
        reconnect=d.take("reconnect", "integer"),
        reconnect_ms=d.take("reconnect-ms", "integer"),
        tls_creds=d.take("tls-creds", "string"), history=d.take("history", "integer"),
        **common)


def _to_opts(c: SocketConfig) -> list[tuple[str, Any]]:
    a = c.addr
    out: list[tuple[str, Any]]
    if isinstance(a, InetAddress):
        out = [("host", a.host), ("port", a.port), ("numeric", a.numeric), ("to", a.to),
               ("ipv4", a.ipv4), ("ipv6", a.ipv6)]
    elif isinstance(a, UnixAddress):
        out = [("path", a.path), ("abstract", a.abstract), ("tight", a.tight)]
    else:
        out = [("fd", a.str)]
    return out + [("server", c.server), ("wait", c.wait), ("nodelay", c.nodelay),
                  ("telnet", c.telnet), ("tn3270", c.tn3270), ("websocket", c.websocket),
                  ("reconnect", c.reconnect), ("reconnect-ms", c.reconnect_ms),
                  ("tls-creds", c.tls_creds), ("history", c.history)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    """tcp:H:P[,opts], telnet:, tn3270:, websocket: and unix:PATH[,opts]."""
    if text.startswith(("tcp:", "telnet:", "tn3270:", "websocket:")):
        prefix, rest = text.split(":", 1)
        m = re.match(r"([^:]{0,64}):([^,]{1,32})(?:,(.*))?\Z", rest, re.S)
        if not m:
            raise NotLegacySyntax
        # QEMU sets host and port first, then parses the options (which may override
        # them), then the prefix's telnet/tn3270/websocket flag
        opts = {"backend": "socket", "host": m.group(1), "port": m.group(2)}
        if m.group(3) is not None:
            opts.update(split(m.group(3), None))
        if prefix != "tcp":
            opts[prefix] = "on"
        return opts
    if text.startswith("unix:"):
        opts = split(text[5:], "path")
        opts["backend"] = "socket"
        return opts
    return None


OPTIONS = BackendOptions(
    config=SocketConfig, chardev=SocketChardev,
    keys={"path": STR, "host": STR, "port": STR, "to": NUM, "ipv4": BOOL, "ipv6": BOOL,
          "numeric": BOOL, "wait": BOOL, "server": BOOL, "delay": BOOL, "nodelay": BOOL,
          "reconnect": NUM, "reconnect-ms": NUM, "telnet": BOOL, "tn3270": BOOL,
          "websocket": BOOL, "tls-creds": STR, "fd": STR, "abstract": BOOL, "tight": BOOL,
          "history": SIZE},
    from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
