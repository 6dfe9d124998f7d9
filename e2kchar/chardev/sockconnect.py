"""A socket client's way to its server: a blocking connect at creation (QEMU's behaviour
without reconnect-ms), or non-blocking connects over every resolved address (localhost may
be ::1 then 127.0.0.1) retried every reconnect-ms; a failure is reported once until a
connection works again."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from .configbase import InetAddress, SocketAddress, UnixAddress
from .ioloop import FdWatch, IOLoop, TimerHandle
from .sockaddr import CONNECT_TIMEOUT, resolve, strerror, unix_sockaddr
from .types import ChardevError

log = logging.getLogger("e2kchar.chardev.socket")


def client_sockets(addr: SocketAddress) -> list[tuple[socket.socket, Any]]:
    """Candidate (socket, sockaddr) pairs for a client connect."""
    if isinstance(addr, UnixAddress):
        raw = unix_sockaddr(addr)
        return [(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), raw)]
    assert isinstance(addr, InetAddress)
    out = []
    for family, kind, proto, _canon, sockaddr in resolve(addr, False):
        out.append((socket.socket(family, kind, proto), sockaddr))
    return out


def connect_now(addr: InetAddress | UnixAddress) -> socket.socket:
    """A blocking connect (up to CONNECT_TIMEOUT per address), QEMU's error if none works."""
    where = addr.path if isinstance(addr, UnixAddress) else f"{addr.host}:{addr.port}"
    error: OSError | None = None
    candidates = client_sockets(addr)
    for i, (sock, sockaddr) in enumerate(candidates):
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        for other, _ in candidates[i + 1:]:
            other.close()
        return sock
    reason = strerror(error) if error is not None else "no address"
    raise ChardevError(f"Failed to connect to '{where}': {reason}")


class Connector:
    """Asynchronous connects with a reconnect timer (I/O thread).

    ``owner()`` names the chardev in logs; ``on_connect(sock)`` takes a connected socket;
    ``closed()`` says the chardev is gone and ``busy()`` that it has a connection already.
    """

    def __init__(self, ioloop: IOLoop, owner: Callable[[], str], addr: SocketAddress,
                 reconnect_ms: int, on_connect: Callable[[socket.socket], None],
                 closed: Callable[[], bool], busy: Callable[[], bool]) -> None:
        self.ioloop = ioloop
        self._owner = owner
        self.addr = addr
        self.reconnect_ms = reconnect_ms
        self._on_connect = on_connect
        self._closed = closed
        self._busy = busy
        self._connecting: socket.socket | None = None
        self._watch = FdWatch(ioloop, self._on_done, write=True)
        self._candidates: list[tuple[socket.socket, Any]] = []
        self._timer: TimerHandle | None = None
        self._error_reported = False

    def start(self) -> None:
        """Try to connect now (a failure schedules the next try)."""
        self._timer = None
        if self._closed() or self._busy() or self._connecting is not None:
            return
        try:
            self._candidates = client_sockets(self.addr)
        except (ChardevError, OSError) as exc:
            self._failed(str(exc))
            return
        self._try_next("no address")

    def _try_next(self, reason: str) -> None:
        """Async connect to the next resolved address."""
        while self._candidates:
            sock, sockaddr = self._candidates.pop(0)
            try:
                sock.setblocking(False)
                err = sock.connect_ex(sockaddr)
            except OSError as exc:
                err = exc.errno or errno.EINVAL
            if err == 0:
                self._drop_candidates()
                self._on_connect(sock)
                return
            if err == errno.EINPROGRESS and self._watch.arm(sock.fileno()):
                self._connecting = sock
                return
            sock.close()
            reason = os.strerror(err)
        self._failed(reason)

    def _drop_candidates(self) -> None:
        for sock, _ in self._candidates:
            sock.close()
        self._candidates = []

    def _on_done(self) -> None:
        sock = self._connecting
        if sock is None:
            return
        self._watch.disarm()
        self._connecting = None
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            err = exc.errno or errno.EINVAL
        if err:
            sock.close()
            self._try_next(os.strerror(err))
            return
        self._drop_candidates()
        self._on_connect(sock)

    def _failed(self, reason: str) -> None:
        if not self._error_reported:
            log.error("Unable to connect character device %s: %s", self._owner(), reason)
            self._error_reported = True
        self.schedule()

    def schedule(self) -> None:
        """The next try in reconnect-ms (nothing without reconnect-ms)."""
        if self._closed() or not self.reconnect_ms or self._timer is not None:
            return
        self._timer = self.ioloop.call_later(self.reconnect_ms / 1000.0, self.start)

    def connected(self) -> None:
        """A connection works: the next failure is reported again."""
        self._error_reported = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connecting is not None:
            self._watch.disarm()
            self._connecting.close()
            self._connecting = None
        self._drop_candidates()
