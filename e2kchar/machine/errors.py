"""The machine's configuration error (a leaf module, so every part of the machine can raise it)."""

from __future__ import annotations

from ..errors import E2kcharError


class MachineError(E2kcharError):
    """A configuration or image problem (bad ELF, image outside RAM, missing file)."""
