"""Typed backend configurations: the one form that -chardev, -serial and QAPI all map to.

Each backend's config dataclass is defined in its own module (e2kchar.chardev.backends.*),
next to the backend; this module gathers them, with the shared pieces (configbase), so
that ``from e2kchar.chardev.config import SocketConfig`` keeps working.
"""

from __future__ import annotations

from .backends.file import FileConfig
from .backends.mux import MuxConfig
from .backends.null import NullConfig
from .backends.pipe import PipeConfig
from .backends.pty import PtyConfig
from .backends.ringbuf import MemoryConfig, RingbufConfig
from .backends.serial import SerialConfig
from .backends.socket import SocketConfig
from .backends.stdio import StdioConfig
from .backends.testdev import TestdevConfig
from .backends.udp import UdpConfig
from .configbase import BackendConfig, FdAddress, InetAddress, SocketAddress, UnixAddress
from .spec import ALIASES, BACKENDS

#: QAPI type name -> config class of every built-in backend
CONFIG_TYPES: dict[str, type[BackendConfig]] = {name: o.config for name, o in BACKENDS.items()}

__all__ = [
    "ALIASES",
    "CONFIG_TYPES",
    "BackendConfig",
    "FdAddress",
    "FileConfig",
    "InetAddress",
    "MemoryConfig",
    "MuxConfig",
    "NullConfig",
    "PipeConfig",
    "PtyConfig",
    "RingbufConfig",
    "SerialConfig",
    "SocketAddress",
    "SocketConfig",
    "StdioConfig",
    "TestdevConfig",
    "UdpConfig",
    "UnixAddress",
]
