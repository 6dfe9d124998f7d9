"""udp: a datagram socket connected to a remote host:port, optionally bound locally.

Each frontend write is one datagram. Being connected, the socket only receives datagrams
from the remote address. A datagram is read only when the frontend can take input and is
fed to it as fast as can_read allows. Like QEMU, udp never emits OPENED.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig, InetAddress
from ..ioloop import FdWatch
from ..qemuopts import (
    BOOL,
    STR,
    BackendOptions,
    NotLegacySyntax,
    Opts,
    QapiReader,
    Split,
    opt_bool,
    qapi_addr,
)
from ..types import READ_BUF_LEN, ChardevError
from .socket import check_port, inet_family

log = logging.getLogger("e2kchar.chardev.udp")  # its name before the move to backends/


@dataclass(kw_only=True)
class UdpConfig(BackendConfig):
    TYPE: ClassVar[str] = "udp"
    remote: InetAddress
    local: InetAddress | None = None


class UdpChardev(Chardev[UdpConfig]):
    """QEMU's chardev-udp."""

    TYPE = "udp"
    closed_on_finalize = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sock: socket.socket | None = None
        self._fd = -1
        self._read_watch = FdWatch(self.ioloop, self._on_readable)
        self._write_watch = FdWatch(self.ioloop, self._on_writable, write=True)
        self._pending = b""
        self.local_address: tuple[str, int] | None = None

    def open(self) -> bool:
        cfg = self.config
        remote: InetAddress = cfg.remote
        local: InetAddress | None = cfg.local
        for addr in (remote, local):
            if addr is not None:
                check_port(addr)
        try:
            infos = socket.getaddrinfo(remote.host or "localhost", remote.port,
                                       inet_family(remote), socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ChardevError(
                f"address resolution failed for {remote.host}:{remote.port}: {exc}") from None
        family, kind, proto, _canon, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            if local is not None:
                host = local.host or ("::" if family == socket.AF_INET6 else "0.0.0.0")
                try:
                    linfo = socket.getaddrinfo(host, local.port or "0", family,
                                               socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
                except (socket.gaierror, UnicodeError) as exc:
                    raise ChardevError(f"address resolution failed for "
                                       f"{local.host}:{local.port}: {exc}") from None
                try:
                    sock.bind(linfo[0][4])
                except OSError as exc:
                    raise ChardevError(f"Failed to bind socket: {exc.strerror}") from None
            try:
                sock.connect(sockaddr)
            except OSError as exc:
                raise ChardevError(f"Failed to connect socket: {exc.strerror}") from None
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._fd = sock.fileno()
        name = sock.getsockname()
        self.local_address = (name[0], name[1])
        return False  # QEMU: udp never reports OPENED

    # -- output ------------------------------------------------------------------------

    def chr_write(self, data: memoryview) -> int:
        sock = self._sock
        if sock is None:
            return len(data)
        try:
            sock.send(data)
        except (BlockingIOError, InterruptedError):
            raise BlockingIOError(errno.EAGAIN, "udp send buffer full") from None
        except OSError as exc:
            # ECONNREFUSED from an earlier datagram, EMSGSIZE...: a datagram is lossy
            log.debug("%s: udp send failed: %s", self.label, exc)
        return len(data)

    def chr_arm_watch(self) -> None:
        if self._sock is None or not self._write_watch.arm(self._fd):
            self.ioloop.call_soon(self.fire_watches)

    def _on_writable(self) -> None:
        self._write_watch.disarm()
        self.fire_watches()

    # -- input -------------------------------------------------------------------------

    def _feed(self) -> None:
        """Hand buffered datagram bytes to the frontend, within can_read."""
        while self._pending:
            n = self.be_can_write()
            if n <= 0:
                return
            chunk, self._pending = self._pending[:n], self._pending[n:]
            self.be_write(chunk)

    def chr_update_read_handler(self) -> None:
        if self.closed or self._sock is None:
            return
        self._feed()
        want = not self._pending and self.be_can_write() > 0
        if want:
            self._read_watch.arm(self._fd)
        else:
            self._read_watch.disarm()
            if self.reader_attached():
                self.schedule_read_recheck()

    def chr_accept_input(self) -> None:
        self._feed()

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None or self.closed:
            return
        if not self._pending and self.be_can_write() > 0:
            try:
                self._pending = sock.recv(READ_BUF_LEN)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if exc.errno != errno.ECONNREFUSED:  # ICMP for an earlier datagram
                    log.warning("%s: udp receive failed: %s", self.label, exc)
            self._feed()
        self.chr_update_read_handler()

    def chr_close(self) -> None:
        if self._sock is not None:
            self._read_watch.disarm()
            self._write_watch.disarm()
            self._sock.close()
            self._sock = None
            self._fd = -1


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> UdpConfig:
    port = opts.get("port")
    if port is None or port == "":
        raise ChardevError("chardev: udp: remote port not specified")
    host = opts.get("host") or "localhost"
    remote = InetAddress(host=host, port=port, ipv4=opt_bool(opts, "ipv4"),
                         ipv6=opt_bool(opts, "ipv6"))
    local = None
    if opts.get("localaddr") is not None or opts.get("localport") is not None:
        local = InetAddress(host=opts.get("localaddr") or "", port=opts.get("localport") or "0",
                            ipv4=opt_bool(opts, "ipv4"), ipv6=opt_bool(opts, "ipv6"))
    return UdpConfig(remote=remote, local=local, **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> UdpConfig:
    remote = qapi_addr(d.take("remote", "object", True), f"{where}.data.remote")
    local_obj = d.take("local", "object")
    local = qapi_addr(local_obj, f"{where}.data.local") if local_obj is not None else None
    if not isinstance(remote, InetAddress) or not (local is None or
                                                   isinstance(local, InetAddress)):
        raise ChardevError("udp addresses must be of type 'inet'")
    return UdpConfig(remote=remote, local=local, **common)


def _to_opts(c: UdpConfig) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("host", c.remote.host), ("port", c.remote.port),
                                  ("ipv4", c.remote.ipv4), ("ipv6", c.remote.ipv6)]
    if c.local is not None:
        out += [("localaddr", c.local.host), ("localport", c.local.port)]
    return out


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    """udp:[HOST]:PORT[@[LOCALADDR]:LOCALPORT]"""
    if not text.startswith("udp:"):
        return None
    m = re.match(r"([^:@]*):([^@]+?)(?:@([^:]*):(.+))?\Z", text[4:])
    if not m:
        raise NotLegacySyntax
    opts = {"backend": "udp", "host": m.group(1), "port": m.group(2)}
    if m.group(4) is not None:
        opts["localaddr"] = m.group(3)
        opts["localport"] = m.group(4)
    return opts


OPTIONS = BackendOptions(
    config=UdpConfig, chardev=UdpChardev,
    keys={"host": STR, "port": STR, "localaddr": STR, "localport": STR, "ipv4": BOOL,
          "ipv6": BOOL},
    from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
