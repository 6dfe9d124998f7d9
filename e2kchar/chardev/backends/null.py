"""null: swallows output, never has input, never reports OPENED (as QEMU)."""

from __future__ import annotations

from ..base import Chardev
from ..config import NullConfig


class NullChardev(Chardev[NullConfig]):
    TYPE = "null"

    def open(self) -> bool:
        return False
