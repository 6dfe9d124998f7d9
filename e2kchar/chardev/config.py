"""Typed backend configurations: the one form that -chardev, -serial and QAPI all map to.

A field left at None means "not given"; backends apply QEMU's defaults when they open, so a
parsed config converts back to the same option string or QAPI dict.
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


@dataclass(kw_only=True)
class NullConfig(BackendConfig):
    TYPE: ClassVar[str] = "null"


@dataclass(kw_only=True)
class TestdevConfig(BackendConfig):
    TYPE: ClassVar[str] = "testdev"


@dataclass(kw_only=True)
class FileConfig(BackendConfig):
    TYPE: ClassVar[str] = "file"
    out: str
    in_: str | None = None
    append: bool | None = None


@dataclass(kw_only=True)
class PipeConfig(BackendConfig):
    TYPE: ClassVar[str] = "pipe"
    device: str


@dataclass(kw_only=True)
class SerialConfig(BackendConfig):
    """A host tty or any pyserial URL (loop://, socket://, rfc2217://, spy://)."""

    TYPE: ClassVar[str] = "serial"
    device: str


@dataclass(kw_only=True)
class StdioConfig(BackendConfig):
    TYPE: ClassVar[str] = "stdio"
    signal: bool | None = None


@dataclass(kw_only=True)
class RingbufConfig(BackendConfig):
    TYPE: ClassVar[str] = "ringbuf"
    size: int | None = None


@dataclass(kw_only=True)
class MemoryConfig(RingbufConfig):
    TYPE: ClassVar[str] = "memory"


@dataclass(kw_only=True)
class MuxConfig(BackendConfig):
    TYPE: ClassVar[str] = "mux"
    chardev: str


@dataclass(kw_only=True)
class PtyConfig(BackendConfig):
    TYPE: ClassVar[str] = "pty"
    history: int | None = None


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


@dataclass(kw_only=True)
class UdpConfig(BackendConfig):
    TYPE: ClassVar[str] = "udp"
    remote: InetAddress
    local: InetAddress | None = None


CONFIG_TYPES: dict[str, type[BackendConfig]] = {
    cls.TYPE: cls
    for cls in (
        NullConfig,
        TestdevConfig,
        FileConfig,
        PipeConfig,
        SerialConfig,
        StdioConfig,
        RingbufConfig,
        MemoryConfig,
        MuxConfig,
        PtyConfig,
        SocketConfig,
        UdpConfig,
    )
}

#: CLI aliases for backend names (QEMU: tty -> serial).
ALIASES = {"tty": "serial"}
