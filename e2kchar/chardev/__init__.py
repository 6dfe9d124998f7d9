"""The chardev layer: QEMU's backend/frontend split, in Python.

Where things are:
- ``frontend.CharBackend``: a device's handle on its chardev (what frontends use);
- ``base.Chardev``: the backend contract, with the ``Frontend`` and ``ChardevHost``
  protocols (what a backend may use of its frontend and of its registry);
- ``backends/<name>.py``: one module per backend type, with its config and option syntax;
- ``spec`` / ``qemuopts``: the -chardev / -serial / QAPI driver over those option tables;
- ``registry.ChardevRegistry``: creation, removal, queries; ``hotswap``: chardev-change;
- ``ioloop``: the I/O thread (``IOLoop``) and ``FdWatch`` for backends' fds.
"""

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
