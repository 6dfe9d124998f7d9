"""What every backend config shares (ChardevCommon) and the socket address types.

Each backend's own config dataclass lives in its module (e2kchar.chardev.backends.*); all
of them are importable from e2kchar.chardev.config. A field left at None means "not given";
backends apply QEMU's defaults when they open, so a parsed config converts back to the same
option string or QAPI dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(kw_only=True)
class InetAddress:
    host: str
    port: str
    numeric: bool | None = None
    to: int | None = None
    ipv4: bool | None = None
    ipv6: bool | None = None


@dataclass(kw_only=True)
class UnixAddress:
    path: str
    abstract: bool | None = None
    tight: bool | None = None


@dataclass(kw_only=True)
class FdAddress:
    str: str


SocketAddress = InetAddress | UnixAddress | FdAddress


@dataclass(kw_only=True)
class BackendConfig:
    """ChardevCommon: what every backend accepts."""

    TYPE: ClassVar[str] = ""
    logfile: str | None = None
    logappend: bool | None = None
    logtimestamp: bool | None = None

    @property
    def type(self) -> str:
        return self.TYPE
