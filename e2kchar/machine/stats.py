"""The machine's counters, one slotted object every part of the machine increments."""

from __future__ import annotations


class Stats:
    """Slotted: the MMIO callbacks bump a counter on every guest access. A plain class, not
    a dataclass: a slotted dataclass costs about 3.6M instructions to create at start-up
    (docs/architecture.md). Every counter starts at 0; declare a new one here."""

    mmio_reads: int
    mmio_writes: int
    irqs: int
    traps: int
    kicks: int
    retired: int
    retire_failures: int
    emu_starts: int
    wfi_sleeps: int
    kicker_stops: int
    idle_sleeps: int
    #: `rdtime`s emulated (unicorn has no time CSR); each costs a hook, not an emu_start
    rdtimes: int

    __slots__ = tuple(__annotations__)

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        """Counter name -> value, in declaration order."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "Stats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) + ")"
