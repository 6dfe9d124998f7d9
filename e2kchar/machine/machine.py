"""The E2K machine on a unicorn RV64 CPU: RAM, the bus, boot blocks and the CPU loop.

Threads. run() executes the guest on the caller's thread (the CPU thread). Devices are
reached through their read/write interface from MMIO callbacks on that thread; host input
arrives on the registry's I/O thread; a "kicker" thread turns requests (interrupt level
changes, stop/pause/reset, timer deadlines, the run timeout) into a stop of emu_start.

Kicks never duplicate or lose an MMIO access (unicorn-harness-notes pitfall 2). A kick sets
`_kick` under the lock. Every MMIO callback, after doing its access, looks at `_kick`; if set
it calls emu_stop() itself and records the access, because unicorn rolls the instruction
back: the loop then retires that instruction by hand (decode it, write rd with the recorded
value, step pc; see `_retire`), so it is never executed twice. A guest that makes no MMIO
access is stopped by the kicker thread, but only once it provably runs guest code: no
callback completed for a grace period while the CPU thread used CPU time. Otherwise a stop
could land in the tail of a callback that already looked at `_kick` (its thread waiting for
the GIL or descheduled) and roll back an access nobody recorded.

Interrupts. The PLIC output drives mip.SEIP (written on the CPU thread: directly from an
MMIO callback, or by the loop before emu_start) and unicorn takes the trap natively. The
M-mode timer and software interrupts (and MEIP for guests that enable MEIE but not SEIE)
cannot be set in mip, so the loop injects them by hand at a safe point; while one is raised
but masked the kicker looks again every millisecond. wfi returns from emu_start: the loop
then sleeps on a condition until an interrupt, a timer deadline or a request.

Traps. unicorn reports guest exceptions to UC_HOOK_INTR (ecall, illegal instruction, faults)
or ends emu_start (ebreak, unmapped access, fetch from a device window); the harness delivers
them to mtvec/stvec as the privileged spec says, emulates `rdtime` from the CLINT's mtime,
and ends the run with a report when no handler is installed or the handler cannot recover.
Each pc write from a hook ends that emu_start (see `_after_pc_write`): a later stop in the
same emu_start would not be precise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unicorn import (
    UC_ARCH_RISCV,
    UC_ERR_FETCH_PROT,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR,
    UC_HOOK_TLB_FILL,
    UC_MEM_FETCH,
    UC_MODE_RISCV64,
    UC_PROT_ALL,
    UC_PROT_READ,
    UC_PROT_WRITE,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import riscv_const as R

from e2kchar.chardev import ChardevRegistry
from e2kchar.chardev.base import Chardev
from e2kchar.devices import IrqLine

from . import layout as L
from .board import Board, Region
from .clock import GuestClock
from .errors import MachineError
from .loader import ImageLoader
from .misc import Device, PortWindow
from .ram import RamMemory
from .rvinsn import WFI, decode_mem, decode_rdtime, insn_length, sign_extend

log = logging.getLogger(__name__)

U64 = (1 << 64) - 1
_PROT_RW = UC_PROT_READ | UC_PROT_WRITE
UNTIL = U64  # odd: never a PC, so emu_start runs until something stops it
MSTATUS_SIE, MSTATUS_MIE, MSTATUS_SPIE, MSTATUS_MPIE = 1 << 1, 1 << 3, 1 << 5, 1 << 7
MSTATUS_SPP, MSTATUS_MPP = 1 << 8, 3 << 11
MIP_MSIP, MIP_MTIP, MIP_SEIP, MIP_MEIP = 1 << 3, 1 << 7, 1 << 9, 1 << 11
CAUSE_INSN_ACCESS, CAUSE_ILLEGAL, CAUSE_BREAKPOINT = 1, 2, 3
CAUSE_LOAD_MISALIGNED, CAUSE_LOAD_ACCESS = 4, 5
CAUSE_STORE_MISALIGNED, CAUSE_STORE_ACCESS = 6, 7
CAUSE_ECALL_U = 8
IRQ_MSI, IRQ_MTI, IRQ_MEI = 3, 7, 11
CAUSE_NAMES = {0: "instruction address misaligned", 1: "instruction access fault",
               2: "illegal instruction", 3: "breakpoint", 4: "load address misaligned",
               5: "load access fault", 6: "store address misaligned", 7: "store access fault",
               8: "ecall from U-mode", 9: "ecall from S-mode", 11: "ecall from M-mode",
               12: "instruction page fault", 13: "load page fault", 15: "store page fault"}
INTERRUPT_NAMES = {1: "supervisor software interrupt", 3: "machine software interrupt",
                   5: "supervisor timer interrupt", 7: "machine timer interrupt",
                   9: "supervisor external interrupt", 11: "machine external interrupt"}
#: a kick waits this long for an MMIO callback to take it before stopping the CPU itself
KICK_GRACE = 0.0005
#: ... and the CPU thread must have run this long (CPU time) without an MMIO callback
KICK_CPU_NS = 200_000
#: while a timer interrupt is pending but masked, look again this often
MASKED_POLL = 0.001
TRAP_STORM = 20_000       # the same fault at the same pc this many times in a row
VECTOR_STORM = 64          # the trap handler itself trapping this many times in a row


@dataclass
class RunResult:
    """Why run() returned. exit_code: the guest's code for "exit", 124 for "timeout",
    1 for "trap" (the report is in pc/cause/tval/message), 0 otherwise."""

    reason: str
    exit_code: int = 0
    pc: int = 0
    cause: int | None = None
    tval: int | None = None
    message: str = ""


def _mmio_map_fast(uc: Uc, base: int, size: int, rd: Callable[..., int],
                   wr: Callable[..., None]) -> None:
    """mmio_map with our callbacks registered directly (handle, offset, size[, value], ud):
    the binding's two wrapper layers cost about a third of each MMIO access. Our callbacks
    never raise. Falls back to the public API if the binding's internals differ."""
    try:
        from unicorn.unicorn_py3 import unicorn as ucmod
        read_t, write_t = ucmod.MMIO_READ_CFUNC, ucmod.MMIO_WRITE_CFUNC
        rd_ptr, wr_ptr = read_t(rd), write_t(wr)
        status = ucmod.uclib.uc_mmio_map(uc._uch, base, size, rd_ptr, None, wr_ptr, None)
    except (ImportError, AttributeError, TypeError):
        uc.mmio_map(base, size, lambda u, o, s, d: rd(None, o, s, d), None,
                    lambda u, o, s, v, d: wr(None, o, s, v, d), None)
        return
    if status != 0:
        raise UcError(status)
    uc._mmio_callbacks[(base, base + size)] = (rd_ptr, wr_ptr)  # keep them alive


def _hook_tlb_fill_fast(uc: Uc, raw: Callable[..., bool], slow: Callable[..., bool]) -> None:
    """UC_HOOK_TLB_FILL over the whole address space, registered directly like
    _mmio_map_fast (the fill runs once per MMIO access when an MMIO page and a hot RAM page
    share a TLB index, as 0x1_0100_0000 and 0x8000_0000 do)."""
    try:
        import ctypes

        from unicorn.unicorn_py3 import unicorn as ucmod
        fptr = ucmod.HOOK_TLB_FILL_CFUNC(raw)
        handle = ucmod.uc_hook_h()
        status = ucmod.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), UC_HOOK_TLB_FILL, fptr,
                                         ctypes.c_void_p(0), ctypes.c_uint64(1),
                                         ctypes.c_uint64(0))
    except (ImportError, AttributeError, TypeError):
        uc.hook_add(UC_HOOK_TLB_FILL, slow)
        return
    if status != 0:
        raise UcError(status)
    uc._callbacks[handle.value] = fptr


#: value mask per access size (unicorn's MMIO callbacks see 1, 2, 4 and 8 bytes)
_SIZE_MASKS = tuple((1 << (8 * n)) - 1 for n in range(9))


@dataclass(slots=True)
class _Stats:
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


class Machine:
    """The E2K machine (ARCHITECTURE.md section 6) with an RV64 stand-in CPU."""

    def __init__(self, registry: ChardevRegistry | None = None, *, ram_size: int = L.DEFAULT_RAM_SIZE,
                 append: str = "", serial: list[Chardev | None] | None = None,
                 lms: Chardev | None = None, clock: str = "virtual",
                 tlb: str = "virtual") -> None:
        if tlb not in ("virtual", "cpu"):
            raise MachineError(f"tlb must be 'virtual' (fast, identity-mapped, M-mode) or "
                               f"'cpu' (honours satp/PMP), not {tlb!r}")
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

    def _init(self, serial: list[Chardev | None], lms: Chardev | None = None) -> None:
        if getattr(self.registry, "guest_clock", None) is None:
            self.registry.guest_clock = self.guest_time
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.memory = RamMemory.anonymous(L.RAM_BASE, self.ram_size)
        self._loader = ImageLoader(self.memory, self.ram_layout, self.boot_info, self.append)
        self._stats = _Stats()
        self._closed = False
        # CPU-loop state (guarded by _lock where another thread touches it)
        self._kick = False
        self._kick_time = 0.0
        self._kick_count = 0
        self._kick_cpu = 0
        self._cpu_clock: int | None = None
        self._stop_issued = False
        self._pending: list[tuple[str, int, int, int]] = []
        self._last: tuple[str, int, int, int] | None = None
        self._pending_prev: tuple[str, int, int, int] | None = None
        self._in_emu = False
        self._idling = False
        self._cpu_ident: int | None = None
        self._running = False
        self._stop_req = False
        self._pause_req = False
        self._paused = False
        self._reset_req = False
        self._exit: tuple[str, int] | None = None
        self._report: RunResult | None = None           # a trap that ends the run
        self._timer_poll = False
        self._run_deadline = float("inf")
        self._seip = False
        self._last_trap: tuple[int, int] = (0, -1)
        self._trap_repeat = 0
        self._code_pages: set[int] = set()
        self._pc = L.RAM_BASE
        try:
            self.board = Board(self.memory, self.clock, serial, lms,
                               on_plic_output=self._plic_output,
                               on_timer_change=self._timer_changed, on_exit=self._on_exit)
        except BaseException:
            self.memory.close()
            raise
        b = self.board
        self.device_clock, self.plic, self.clint = b.device_clock, b.plic, b.clint
        self.exit_device, self.pci, self.virtio_console = b.exit_device, b.pci, b.virtio_console
        self.devices, self.irq_lines = b.devices, b.irq_lines
        try:
            self.uc: Uc = self._new_cpu()
        except BaseException:
            b.close()
            self.memory.close()
            raise
        self._loader.write_boot_blocks()
        self._set_boot_regs()
        self._kicker = threading.Thread(target=self._kicker_main, name="e2k-kicker", daemon=True)
        self._kicker.start()

    # ------------------------------------------------------------------------------------
    # devices and the map

    def map_device(self, name: str, base: int, size: int, device: Device,
                   irq: int | None = None) -> IrqLine | None:
        """Map an extra device (tests, extensions) before run(); returns its IrqLine if irq."""
        region = self.board.add_region(name, base, size, device)
        with self._lock:
            self._map_region(self.uc, region)
        return self.board.irq(irq) if irq is not None else None

    def add_virtio_port(self, chardev: Chardev | None, name: str | None = None,
                        console: bool = True) -> int:
        """Add a port to the virtio-console in slot 0; returns the port number."""
        return self.board.add_virtio_port(chardev, name, console)

    # ------------------------------------------------------------------------------------
    # the CPU object

    def _new_cpu(self) -> Uc:
        uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV64)
        if self.tlb == "virtual":
            # pitfall 1: the CPU TLB sends every store through the notdirty slow path
            uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
            _hook_tlb_fill_fast(uc, self._tlb_fill_raw, self._tlb_fill)
        uc.mem_map_ptr(L.RAM_BASE, self.ram_size, UC_PROT_ALL, self.memory.host_address())
        for region in self.board.regions:
            self._map_region(uc, region)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_insn_invalid)
        # no UC_HOOK_MEM_UNMAPPED: its mere presence makes every RAM access 5x slower;
        # unmapped accesses end emu_start with an error and are turned into traps there
        self._code_pages = self._loader.code_pages()
        return uc

    def _tlb_fill_raw(self, handle: Any, vaddr: int, access: int, entry_ptr: Any,
                      ud: Any) -> bool:
        # _tlb_fill inlined: this runs once per access when TLB indexes collide
        entry = entry_ptr.contents
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else _PROT_RW
        return True

    def _tlb_fill(self, uc: Any, vaddr: int, access: int, entry: Any, ud: Any) -> bool:
        # identity map (M-mode firmware); only code pages are executable, so plain stores
        # skip unicorn's notdirty slow path (pitfall 1)
        page = vaddr & ~0xFFF
        entry.paddr = vaddr
        if access == UC_MEM_FETCH:
            self._code_pages.add(page)
        entry.perms = UC_PROT_ALL if page in self._code_pages else UC_PROT_READ | UC_PROT_WRITE
        return True

    def _map_region(self, uc: Uc, region: Region) -> None:
        # rd/wr run for every guest MMIO access: everything they need is bound here, and
        # the access record for a kick (_last) is kept only for 4-byte accesses, the halves
        # of a split 64-bit access that _retire may have to complete. A device must return
        # an int (the `& mask` turns anything else into a logged error and a 0, not a crash)
        base = region.base
        stats = self._stats
        name = region.name
        machine = self
        masks = _SIZE_MASKS
        if isinstance(region.device, PortWindow):
            # the port window's dispatch inlined: (read, write, offset in the device) per port
            ops = region.device.ops

            def rd(handle: Any, off: int, size: int, ud: Any) -> int:
                hit = ops.get(off)
                try:
                    value = masks[size] if hit is None else hit[0](hit[2], size) & masks[size]
                except Exception:
                    log.exception("%s: read of %d bytes at +%#x failed", name, size, off)
                    value = 0
                stats.mmio_reads += 1
                if machine._kick:
                    machine._mmio_after("r", base + off, size, value)
                if size == 4:
                    machine._last = ("r", base + off, size, value)
                return value

            def wr(handle: Any, off: int, size: int, value: int, ud: Any) -> None:
                hit = ops.get(off)
                if hit is not None:
                    try:
                        hit[1](hit[2], size, value)
                    except Exception:
                        log.exception("%s: write of %d bytes at +%#x failed", name, size, off)
                stats.mmio_writes += 1
                if machine._kick:
                    machine._mmio_after("w", base + off, size, value)
                if size == 4:
                    machine._last = ("w", base + off, size, value)
        else:
            dev_read, dev_write = region.device.read, region.device.write

            def rd(handle: Any, off: int, size: int, ud: Any) -> int:
                try:
                    value = dev_read(off, size) & masks[size]
                except Exception:
                    log.exception("%s: read of %d bytes at +%#x failed", name, size, off)
                    value = 0
                stats.mmio_reads += 1
                if machine._kick:
                    machine._mmio_after("r", base + off, size, value)
                if size == 4:
                    machine._last = ("r", base + off, size, value)
                return value

            def wr(handle: Any, off: int, size: int, value: int, ud: Any) -> None:
                try:
                    dev_write(off, size, value)
                except Exception:
                    log.exception("%s: write of %d bytes at +%#x failed", name, size, off)
                stats.mmio_writes += 1
                if machine._kick:
                    machine._mmio_after("w", base + off, size, value)
                if size == 4:
                    machine._last = ("w", base + off, size, value)

        _mmio_map_fast(uc, base, region.size, rd, wr)

    def _mmio_after(self, kind: str, addr: int, size: int, value: int) -> None:
        """An access completed while a kick is pending: stop here, and remember the access,
        because unicorn rolls the instruction back and would execute it again (pitfall 2)."""
        with self._lock:
            if not self._kick:
                return
            if not self._stop_issued:
                self._stop_issued = True
                self.uc.emu_stop()
            if not self._pending:
                # the first half of a split 64-bit access may have completed before the
                # kick was seen; the rollback repeats both halves
                self._pending_prev = self._last
            self._pending.append((kind, addr, size, value))

    # ------------------------------------------------------------------------------------
    # loading

    def load(self, path: str | Path) -> int:
        """Load an ELF (PT_LOAD segments; entry = e_entry) or a raw image at the RAM base."""
        with self._lock:
            entry = self._loader.load(path)
            self._code_pages.update(self._loader.code_pages())
            self._flush_translations()
        self._set_boot_regs()
        return entry

    def load_raw(self, path: str | Path, addr: int) -> None:
        """QEMU's generic loader: a raw file at a guest address (no entry change)."""
        with self._lock:
            self._loader.load_raw(path, addr)
            self._code_pages.update(self._loader.code_pages())
            self._flush_translations()

    def _in_ram(self, addr: int, n: int) -> bool:
        return self.memory.contains(addr, n)

    def _flush_translations(self) -> None:
        try:
            self.uc.ctl_flush_tb()
        except UcError:
            log.debug("TB/TLB flush failed", exc_info=True)

    def _set_boot_regs(self) -> None:
        uc = self.uc
        uc.reg_write(R.UC_RISCV_REG_A0, 0)
        uc.reg_write(R.UC_RISCV_REG_A1, self.ram_layout.fdt_addr)
        uc.reg_write(R.UC_RISCV_REG_A2, self.ram_layout.boot_info_addr)
        self._pc = self._loader.entry
        uc.reg_write(R.UC_RISCV_REG_PC, self._pc)

    # ------------------------------------------------------------------------------------
    # public control (any thread)

    def guest_time(self) -> float:
        """Seconds of guest time since reset (for logtimestamp)."""
        return self.clock.now()

    @property
    def stats(self) -> dict:
        """Counters since the machine was made: MMIO accesses, PLIC output edges (irqs),
        traps the harness delivered (exceptions and injected timer/software interrupts;
        SEIP traps unicorn takes itself are not counted), kicks, accesses retired by hand
        after a stop, CPU stops by the kicker, emu_start calls, wfi sleeps."""
        return asdict(self._stats)

    @property
    def pc(self) -> int:
        return self._pc

    def stop(self) -> None:
        """End run() soon (thread-safe)."""
        with self._lock:
            self._stop_req = True
            self._request_kick()

    def pause(self, timeout: float = 5.0) -> bool:
        """QMP stop: returns once the CPU is paused (True) or the wait timed out."""
        with self._lock:
            self._pause_req = True
            if not self._running:
                self._enter_pause()
                return True
            self._request_kick()
            if threading.get_ident() == self._cpu_ident:
                return True  # asked from a device callback: the loop pauses when it returns
            return self._cond.wait_for(lambda: self._paused or not self._running, timeout)

    def resume(self) -> None:
        """QMP cont."""
        with self._lock:
            self._pause_req = False
            if self._paused and not self._running:
                self._leave_pause()
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def reset(self) -> None:
        """system_reset: devices, RAM contents, CPU state and guest time start over."""
        with self._lock:
            if self._running and threading.get_ident() != self._cpu_ident:
                self._reset_req = True
                self._request_kick()
                return
        self._do_reset()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_req = True
            self._request_kick()
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._running, timeout=5)
        self._kicker.join(timeout=5)
        self.board.close()
        if self._own_registry:
            self.registry.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------
    # kicks (call with _lock held)

    def _request_kick(self) -> None:
        if not self._kick:
            self._kick = True
            self._kick_time = time.monotonic()
            self._kick_count = self._stats.mmio_reads + self._stats.mmio_writes
            self._kick_cpu = self._cpu_time() if self._running else 0
            self._stats.kicks += 1
        self._cond.notify_all()

    def _kicker_main(self) -> None:
        """Stops a computing guest for kicks that no MMIO callback took, and turns timer
        deadlines and the run timeout into kicks."""
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                wait = 1.0
                if self._running:
                    if now >= self._run_deadline:
                        self._request_kick()
                    else:
                        wait = min(wait, self._run_deadline - now)
                    deadline = self._timer_host_deadline()
                    if deadline is not None:
                        if now >= deadline:
                            self._request_kick()
                        else:
                            wait = min(wait, deadline - now)
                    if self._timer_poll and not self._idling:
                        # (a guest asleep in wfi cannot unmask anything: no need to look)
                        self._request_kick()
                        wait = min(wait, MASKED_POLL)
                    if self._kick and self._in_emu and not self._stop_issued:
                        wait = min(wait, self._kick_step(now))
                self._cond.wait(max(wait, 0.0001))

    def _kick_step(self, now: float) -> float:
        """A kick no MMIO callback has taken yet. Stop the CPU only once it provably runs
        guest code: no callback completed during a grace period while the CPU thread used
        CPU time. A stop landing in a callback's tail (its thread descheduled or waiting for
        the GIL after the kick check) would roll back an access nobody recorded."""
        count = self._stats.mmio_reads + self._stats.mmio_writes
        cpu = self._cpu_time()
        due = self._kick_time + KICK_GRACE
        if now < due:
            return due - now
        if count != self._kick_count:
            # callbacks are completing: the next one takes the kick; watch a new window
            self._kick_time, self._kick_count, self._kick_cpu = now, count, cpu
            return KICK_GRACE
        if cpu - self._kick_cpu < KICK_CPU_NS:
            # the CPU thread has hardly run (a loaded host): keep the baseline so its CPU
            # time accumulates, and look again soon
            return KICK_GRACE / 2
        self._stats.kicker_stops += 1
        self.uc.emu_stop()
        # a stop that lands between two emu_starts is lost; the next window retries
        self._kick_time, self._kick_cpu = now, cpu
        return KICK_GRACE

    def _cpu_time(self) -> int:
        """CPU time of the CPU thread (ns); without a per-thread clock, wall time."""
        try:
            return time.clock_gettime_ns(self._cpu_clock)
        except (OSError, TypeError):
            return time.monotonic_ns()

    def _timer_host_deadline(self) -> float | None:
        """Host time when the timer interrupt is due, if the guest waits for one."""
        if self._timer_poll:
            return None
        if self._mtip_delivered:
            return None
        g = self.clint.timer_deadline()
        if g is None:
            return None
        return self.clock.host_deadline(g)

    _mtip_delivered = False

    def _timer_changed(self) -> None:
        with self._lock:
            self._mtip_delivered = False
            self._timer_poll = False
            if self.clint.msip or self.clint.mtip():
                # raised now (msip set, or mtimecmp already passed): the loop delivers it
                # at the next safe point, which only a kick brings while the guest runs
                self._request_kick()
            self._cond.notify_all()

    def _plic_output(self, ctx: int, level: bool) -> None:
        if level:
            self._stats.irqs += 1
        if threading.get_ident() == self._cpu_ident:
            if self._in_emu:
                self._apply_seip_in_callback()
            return  # the CPU loop applies it before the next emu_start
        with self._lock:
            self._request_kick()

    def _apply_seip_in_callback(self) -> None:
        want = any(self.plic.output)
        if want == self._seip:
            return
        uc = self.uc
        if uc.reg_read(R.UC_RISCV_REG_PRIV) != 3:
            with self._lock:
                self._request_kick()  # M-CSRs are not writable from here; let the loop do it
            return
        mip = uc.reg_read(R.UC_RISCV_REG_MIP)
        uc.reg_write(R.UC_RISCV_REG_MIP, mip | MIP_SEIP if want else mip & ~MIP_SEIP)
        self._seip = want
        if want and uc.reg_read(R.UC_RISCV_REG_MIE) & (MIP_MEIP | MIP_SEIP) == MIP_MEIP:
            # a guest that enabled only MEIE: unicorn cannot raise MEIP, the loop injects it
            with self._lock:
                self._request_kick()

    def _on_exit(self, kind: str, code: int) -> None:
        self._exit = (kind, code)
        if self._in_emu:
            self.uc.emu_stop()

    # ------------------------------------------------------------------------------------
    # CSR access that works whatever the guest's privilege (stock-firmware-notes obstacle 2)

    def _as_machine(self) -> int:
        priv = self.uc.reg_read(R.UC_RISCV_REG_PRIV)
        if priv != 3:
            self.uc.reg_write(R.UC_RISCV_REG_PRIV, 3)
        return priv

    def _restore_priv(self, priv: int) -> None:
        if priv != 3:
            self.uc.reg_write(R.UC_RISCV_REG_PRIV, priv)

    def _xreg(self, n: int) -> int:
        return 0 if n == 0 else self.uc.reg_read(R.UC_RISCV_REG_X0 + n)

    def _set_xreg(self, n: int, value: int) -> None:
        if n:
            self.uc.reg_write(R.UC_RISCV_REG_X0 + n, value & U64)

    def _fetch(self, pc: int) -> int | None:
        if not self._in_ram(pc, 2):
            return None
        lo = int.from_bytes(self.memory.read(pc, 2), "little")
        if insn_length(lo) == 2:
            return lo
        if not self._in_ram(pc, 4):
            return None
        return int.from_bytes(self.memory.read(pc, 4), "little")

    # ------------------------------------------------------------------------------------
    # traps

    def _deliver(self, cause: int, epc: int, tval: int, interrupt: bool = False) -> bool:
        """Take a trap as the privileged spec says (M, or S when delegated). False when no
        handler is installed: the run then ends with a report."""
        uc = self.uc
        priv = self._as_machine()
        deleg = uc.reg_read(R.UC_RISCV_REG_MIDELEG if interrupt else R.UC_RISCV_REG_MEDELEG)
        mstatus = uc.reg_read(R.UC_RISCV_REG_MSTATUS)
        code = (1 << 63 | cause) if interrupt else cause
        if priv <= 1 and deleg >> cause & 1:
            tvec = uc.reg_read(R.UC_RISCV_REG_STVEC)
            uc.reg_write(R.UC_RISCV_REG_SEPC, epc)
            uc.reg_write(R.UC_RISCV_REG_SCAUSE, code)
            uc.reg_write(R.UC_RISCV_REG_STVAL, tval)
            spie = MSTATUS_SPIE if mstatus & MSTATUS_SIE else 0
            mstatus = (mstatus & ~(MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP)) | spie
            mstatus |= MSTATUS_SPP if priv == 1 else 0
            new_priv, mode_name = 1, "stvec"
        else:
            tvec = uc.reg_read(R.UC_RISCV_REG_MTVEC)
            uc.reg_write(R.UC_RISCV_REG_MEPC, epc)
            uc.reg_write(R.UC_RISCV_REG_MCAUSE, code)
            uc.reg_write(R.UC_RISCV_REG_MTVAL, tval)
            mpie = MSTATUS_MPIE if mstatus & MSTATUS_MIE else 0
            mstatus = (mstatus & ~(MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP)) | mpie | priv << 11
            new_priv, mode_name = 3, "mtvec"
        vec = tvec & ~3
        if interrupt and tvec & 3 == 1:
            vec += 4 * cause
        what = (INTERRUPT_NAMES.get(cause, f"interrupt {cause}") if interrupt
                else CAUSE_NAMES.get(cause, f"cause {cause}"))
        if vec == 0 or not self._in_ram(vec, 2):
            self._restore_priv(priv)
            self._report = RunResult(
                "trap", 1, epc, code, tval,
                f"{what} at pc {epc:#x} (tval {tval:#x}) with no trap handler "
                f"({mode_name} = {tvec:#x})")
            return False
        key = (epc, code)
        self._trap_repeat = self._trap_repeat + 1 if key == self._last_trap else 0
        self._last_trap = key
        if ((self._trap_repeat >= TRAP_STORM and (interrupt or cause not in (8, 9, 11)))
                or (epc == vec and self._trap_repeat >= VECTOR_STORM)):
            self._restore_priv(priv)
            self._report = RunResult(
                "trap", 1, epc, code, tval,
                f"trap storm: {what} at pc {epc:#x} (tval {tval:#x}) repeated "
                f"{self._trap_repeat} times; the handler at {vec:#x} does not recover")
            return False
        uc.reg_write(R.UC_RISCV_REG_MSTATUS, mstatus)
        uc.reg_write(R.UC_RISCV_REG_PRIV, new_priv)
        uc.reg_write(R.UC_RISCV_REG_PC, vec)
        self._stats.traps += 1
        self._after_pc_write()
        return True

    def _after_pc_write(self) -> None:
        """A hook moved pc (a delivered trap, an emulated rdtime). After that, unicorn no
        longer stops precisely at an MMIO access for the rest of the emu_start: pc comes
        back at a block start before or after the access (measured with both TLB modes:
        the access is then repeated, or a later iteration is "retired" with a stale value).
        So end emu_start here; the loop resumes at the new pc (one emu_start per trap)."""
        if self._in_emu:
            self._trap_stop = True
            self.uc.emu_stop()

    def _fail_stop(self) -> None:
        if self._in_emu:
            self.uc.emu_stop()

    def _mem_tval(self, epc: int) -> int:
        insn = self._fetch(epc)
        m = decode_mem(insn) if insn is not None else None
        if m is None:
            return 0
        return (self._xreg(m.base) + m.imm) & U64

    def _on_intr(self, uc: Uc, intno: int, ud: Any) -> None:
        # unicorn has already advanced pc by 4, even for compressed instructions (pitfall 5)
        epc = (uc.reg_read(R.UC_RISCV_REG_PC) - 4) & U64
        priv = uc.reg_read(R.UC_RISCV_REG_PRIV)
        cause = intno
        tval = 0
        if intno == CAUSE_ECALL_U:
            cause = {0: 8, 1: 9, 3: 11}.get(priv, 8)
        elif intno == CAUSE_ILLEGAL:
            insn = self._fetch(epc)
            if insn is not None:
                tval = insn
                rd = decode_rdtime(insn)
                if rd is not None and self._time_allowed(priv):
                    self._set_xreg(rd, self.clint.mtime())
                    uc.reg_write(R.UC_RISCV_REG_PC, epc + 4)
                    self._after_pc_write()
                    return
        elif intno in (CAUSE_LOAD_MISALIGNED, CAUSE_LOAD_ACCESS, CAUSE_STORE_MISALIGNED,
                       CAUSE_STORE_ACCESS):
            tval = self._mem_tval(epc)
        elif intno == CAUSE_INSN_ACCESS:
            tval = epc
        if not self._deliver(cause, epc, tval):
            self._fail_stop()

    def _time_allowed(self, priv: int) -> bool:
        if priv == 3:
            return True
        p = self._as_machine()
        ok = bool(self.uc.reg_read(R.UC_RISCV_REG_MCOUNTEREN) & 2)
        if ok and priv == 0:
            ok = bool(self.uc.reg_read(R.UC_RISCV_REG_SCOUNTEREN) & 2)
        self._restore_priv(p)
        return ok

    _ebreak_taken = False
    _trap_stop = False

    def _on_insn_invalid(self, uc: Uc, ud: Any) -> bool:
        pc = uc.reg_read(R.UC_RISCV_REG_PC)
        insn = self._fetch(pc)
        if insn in (0x00100073, 0x9002):  # ebreak, c.ebreak
            self._ebreak_taken = self._deliver(CAUSE_BREAKPOINT, pc, pc)
        else:
            self._ebreak_taken = self._deliver(CAUSE_ILLEGAL, pc, insn or 0)
        if not self._ebreak_taken:
            self._fail_stop()
        return True

    # ------------------------------------------------------------------------------------
    # interrupts at a safe point (CPU thread, not inside emu_start)

    def _apply_interrupts(self) -> None:
        uc = self.uc
        priv = self._as_machine()
        want = any(self.plic.output)
        mip = uc.reg_read(R.UC_RISCV_REG_MIP)
        if bool(mip & MIP_SEIP) != want:
            uc.reg_write(R.UC_RISCV_REG_MIP, mip | MIP_SEIP if want else mip & ~MIP_SEIP)
        self._seip = want
        mie = uc.reg_read(R.UC_RISCV_REG_MIE)
        mstatus = uc.reg_read(R.UC_RISCV_REG_MSTATUS)
        self._restore_priv(priv)
        pending = 0
        if self.plic.output[0] and mie & MIP_MEIP and not mie & MIP_SEIP:
            pending |= MIP_MEIP
        if self.clint.msip and mie & MIP_MSIP:
            pending |= MIP_MSIP
        mtip = self.clint.mtip()
        if mtip and mie & MIP_MTIP:
            pending |= MIP_MTIP
        enabled = priv < 3 or mstatus & MSTATUS_MIE
        meip_only = self.plic.output[0] and mie & (MIP_MEIP | MIP_SEIP) == MIP_MEIP
        raised = mtip or bool(self.clint.msip) or meip_only
        with self._lock:
            # a raised timer/software interrupt (or MEIP the loop injects) that the guest
            # masks now (mie or mstatus.MIE, which we cannot watch) is looked at again
            # every MASKED_POLL
            self._timer_poll = raised and not (pending and enabled)
            self._mtip_delivered = mtip  # no deadline to wait for until mtimecmp changes
        if not pending or not enabled:
            return
        for bit, cause in ((MIP_MEIP, IRQ_MEI), (MIP_MSIP, IRQ_MSI), (MIP_MTIP, IRQ_MTI)):
            if pending & bit:
                if self._deliver(cause, self._pc, 0, interrupt=True):
                    self._pc = uc.reg_read(R.UC_RISCV_REG_PC)
                return

    def _wfi_wake_pending(self) -> bool:
        """Is an interrupt enabled in mie pending (wfi must not sleep)?"""
        uc = self.uc
        priv = self._as_machine()
        mie = uc.reg_read(R.UC_RISCV_REG_MIE)
        self._restore_priv(priv)
        return bool((self.clint.mtip() and mie & MIP_MTIP) or (self.clint.msip and mie & MIP_MSIP)
                    or (any(self.plic.output) and mie & (MIP_SEIP | MIP_MEIP)))

    # ------------------------------------------------------------------------------------
    # retiring an access a stop rolled back

    def _retire(self, pc: int, pending: list[tuple[str, int, int, int]]) -> int:
        insn = self._fetch(pc)
        m = decode_mem(insn) if insn is not None else None
        ea = (self._xreg(m.base) + m.imm) & U64 if m is not None else None
        prev = self._pending_prev
        if (m is not None and m.width == 8 and pending[0][1] == ea + 4 and prev is not None
                and prev[:3] == (pending[0][0], ea, 4)):
            pending = [prev, *pending]
        kind, addr, size, _ = pending[0]
        if m is None or ea != addr or m.store != (kind == "w"):
            self._stats.retire_failures += 1
            log.error("cannot retire the stopped access (%s %d bytes at %#x) at pc %#x; "
                      "it will be repeated", kind, size, addr, pc)
            return pc
        done = 0
        value = 0
        for k, a, s, v in pending:
            if k != kind or a != addr + done:
                break
            value |= v << (8 * done)
            done += s
        # the rest of a split access (64-bit MMIO arrives as two halves) is done now
        while done < m.width:
            part = min(4, m.width - done)
            region = self.board.region_at(addr + done)
            if region is None:
                break
            try:
                if m.store:
                    data = (self._xreg(m.reg) >> (8 * done)) & ((1 << (8 * part)) - 1)
                    region.device.write(addr + done - region.base, part, data)
                    self._stats.mmio_writes += 1
                else:
                    v = int(region.device.read(addr + done - region.base, part))
                    self._stats.mmio_reads += 1
                    value |= (v & ((1 << (8 * part)) - 1)) << (8 * done)
            except Exception:
                log.exception("%s: access at +%#x failed", region.name, addr + done - region.base)
            done += part
        if not m.store:
            value &= (1 << (8 * m.width)) - 1
            self._set_xreg(m.reg, sign_extend(value, m.width) if m.signed else value)
        self._stats.retired += 1
        return pc + m.length

    # ------------------------------------------------------------------------------------
    # pause / reset helpers

    def _enter_pause(self) -> None:
        self._paused = True
        self.clock.pause()
        self._cond.notify_all()

    def _leave_pause(self) -> None:
        self._paused = False
        self.clock.resume()
        self._cond.notify_all()

    def _do_reset(self) -> None:
        with self._lock:
            self._reset_req = False
            self._exit = None
            self._report = None
            self._seip = False
            self._trap_repeat = 0
            self._last_trap = (0, -1)
            self._timer_poll = False
            self._mtip_delivered = False
        self.board.reset()
        self._loader.restore()
        self.clock.reset()
        self.uc = self._new_cpu()
        self._set_boot_regs()

    # ------------------------------------------------------------------------------------
    # the CPU loop

    def run(self, timeout: float | None = 10.0) -> RunResult:
        """Run the guest on this thread until it exits, traps fatally, is stopped, resets
        itself, or `timeout` seconds of host time pass (None: no limit)."""
        with self._lock:
            if self._running:
                raise MachineError("run() is already active on another thread")
            if self._closed:
                raise MachineError("the machine is closed")
            self._running = True
            self._cpu_ident = threading.get_ident()
            self._cpu_clock = time.pthread_getcpuclockid(self._cpu_ident)
            self._run_deadline = time.monotonic() + timeout if timeout is not None else float("inf")
            if self._paused and not self._pause_req:
                self._leave_pause()
            self._cond.notify_all()
        try:
            return self._loop()
        finally:
            with self._lock:
                self._running = False
                self._in_emu = False
                self._run_deadline = float("inf")
                self._cond.notify_all()

    def _loop(self) -> RunResult:
        uc = self.uc
        while True:
            if self._exit is not None:
                kind, code = self._exit
                if kind == "reset":
                    self._exit = None
                    return RunResult("reset", 0, self._pc, message="the guest asked for a reset")
                return RunResult("exit", code, self._pc)
            if self._report is not None:
                return self._report
            with self._lock:
                if self._reset_req:
                    self._lock.release()
                    try:
                        self._do_reset()
                    finally:
                        self._lock.acquire()
                    uc = self.uc
                if self._stop_req:
                    self._stop_req = False
                    self._kick = False
                    return RunResult("stopped", 0, self._pc, message="stopped by the host")
                if self._pause_req and not self._paused:
                    self._enter_pause()
                elif self._paused and not self._pause_req:
                    self._leave_pause()
                now = time.monotonic()
                if now >= self._run_deadline:
                    self._kick = False
                    return RunResult("timeout", 124, self._pc,
                                     message="the run timed out (the guest did not exit)")
                if self._paused:
                    self._cond.wait(min(0.05, self._run_deadline - now))
                    continue
                self._kick = False
                self._stop_issued = False
                self._pending = []
            self._apply_interrupts()
            if self._report is not None:
                return self._report
            with self._lock:
                self._in_emu = True
            err: UcError | None = None
            self._ebreak_taken = False
            self._trap_stop = False
            try:
                self._stats.emu_starts += 1
                uc.emu_start(self._pc, UNTIL)
            except UcError as exc:
                err = exc
            finally:
                with self._lock:
                    self._in_emu = False
                    kicked = self._kick
                    pending, self._pending = self._pending, []
            pc = uc.reg_read(R.UC_RISCV_REG_PC)
            if self._exit is not None:
                self._pc = pc
                continue
            if err is not None:
                pc = self._handle_error(err, pc)
                self._pc = pc
                continue
            if pending:
                pc = self._retire(pc, pending)
                uc.reg_write(R.UC_RISCV_REG_PC, pc)
            self._pc = pc
            if (not kicked and not self._trap_stop and self._report is None
                    and self._after_wfi(pc)):
                self._idle()

    def _after_wfi(self, pc: int) -> bool:
        return self._in_ram(pc - 4, 4) and int.from_bytes(
            self.memory.read(pc - 4, 4), "little") == WFI

    def _idle(self) -> None:
        """The guest is in wfi: sleep until an interrupt, a timer deadline, or a request."""
        if self._wfi_wake_pending():
            return
        self._stats.wfi_sleeps += 1
        with self._lock:
            self._idling = True
            try:
                while not (self._kick or self._stop_req or self._pause_req or self._reset_req
                           or self._closed):
                    now = time.monotonic()
                    wait = self._run_deadline - now
                    deadline = self._timer_host_deadline()
                    if deadline is not None:
                        wait = min(wait, deadline - now)
                    if wait <= 0:
                        return
                    self._cond.wait(min(wait, 1.0))
            finally:
                self._idling = False

    def _handle_error(self, err: UcError, pc: int) -> int:
        if self._report is not None:
            return pc
        if self._ebreak_taken:
            return pc  # the hook already moved pc to the trap vector
        if err.errno in (UC_ERR_READ_UNMAPPED, UC_ERR_WRITE_UNMAPPED):
            # pc is the faulting load/store; its registers give the address
            cause = CAUSE_LOAD_ACCESS if err.errno == UC_ERR_READ_UNMAPPED else CAUSE_STORE_ACCESS
            if self._deliver(cause, pc, self._mem_tval(pc)):
                return self.uc.reg_read(R.UC_RISCV_REG_PC)
            return pc
        if err.errno in (UC_ERR_FETCH_PROT, UC_ERR_FETCH_UNMAPPED):
            # a jump into a device window: instruction access fault, mepc = mtval = target
            if self._deliver(CAUSE_INSN_ACCESS, pc, pc):
                return self.uc.reg_read(R.UC_RISCV_REG_PC)
            return pc
        insn = self._fetch(pc)
        if insn in (0x00100073, 0x9002):
            if self._deliver(CAUSE_BREAKPOINT, pc, pc):
                return self.uc.reg_read(R.UC_RISCV_REG_PC)
            return pc
        self._report = RunResult("trap", 1, pc, None, None,
                                 f"CPU error at pc {pc:#x}: {err}")
        return pc
