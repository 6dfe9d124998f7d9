"""The package's one error root.

Every exception the package raises on purpose derives from `E2kcharError`, so an embedding
emulator can catch the whole package's failures with one ``except`` clause. Subclasses keep
their historical second bases (``ValueError`` for parse errors, ``AssertionError`` for the
console test API) so code that caught those keeps working.
"""

from __future__ import annotations

__all__ = ["E2kcharError"]


class E2kcharError(Exception):
    """Root of every error e2kchar raises (chardev, machine, loader, device tree, devices)."""
