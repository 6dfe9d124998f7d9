"""e2kchar: serial device models for emulated E2K machines over a QEMU-style chardev layer."""

from .chardev import (
    CharBackend,
    Chardev,
    ChardevError,
    ChardevEvent,
    ChardevIoctl,
    ChardevRegistry,
    SerialParams,
    Tiocm,
)
from .errors import E2kcharError

__version__ = "0.1.0"

__all__ = [
    "Chardev",
    "CharBackend",
    "ChardevError",
    "ChardevEvent",
    "ChardevIoctl",
    "ChardevRegistry",
    "E2kcharError",
    "SerialParams",
    "Tiocm",
    "__version__",
]
