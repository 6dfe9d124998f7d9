"""IrqLine: a device's interrupt output, as level-triggered wire.

Wiring it to an interrupt controller or a CPU: docs/embedding.md ("IrqLine wiring").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class IrqLine:
    """A level-triggered interrupt wire; on_change(level) is called on every edge."""

    __slots__ = ("level", "on_change", "raises")

    def __init__(self, on_change: Callable[[bool], object] | None = None) -> None:
        self.level = False
        self.on_change = on_change
        #: number of low->high edges seen (handy for tests and statistics)
        self.raises = 0

    def set(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        if level:
            self.raises += 1
        cb = self.on_change
        if cb is not None:
            try:
                cb(level)
            except Exception:  # an emulator's callback must not break the device
                log.exception("irq on_change callback failed")

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def __bool__(self) -> bool:
        return self.level

    def __repr__(self) -> str:
        return f"IrqLine(level={self.level})"
