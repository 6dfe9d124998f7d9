"""A socket server's listening side (docs/architecture.md, "Robustness").

The socket chardev serves one connection at a time: it starts this listener while nobody
is connected and stops it when a client is accepted. The listener binds (tcp over a port
range, unix with its socket file, which it removes at close only if it is still the one it
made) or adopts a listening socket handed over as fd=N. An accept that fails (out of fds)
pauses accepting for ``ACCEPT_RETRY`` seconds and is logged rate-limited, so a full fd
table never makes the I/O loop spin.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
from collections.abc import Callable

from .configbase import InetAddress, SocketAddress, UnixAddress
from .ioloop import FdWatch, IOLoop
from .ownedpath import OwnedPath
from .ratelog import log_limited
from .sockaddr import host_port, resolve, strerror, unix_sockaddr
from .types import ChardevError

log = logging.getLogger("e2kchar.chardev.socket")


class Listener:
    """One listening socket and its accept watch (I/O thread).

    ``owner()`` names the chardev in logs; ``on_accept(conn)`` takes each new connection;
    ``resume()`` is asked to start accepting again after a failed accept; ``closed()``
    says the chardev is gone.
    """

    #: seconds without accepting after an accept failed (EMFILE)
    ACCEPT_RETRY = 0.5

    def __init__(self, ioloop: IOLoop, owner: Callable[[], str],
                 on_accept: Callable[[socket.socket], None], resume: Callable[[], None],
                 closed: Callable[[], bool]) -> None:
        self.ioloop = ioloop
        self._owner = owner
        self._on_accept = on_accept
        self._resume = resume
        self._closed = closed
        self.sock: socket.socket | None = None
        self._watch = FdWatch(ioloop, self._on_readable)
        self._owned: OwnedPath | None = None

    # -- binding -------------------------------------------------------------------------

    def bind(self, addr: SocketAddress) -> SocketAddress:
        """Listen on addr; returns the address bound (the real port when 0 was asked, the
        temporary path for a unix socket without one)."""
        if isinstance(addr, UnixAddress):
            bound: SocketAddress = self._bind_unix(addr)
        else:
            assert isinstance(addr, InetAddress)
            bound = self._bind_inet(addr)
        assert self.sock is not None
        self.sock.setblocking(False)
        return bound

    def adopt(self, sock: socket.socket) -> None:
        """A listening socket handed over (fd=N)."""
        sock.setblocking(False)
        self.sock = sock

    def _bind_inet(self, addr: InetAddress) -> InetAddress:
        try:
            first = int(addr.port)
        except ValueError:
            infos = resolve(addr, True)
            first = int(infos[0][4][1])
        last = min(addr.to, 65535) if addr.to is not None and addr.to > first else first
        infos = resolve(InetAddress(host=addr.host, port=str(first), numeric=addr.numeric,
                                    ipv4=addr.ipv4, ipv6=addr.ipv6), True)
        error: OSError | None = None
        for port in range(first, last + 1):
            for family, kind, proto, _canon, sockaddr in infos:
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((sockaddr[0], port) + tuple(sockaddr[2:]))
                    sock.listen(1)
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                self.sock = sock
                host, real_port = host_port(sock.getsockname())
                return InetAddress(host=host, port=real_port, numeric=addr.numeric,
                                   to=addr.to, ipv4=addr.ipv4, ipv6=addr.ipv6)
        reason = strerror(error) if error is not None else "no address"
        raise ChardevError(f"Failed to find an available port: {reason}")

    def _bind_unix(self, addr: UnixAddress) -> UnixAddress:
        if not addr.path and not addr.abstract:
            fd, path = tempfile.mkstemp(prefix="qemu-socket-")
            os.close(fd)
            os.unlink(path)
            addr = UnixAddress(path=path, abstract=addr.abstract, tight=addr.tight)
        raw = unix_sockaddr(addr)
        if not addr.abstract:
            try:
                if stat.S_ISSOCK(os.lstat(addr.path).st_mode):
                    os.unlink(addr.path)  # a stale socket from an earlier run
            except OSError:
                pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(raw)
            sock.listen(1)
        except OSError as exc:
            sock.close()
            raise ChardevError(f"Failed to bind socket to {addr.path}: {strerror(exc)}") \
                from None
        self.sock = sock
        if not addr.abstract:
            try:
                self._owned = OwnedPath.of(addr.path)
            except OSError:
                pass
        return addr

    # -- accepting -----------------------------------------------------------------------

    def start(self) -> None:
        if self.sock is not None:
            self._watch.arm(self.sock.fileno())

    def stop(self) -> None:
        self._watch.disarm()

    def _on_readable(self) -> None:
        listener = self.sock
        if listener is None or self._closed():
            return
        try:
            conn, _peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # e.g. EMFILE: do not spin on a listener we cannot serve; try again shortly
            owner = self._owner()
            log_limited(log, logging.WARNING, (owner, "accept", exc.errno),
                        "%s: accept failed: %s", owner, strerror(exc))
            self.stop()
            self.ioloop.call_later(self.ACCEPT_RETRY, self._resume)
            return
        self._on_accept(conn)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> bool:
        """Stop and close the listening socket (its unix file stays); True if it was open."""
        sock, self.sock = self.sock, None
        if sock is None:
            return False
        self.stop()
        sock.close()
        return True

    def remove_path(self) -> None:
        """Remove the unix socket file we made, if it is still ours."""
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.remove()
