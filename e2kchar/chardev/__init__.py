"""The chardev layer: QEMU's backend/frontend split, in Python.

Where things are:
- ``frontend.CharBackend``: a device's handle on its chardev (what frontends use);
- ``base.Chardev``: the backend contract, with the ``Frontend`` and ``ChardevHost``
  protocols (what a backend may use of its frontend and of its registry);
- ``backends/<name>.py``: one module per backend type, with its config and option syntax;
- ``spec`` / ``qemuopts``: the -chardev / -serial / QAPI driver over those option tables;
- ``registry.ChardevRegistry``: creation, removal, queries; ``hotswap``: chardev-change;
- ``ioloop``: the I/O thread (``IOLoop``) and ``FdWatch`` for backends' fds.

The names below load on first use (PEP 562), so that importing one part of the layer
(the types, the option parser) does not import asyncio with the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: exported name -> the submodule that defines it
_EXPORTS = {
    "Chardev": "base", "ChardevHost": "base", "Frontend": "base", "Watch": "base",
    "CharBackend": "frontend", "IOLoop": "ioloop", "ChardevRegistry": "registry",
    "READ_BUF_LEN": "types", "ChardevError": "types", "ChardevEvent": "types",
    "ChardevIoctl": "types", "SerialParams": "types", "Tiocm": "types",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # a submodule reached as an attribute (e2kchar.chardev.registry after
        # `import e2kchar.chardev`), as when this package imported them all
        return import_submodule(__name__, name)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def import_submodule(package: str, name: str) -> Any:
    """The submodule package.name, or AttributeError as a missing attribute would."""
    if name.startswith("__"):  # probes such as __wrapped__ or __path__ name no module
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    try:
        return importlib.import_module(f"{package}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.{name}":
            raise
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
