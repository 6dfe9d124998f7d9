"""The machine's counters, one slotted object every part of the machine increments."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Stats:
    """Slotted: the MMIO callbacks bump a counter on every guest access."""

    mmio_reads: int = 0
    mmio_writes: int = 0
    irqs: int = 0
    traps: int = 0
    kicks: int = 0
    retired: int = 0
    retire_failures: int = 0
    emu_starts: int = 0
    wfi_sleeps: int = 0
    kicker_stops: int = 0
    idle_sleeps: int = 0
    #: `rdtime`s emulated (unicorn has no time CSR); each costs a hook, not an emu_start
    rdtimes: int = 0
