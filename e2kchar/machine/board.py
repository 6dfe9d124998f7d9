"""The board: the E2K machine's devices at their addresses and their interrupt wiring.

It builds the device models (looked up on `e2kchar.devices` at build time, so a test can
substitute a recording subclass), the PLIC, CLINT, PCI ECAM and exit device, gives each
device an IrqLine into the PLIC, and keeps the map as a list of `Region`s. It knows nothing
of the CPU: the machine passes it three callbacks (PLIC output edge, CLINT change, guest
exit) and maps the regions into the CPU itself (see mmio.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from e2kchar import devices as dev_models
from e2kchar.chardev.base import Chardev
from e2kchar.devices import IrqLine

from . import layout as L
from .clint import Clint
from .clock import GuestClock
from .errors import MachineError
from .misc import Device, EmptyVirtioSlot, ExitDevice, PortWindow
from .pci import BarWindow, PciEcam, PciFunction
from .plic import Plic
from .ram import RamMemory

log = logging.getLogger(__name__)


class Region(NamedTuple):
    """A device window in the physical map."""

    name: str
    base: int
    size: int
    device: Device


def _create(cls_name: str, factory: Callable[..., Any], **kw: Any) -> Any:
    try:
        return factory(**kw)
    except Exception as exc:
        raise MachineError(f"cannot create {cls_name}: {exc}") from exc


class Board:
    """Devices, map and interrupt wiring of the E2K machine (docs/interfaces.md)."""

    def __init__(self, ram: RamMemory, clock: GuestClock, serial: list[Chardev | None],
                 lms: Chardev | None, *, on_plic_output: Callable[[int, bool], object],
                 on_timer_change: Callable[[], object],
                 on_exit: Callable[[str, int], object]) -> None:
        self._ram = ram
        #: one timer thread for all device models
        self.device_clock = dev_models.HostClock("e2k-device-clock")
        self.plic = Plic(L.PLIC_SOURCES, L.PLIC_CONTEXTS, on_output=on_plic_output)
        self.clint = Clint(clock, on_change=on_timer_change)
        self.exit_device = ExitDevice(on_exit=on_exit)
        self.pci = PciEcam()
        self.devices: dict[str, Any] = {"plic": self.plic, "clint": self.clint,
                                        "exit": self.exit_device, "pci": self.pci}
        self.irq_lines: dict[int, IrqLine] = {}
        self._regions: list[Region] = []
        self.virtio_console: Any = None
        try:
            self._build(serial, lms)
        except BaseException:
            self.close()  # whatever was built before the failure
            raise

    def _build(self, serial: list[Chardev | None], lms: Chardev | None) -> None:
        add = self._regions.append
        # PCI: function 0 of slot 2 (multifunction), the Am85C30 at 00:02.2 with BAR1 at the
        # bottom of the PCI MEM window
        self.pci.add(*L.IOHUB_I2C_SPI_PCI_DEVFN, PciFunction(
            vendor=L.AM85C30_PCI_VENDOR, device=L.IOHUB_I2C_SPI_PCI_DEVICE, class_code=0x0C,
            subclass=0x80, prog_if=0, int_pin=0, multifunction=True))
        am_fn = PciFunction(vendor=L.AM85C30_PCI_VENDOR, device=L.AM85C30_PCI_DEVICE,
                            class_code=0x07, subclass=0x00, prog_if=0x02,
                            bars={1: (L.AM85C30_BAR1, L.AM85C30_BAR_SIZE)},
                            int_line=L.IRQ_AM85C30, int_pin=1)
        self.pci.add(*L.AM85C30_PCI_DEVFN, am_fn)
        am = self.devices["am85c30"] = _create(
            "Am85C30", dev_models.Am85C30, chardev_a=serial[0], chardev_b=serial[1],
            irq=self.irq(L.IRQ_AM85C30), clock=self.device_clock)
        add(Region("am85c30", L.AM85C30_BAR1, L.AM85C30_BAR_SIZE,
                   BarWindow(am_fn, 1, L.AM85C30_BAR1, am, "am85c30")))
        add(Region("pci-ecam", L.ECAM_BASE, L.ECAM_SIZE, self.pci))

        # the I/O-port window: LMS console and COM1
        io = PortWindow("io-ports")
        io.map(L.LMS_PORT, 5, self._named("lms", _create("LmsConsole", dev_models.LmsConsole,
                                                         chardev=lms)))
        io.map(L.COM1_PORT, 8, self._named("com1", _create(
            "Ns16550a", dev_models.Ns16550a, chardev=serial[2], irq=self.irq(L.IRQ_COM1),
            regshift=0, baudbase=115200, clock=self.device_clock)))
        add(Region("io-ports", L.IO_BASE, L.IO_SIZE, io))

        # virtio-mmio: slot 0 is the virtio-console, the rest are empty
        console = self.virtio_console = _create("VirtioConsole", dev_models.VirtioConsole,
                                                max_ports=31)
        for n in range(L.VIRTIO_SLOTS):
            if n == 0:
                slot: Any = _create("VirtioMmio", dev_models.VirtioMmio, device=console,
                                    memory=self._ram, irq=self.irq(L.IRQ_VIRTIO0))
            else:
                slot = EmptyVirtioSlot()
            self.devices[f"virtio{n}"] = slot
            add(Region(f"virtio{n}", L.VIRTIO_BASE + n * L.VIRTIO_SLOT_SIZE,
                       L.VIRTIO_SLOT_SIZE, slot))

        add(Region("exit", L.EXIT_BASE, L.EXIT_SIZE, self.exit_device))
        add(Region("clint", L.TIMER_BASE, L.TIMER_SIZE, self.clint))
        add(Region("plic", L.INTC_BASE, L.INTC_SIZE, self.plic))

    def _named(self, name: str, device: Any) -> Any:
        self.devices[name] = device
        return device

    @property
    def regions(self) -> tuple[Region, ...]:
        return tuple(self._regions)

    def irq(self, source: int) -> IrqLine:
        """A fresh IrqLine into PLIC source `source`."""
        plic = self.plic
        line = IrqLine(on_change=lambda level: plic.set_irq(source, level))
        self.irq_lines[source] = line
        return line

    def add_region(self, name: str, base: int, size: int, device: Device) -> Region:
        """Place an extra device window (tests, extensions); checks it against the map."""
        if base % 4096 or size % 4096 or size <= 0:
            raise MachineError("device windows must be 4 KiB aligned")
        for r in self._regions:
            if base < r.base + r.size and r.base < base + size:
                raise MachineError(f"{name} at {base:#x} overlaps {r.name}")
        ram = self._ram
        if base < ram.base + ram.size and ram.base < base + size:
            raise MachineError(f"{name} at {base:#x} overlaps RAM")
        region = Region(name, base, size, device)
        self._regions.append(region)
        self.devices[name] = device
        return region

    def region_at(self, addr: int) -> Region | None:
        for r in self._regions:
            if r.base <= addr < r.base + r.size:
                return r
        return None

    def add_virtio_port(self, chardev: Chardev | None, name: str | None = None,
                        console: bool = True) -> int:
        try:
            return int(self.virtio_console.add_port(chardev=chardev, name=name, console=console))
        except ValueError as exc:
            raise MachineError(f"virtio-console: {exc}") from None

    def reset(self) -> None:
        """system_reset of every device that has one."""
        for name, dev in list(self.devices.items()):
            fn = getattr(dev, "reset", None)
            if callable(fn):
                try:
                    fn()
                except Exception:
                    log.exception("reset of %s failed", name)

    def close(self) -> None:
        """Release every chardev the devices hold (so the registry can remove them) and
        stop the device timer thread."""
        console = self.virtio_console
        if console is not None:
            for nr in list(console.ports):
                try:
                    console.remove_port(nr)
                except Exception:
                    log.exception("detaching virtio-console port %d failed", nr)
        for name, dev in self.devices.items():
            fn = getattr(dev, "close", None)
            if callable(fn):
                try:
                    fn()
                except Exception:
                    log.exception("closing %s failed", name)
        self.device_clock.close()
