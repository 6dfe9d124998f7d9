"""Socket addresses for the socket family of backends (socket, rfc2217, udp): unix
sun_path bytes, port checks, address families, name resolution with QEMU's errors, and the
chardev filenames QEMU shows for them (query-chardev)."""

from __future__ import annotations

import os
import socket
from typing import Any

from .configbase import FdAddress, InetAddress, SocketAddress, UnixAddress
from .types import ChardevError

__all__ = ["CONNECT_TIMEOUT", "UNIX_PATH_MAX", "check_port", "inet_family", "resolve",
           "unix_sockaddr"]

#: sizeof(sockaddr_un.sun_path) on Linux
UNIX_PATH_MAX = 108
CONNECT_TIMEOUT = 10.0


def strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def host_port(sockaddr: Any) -> tuple[str, str]:
    host, port = sockaddr[0], sockaddr[1]
    return host, str(port)


def bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def unix_sockaddr(addr: UnixAddress) -> bytes:
    """The sun_path bytes for a unix address (abstract names get the leading NUL)."""
    raw = os.fsencode(addr.path)
    if addr.abstract:
        raw = b"\0" + raw
        if len(raw) > UNIX_PATH_MAX:
            raise ChardevError(f"UNIX socket path '{addr.path}' is too long")
        if addr.tight is False:
            raw = raw.ljust(UNIX_PATH_MAX, b"\0")
        return raw
    if len(raw) >= UNIX_PATH_MAX:
        raise ChardevError(f"UNIX socket path '{addr.path}' is too long")
    return raw


def check_port(addr: InetAddress) -> None:
    """A numeric port above 65535 is an error (getaddrinfo would silently wrap it)."""
    port = addr.port
    if port.isdigit() and int(port) > 65535:
        raise ChardevError(f"Port '{port}' out of range (0-65535) in address "
                           f"'{addr.host}:{port}'")


def inet_family(addr: InetAddress) -> int:
    """The address family ipv4=/ipv6= ask for (AF_UNSPEC: either)."""
    if addr.ipv4 and not addr.ipv6:
        return socket.AF_INET
    if addr.ipv6 and not addr.ipv4:
        return socket.AF_INET6
    return socket.AF_UNSPEC


def resolve(addr: InetAddress, passive: bool) -> list[tuple[Any, ...]]:
    """getaddrinfo for a stream socket; a failure is QEMU's 'address resolution failed'."""
    host: str | None = addr.host
    if not host:
        host = None if passive else "localhost"
    flags = (socket.AI_PASSIVE if passive else 0) | (socket.AI_NUMERICHOST if addr.numeric
                                                      else 0)
    try:
        return socket.getaddrinfo(host, addr.port, inet_family(addr), socket.SOCK_STREAM, 0,
                                  flags)
    except (socket.gaierror, UnicodeError) as exc:
        raise ChardevError(
            f"address resolution failed for {addr.host}:{addr.port}: {exc}") from None


def _unix_suffix(addr: UnixAddress, listen: bool) -> str:
    text = ",server" if listen else ""
    if addr.abstract:
        text += ",abstract" + (",tight" if addr.tight is not False else "")
    return text


def disconnected_filename(addr: SocketAddress, kind: str, listen: bool) -> str:
    """QEMU's filename while nobody is connected; kind is tcp, telnet or rfc2217."""
    server = ",server" if listen else ""
    if isinstance(addr, InetAddress):
        return f"disconnected:{kind}:{addr.host}:{addr.port}{server}"
    if isinstance(addr, UnixAddress):
        return f"disconnected:unix:{addr.path}{_unix_suffix(addr, listen)}"
    assert isinstance(addr, FdAddress)
    return f"disconnected:fd:{addr.str}{server}"


def connected_names(addr: SocketAddress, kind: str, listen: bool,
                    sock: socket.socket) -> tuple[str, str, str] | None:
    """(filename, local name, peer name) of a connection; None if it is already gone."""
    if sock.family == socket.AF_UNIX:
        path = addr.path if isinstance(addr, UnixAddress) else ""
        suffix = _unix_suffix(addr, listen) if isinstance(addr, UnixAddress) else \
            (",server" if listen else "")
        return f"unix:{path}{suffix}", path, path
    try:
        lhost, lport = host_port(sock.getsockname())
        rhost, rport = host_port(sock.getpeername())
    except OSError:
        return None
    local, peer = f"{bracket(lhost)}:{lport}", f"{bracket(rhost)}:{rport}"
    server = ",server" if listen else ""
    return f"{kind}:{local}{server} <-> {peer}", local, peer
