"""The E2K machine map (docs/interfaces.md) and the boot_info block (declared in headers.py)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..devices.packedform import check_moved
from .headers_packed import BOOT_INFO, CMDLINE_SIZE

RAM_BASE = 0x8000_0000
DEFAULT_RAM_SIZE = 128 << 20
#: -kernel goes to RAM base + 2 MiB (where fw_jump jumps)
KERNEL_OFFSET = 2 << 20
PCI_MEM_BASE = 0x4000_0000
PCI_MEM_SIZE = 1 << 30
AM85C30_BAR1 = 0x4000_0000
AM85C30_BAR_SIZE = 0x1000
IO_BASE = 0x1_0100_0000
IO_SIZE = 0x1_0000
COM1_PORT = 0x3F8
LMS_PORT = 0x300
VIRTIO_BASE = 0x1_0200_0000
VIRTIO_SLOT_SIZE = 0x1000
VIRTIO_SLOTS = 8
EXIT_BASE = 0x1_1000_0000
EXIT_SIZE = 0x1000
TIMER_BASE = 0x1_1001_0000
TIMER_SIZE = 0x1_0000
TIMEBASE_HZ = 10_000_000
INTC_BASE = 0x1_2000_0000
INTC_SIZE = 64 << 20
ECAM_BASE = 0x2_0000_0000
ECAM_SIZE = 256 << 20

BOOT_INFO_OFFSET_FROM_END = 0x1000
FDT_OFFSET_FROM_END = 0x20_0000
FDT_MAX_SIZE = FDT_OFFSET_FROM_END - BOOT_INFO_OFFSET_FROM_END

IRQ_AM85C30 = 3
IRQ_COM1 = 4
IRQ_VIRTIO0 = 16
PLIC_SOURCES = 64
PLIC_CONTEXTS = 2

EXIT_PASS = 0x5555
EXIT_FAIL = 0x3333
EXIT_RESET = 0x7777

AM85C30_PCI_VENDOR = 0x1FFF
AM85C30_PCI_DEVICE = 0x8019
AM85C30_PCI_DEVFN = (2, 2)  # 00:02.2
#: 00:02.0, the IOHub's I2C/SPI + reset controller: configuration header only, there so that
#: an enumerator that stops at a missing function 0 finds 00:02.2 (docs/interfaces.md)
IOHUB_I2C_SPI_PCI_DEVICE = 0x8018
IOHUB_I2C_SPI_PCI_DEVFN = (2, 0)

BOOT_INFO_SIZE = BOOT_INFO.size


def __getattr__(name: str) -> Any:
    check_moved(__name__, name, ("BootInfo",))  # the declarations' old names here
    from . import headers

    return getattr(headers, name)


class RamLayout(NamedTuple):
    """Where the machine puts its boot blocks in a RAM of a given size."""

    ram_size: int

    @property
    def ram_end(self) -> int:
        return RAM_BASE + self.ram_size

    @property
    def boot_info_addr(self) -> int:
        return self.ram_end - BOOT_INFO_OFFSET_FROM_END

    @property
    def fdt_addr(self) -> int:
        return self.ram_end - FDT_OFFSET_FROM_END


def build_boot_info(ram_size: int, cmdline: str = "") -> bytes:
    """The boot_info block; the command line must fit with its NUL (clear error otherwise)."""
    raw = cmdline.encode("utf8")
    if len(raw) >= CMDLINE_SIZE:
        raise ValueError(f"-append command line is {len(raw)} bytes; at most "
                         f"{CMDLINE_SIZE - 1} fit in boot_info")
    return BOOT_INFO.build(dict(
        version=1, ram_size=ram_size, serial_base=AM85C30_BAR1, io_base=IO_BASE,
        virtio_base=VIRTIO_BASE, virtio_slots=VIRTIO_SLOTS, intc_base=INTC_BASE,
        exit_base=EXIT_BASE, timer_base=TIMER_BASE, ram_base=RAM_BASE, cmdline=cmdline))
