"""The E2K machine on a unicorn RV64 CPU: the facade users construct.

`Machine` builds and wires its parts; each has its own small interface and module:

- board.py: devices, map, PLIC/CLINT/PCI/exit wiring (knows nothing of the CPU);
- loader.py: images in RAM, boot blocks, the restore after a reset;
- cpu.py: the hart (unicorn, registers, CSRs, fetch, address translation);
- traps.py, interrupts.py, retire.py: trap delivery, interrupt injection, retiring an
  access a stop rolled back;
- mmio.py: the MMIO callbacks (the hot path), kick.py: the kick protocol;
- runloop.py: run() and the kicker thread over the run state of state.py.

Paging guests (Linux) run with no option: cpu.py switches from the identity TLB to
unicorn's MMU when a guest turns satp on, and `Hart.translate` walks the guest's Sv39/48/57
tables (paging.py) for fetch, retire, the trap-vector check and wfi detection; traps.py
gives page faults their stval.

Threads. run() executes the guest on the caller's thread (the CPU thread). Devices are
reached through their read/write interface from MMIO callbacks on that thread; host input
arrives on the registry's I/O thread; the kicker thread turns requests (interrupt level
changes, stop/pause/reset, timer deadlines, the run timeout) into a stop of emu_start
without duplicating or losing an MMIO access (kick.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from unicorn.unicorn_py3.unicorn import Uc

from e2kchar.chardev import ChardevRegistry
from e2kchar.chardev.base import Chardev
from e2kchar.devices import IrqLine

from . import layout as L
from .board import Board
from .clock import GuestClock
from .cpu import Hart, check_tlb
from .errors import MachineError
from .idle import IdleMonitor
from .interrupts import InterruptUnit
from .kick import KickProtocol
from .loader import ImageLoader
from .misc import Device
from .mmio import MmioDispatch
from .ram import RamMemory
from .result import RunResult
from .retire import Retirer
from .runloop import RunLoop
from .state import RunControl
from .stats import Stats
from .traps import TrapUnit

__all__ = ["Machine", "MachineError", "RamMemory", "RunResult"]

log = logging.getLogger(__name__)


class Machine:
    """The E2K machine (docs/interfaces.md) with an RV64 stand-in CPU."""

    def __init__(self, registry: ChardevRegistry | None = None, *, ram_size: int = L.DEFAULT_RAM_SIZE,
                 append: str = "", serial: list[Chardev | None] | None = None,
                 lms: Chardev | None = None, clock: str = "virtual",
                 tlb: str = "virtual") -> None:
        check_tlb(tlb)
        self.tlb = tlb
        if not isinstance(ram_size, int) or ram_size < 4 << 20 or ram_size % 4096:
            raise MachineError(f"RAM size {ram_size} must be a multiple of 4 KiB, at least 4 MiB")
        if L.RAM_BASE + ram_size > L.IO_BASE:
            raise MachineError(f"RAM size {ram_size >> 20} MiB does not fit the map: RAM at "
                               f"{L.RAM_BASE:#x} may end at {L.IO_BASE:#x} at most "
                               f"({(L.IO_BASE - L.RAM_BASE) >> 20} MiB)")
        serial = list(serial or [])
        if len(serial) > 3:
            raise MachineError(f"{len(serial)} serial ports given; the machine has 3 "
                               "(Am85C30 A, Am85C30 B, COM1)")
        serial += [None] * (3 - len(serial))
        if clock not in ("virtual", "host"):
            raise MachineError(f"clock must be 'virtual' or 'host', not {clock!r}")
        try:
            self.boot_info = L.build_boot_info(ram_size, append)
        except ValueError as exc:
            raise MachineError(str(exc)) from None
        self.ram_size = ram_size
        self.append = append
        self.ram_layout = L.RamLayout(ram_size)
        self.clock = GuestClock(clock)
        self._own_registry = registry is None
        self.registry = registry if registry is not None else ChardevRegistry()
        try:
            self._init(serial, lms)
        except BaseException:
            if self._own_registry:
                self.registry.close()
            raise

    def _init(self, serial: list[Chardev | None], lms: Chardev | None) -> None:
        if getattr(self.registry, "guest_clock", None) is None:
            self.registry.guest_clock = self.guest_time
        self._stats = Stats()
        self._control = RunControl()
        self.memory = RamMemory.anonymous(L.RAM_BASE, self.ram_size)
        self._loader = ImageLoader(self.memory, self.ram_layout, self.boot_info, self.append)
        #: the hart: where paging, trap vectors and fetch live (see cpu.py)
        self.cpu = Hart(self.memory, self.tlb)
        kick = KickProtocol(self._control, self._stats, self.cpu)
        # the board's callbacks reach parts made after it (they need its PLIC and CLINT);
        # no device raises an interrupt or exits while it is being built
        try:
            self.board = Board(self.memory, self.clock, serial, lms,
                               on_plic_output=lambda ctx, level: irqs.plic_output(ctx, level),
                               on_timer_change=lambda: irqs.timer_changed(),
                               on_exit=lambda kind, code: self._run.guest_exit(kind, code))
        except BaseException:
            self.memory.close()
            raise
        board = self.board
        self.device_clock, self.plic, self.clint = board.device_clock, board.plic, board.clint
        self.exit_device, self.pci = board.exit_device, board.pci
        self.virtio_console, self.devices, self.irq_lines = (board.virtio_console, board.devices,
                                                              board.irq_lines)
        self._traps = TrapUnit(self.cpu, self._control, self._stats, self.clint.mtime)
        irqs = InterruptUnit(self.cpu, self._traps, self._control, kick, self._stats,
                             self.plic, self.clint, self.clock)
        self._interrupts = irqs
        #: completes an MMIO access a stop rolled back (the kick protocol relies on it)
        self.retirer = Retirer(self.cpu, board.region_at, self._stats)
        self._mmio = MmioDispatch(kick, self._stats)
        clint = self.clint
        #: the idle back-off for guests that busy-poll a register (idle.py)
        self.idle = IdleMonitor(self._control, self._stats, lambda: clint.time_reads)
        self._run = RunLoop(self._control, self.cpu, self._traps, irqs, self.retirer, kick,
                            self._stats, self.clock, self._reset_now, self.idle)
        self.cpu.on_power_on(self._map_board)
        self.cpu.on_power_on(self._traps.install)
        try:
            self.cpu.power_on(self._loader.code_pages())
        except BaseException:
            board.close()
            self.memory.close()
            raise
        self._loader.write_boot_blocks()
        self._boot_regs()
        self.registry.ioloop.add_listener(self.idle.activity)
        self._run.start()

    def _map_board(self, uc: Uc) -> None:
        for region in self.board.regions:
            self._mmio.map(uc, region)

    def _boot_regs(self) -> None:
        lay = self.ram_layout
        self.cpu.boot(self._loader.entry, lay.fdt_addr, lay.boot_info_addr)

    def _reset_now(self) -> None:
        """Devices, RAM contents, CPU state and guest time start over."""
        with self._control.lock:
            self._run.clear()
            self._traps.reset()
            self._interrupts.reset()
        self.board.reset()
        self._loader.restore()
        self.clock.reset()
        self.cpu.power_on(self._loader.code_pages())
        self._boot_regs()

    @property
    def uc(self) -> Uc:
        """The unicorn CPU object (a new one after each reset)."""
        return self.cpu.uc

    # ------------------------------------------------------------------------------------
    # devices

    def map_device(self, name: str, base: int, size: int, device: Device,
                   irq: int | None = None) -> IrqLine | None:
        """Map an extra device (tests, extensions) before run(); returns its IrqLine if irq."""
        region = self.board.add_region(name, base, size, device)
        with self._control.lock:
            self._mmio.map(self.cpu.uc, region)
        return self.board.irq(irq) if irq is not None else None

    def add_virtio_port(self, chardev: Chardev | None, name: str | None = None,
                        console: bool = True) -> int:
        """Add a port to the virtio-console in slot 0; returns the port number."""
        return self.board.add_virtio_port(chardev, name, console)

    # ------------------------------------------------------------------------------------
    # loading

    def load(self, path: str | Path) -> int:
        """Load an ELF (PT_LOAD segments; entry = e_entry) or a raw image at the RAM base."""
        with self._control.lock:
            entry = self._loader.load(path)
            self._new_code()
        self._boot_regs()
        return entry

    def load_raw(self, path: str | Path, addr: int) -> None:
        """QEMU's generic loader: a raw file at a guest address (no entry change)."""
        with self._control.lock:
            self._loader.load_raw(path, addr)
            self._new_code()

    def load_initrd(self, path: str | Path,
                    kernel_addr: int = L.RAM_BASE + L.KERNEL_OFFSET) -> tuple[int, int]:
        """QEMU's -initrd: the file in RAM above the kernel at `kernel_addr` (where QEMU's
        riscv boards put it) and /chosen linux,initrd-start/end in the device tree; returns
        [start, end)."""
        with self._control.lock:
            return self._loader.load_initrd(path, kernel_addr)

    def _new_code(self) -> None:
        self.cpu.mark_code(self._loader.code_pages())
        self.cpu.flush()

    # ------------------------------------------------------------------------------------
    # running and control

    def run(self, timeout: float | None = 10.0) -> RunResult:
        """Run the guest on this thread until it exits, traps fatally, is stopped, resets
        itself, or `timeout` seconds of host time pass (None: no limit)."""
        return self._run.run(timeout)

    def guest_time(self) -> float:
        """Seconds of guest time since reset (for logtimestamp)."""
        return self.clock.now()

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since the machine was made: MMIO accesses, PLIC output edges (irqs),
        traps the harness delivered (exceptions and injected timer/software interrupts;
        SEIP traps unicorn takes itself are not counted), kicks, accesses retired by hand
        after a stop, CPU stops by the kicker, emu_start calls, wfi sleeps."""
        return self._stats.as_dict()

    @property
    def pc(self) -> int:
        return self.cpu.pc

    def stop(self) -> None:
        """End run() soon (thread-safe)."""
        self._run.stop()

    def pause(self, timeout: float = 5.0) -> bool:
        """QMP stop: returns once the CPU is paused (True) or the wait timed out."""
        return self._run.pause(timeout)

    def resume(self) -> None:
        """QMP cont."""
        self._run.resume()

    @property
    def paused(self) -> bool:
        return self._control.paused

    def reset(self) -> None:
        """system_reset: devices, RAM contents, CPU state and guest time start over."""
        if not self._run.defer_reset():
            self._reset_now()

    def close(self) -> None:
        if not self._run.close():
            return  # closed already
        self.registry.ioloop.remove_listener(self.idle.activity)
        self.board.close()
        if self._own_registry:
            self.registry.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
