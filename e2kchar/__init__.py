"""e2kchar: serial device models for emulated E2K machines over a QEMU-style chardev layer.

The names below load on first use (PEP 562): importing a part of the package (the
options, the devices, the CLI) does not start the chardev registry's asyncio machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import E2kcharError

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    chardev = importlib.import_module(f"{__name__}.chardev")
    if name not in __all__:
        # a subpackage reached as an attribute (e2kchar.options after `import e2kchar`)
        return chardev.import_submodule(__name__, name)
    value = getattr(chardev, name)
    globals()[name] = value
    return value
