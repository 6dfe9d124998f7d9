"""null: swallows output, never has input, never reports OPENED (as QEMU)."""

from __future__ import annotations

from .base import Chardev


class NullChardev(Chardev):
    TYPE = "null"

    def open(self) -> bool:
        return False
