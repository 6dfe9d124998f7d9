"""The chardev layer: QEMU's backend/frontend split, in Python."""

from .base import Chardev, ChardevHost, Frontend, Watch
from .frontend import CharBackend
from .ioloop import IOLoop
from .registry import ChardevRegistry
from .types import (
    READ_BUF_LEN,
    ChardevError,
    ChardevEvent,
    ChardevIoctl,
    SerialParams,
    Tiocm,
)

__all__ = [
    "Chardev",
    "CharBackend",
    "ChardevError",
    "ChardevEvent",
    "ChardevHost",
    "ChardevIoctl",
    "ChardevRegistry",
    "Frontend",
    "IOLoop",
    "READ_BUF_LEN",
    "SerialParams",
    "Tiocm",
    "Watch",
]
