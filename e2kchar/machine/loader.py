"""Images in guest RAM: ELF or raw files, the boot blocks at the top of RAM, and the
restore after a reset (RAM cleared, every image copied in again)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import layout as L
from .elf import ElfError, is_elf, parse_elf
from .errors import MachineError
from .fdt import machine_dtb
from .ram import RamMemory

PAGE = 4096


class Image(NamedTuple):
    """One piece of a loaded file: `data` at `addr`, zero-filled up to `memsz`."""

    addr: int
    data: bytes
    memsz: int
    executable: bool


class ImageLoader:
    """Puts files into RAM and remembers them, so a reset can put them back. Knows nothing
    of the CPU: the machine asks it for the entry point and the code pages."""

    def __init__(self, ram: RamMemory, ram_layout: L.RamLayout, boot_info: bytes,
                 cmdline: str) -> None:
        self._ram = ram
        self._layout = ram_layout
        self._boot_info = boot_info
        self._cmdline = cmdline
        self._images: list[Image] = []
        self.entry = ram.base
        #: [start, end) of the initial RAM disk, for /chosen linux,initrd-start/end
        self.initrd: tuple[int, int] | None = None

    def load(self, path: str | Path) -> int:
        """Load an ELF (PT_LOAD segments; entry = e_entry) or a raw image at the RAM base;
        returns the entry point. A bad file loads nothing."""
        data = self._read_file(path)
        if is_elf(data):
            try:
                image = parse_elf(data, name=str(path))
            except ElfError as exc:
                raise MachineError(str(exc)) from None
            images = [Image(seg.addr, seg.data, seg.memsz, seg.executable)
                      for seg in image.segments]
            for img in images:
                self._check(img, path)
            if not self._ram.contains(image.entry, 2):
                raise MachineError(f"{path}: entry point {image.entry:#x} is outside RAM")
            for img in images:
                self._add(img)
            self.entry = image.entry
        else:
            img = Image(self._ram.base, data, len(data), True)
            self._check(img, path)
            self._add(img)
            self.entry = self._ram.base
        return self.entry

    def load_raw(self, path: str | Path, addr: int) -> Image:
        """QEMU's generic loader: a raw file at a guest address (no entry change)."""
        data = self._read_file(path)
        img = Image(addr, data, len(data), True)
        self._check(img, path)
        self._add(img)
        return img

    def load_initrd(self, path: str | Path, kernel_addr: int) -> tuple[int, int]:
        """An initial RAM disk where QEMU 7.2's riscv boards put it: the kernel's address
        plus half the RAM, at most 128 MiB (hw/riscv/boot.c riscv_load_initrd). Returns
        [start, end); the device tree's /chosen gets linux,initrd-start/end."""
        data = self._read_file(path)
        start = kernel_addr + min(self._ram.size // 2, 128 << 20)
        img = Image(start, data, len(data), False)
        self._check(img, path)
        self._images = [i for i in self._images if self.initrd is None or i.addr != self.initrd[0]]
        self._add(img)
        self.initrd = (start, start + len(data))
        self.write_boot_blocks()
        return self.initrd

    def code_pages(self) -> set[int]:
        """Pages of the executable images (the rest of RAM starts out as data)."""
        pages: set[int] = set()
        for img in self._images:
            if img.executable:
                pages.update(range(img.addr & ~(PAGE - 1), img.addr + img.memsz, PAGE))
        return pages

    def write_boot_blocks(self) -> None:
        """The device tree and boot_info at the top of RAM (docs/interfaces.md, entry convention)."""
        dtb = machine_dtb(ram_size=self._ram.size, cmdline=self._cmdline, initrd=self.initrd)
        self._ram.write(self._layout.fdt_addr, dtb)
        self._ram.write(self._layout.boot_info_addr, self._boot_info)

    def restore(self) -> None:
        """After a reset: RAM as it was right after loading (zeros, images, boot blocks)."""
        self._ram.zero()
        for img in self._images:
            self._ram.fill(img.addr, img.data, img.memsz)
        self.write_boot_blocks()

    @staticmethod
    def _read_file(path: str | Path) -> bytes:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise MachineError(f"could not load '{path}': {exc.strerror or exc}") from None
        if not data:
            raise MachineError(f"could not load '{path}': the file is empty")
        return data

    def _check(self, img: Image, path: str | Path) -> None:
        end = img.addr + img.memsz
        ram = self._ram
        if not ram.contains(img.addr, img.memsz):
            raise MachineError(
                f"{path}: segment [{img.addr:#x}, {end:#x}) is outside RAM "
                f"[{ram.base:#x}, {ram.base + ram.size:#x}); try a larger -m")
        if end > self._layout.fdt_addr:
            raise MachineError(f"{path}: segment [{img.addr:#x}, {end:#x}) overlaps the device "
                               f"tree and boot_info at the top of RAM ({self._layout.fdt_addr:#x})")

    def _add(self, img: Image) -> None:
        self._images.append(img)
        self._ram.fill(img.addr, img.data, img.memsz)
