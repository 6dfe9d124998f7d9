"""A flattened device tree (DTB) builder and reader, plus the E2K machine's tree.

Our own small implementation of the devicetree spec's binary format: a header (declared
with construct in headers.py, built with its struct form), an empty memory reservation
map, the structure block and the strings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from ..devices.packedform import check_moved
from ..errors import E2kcharError
from . import layout as L
from .headers_packed import FDT_HEADER, FDT_MAGIC  # noqa: F401 - FDT_MAGIC: its old place

FDT_BEGIN_NODE = 1
FDT_END_NODE = 2
FDT_PROP = 3
FDT_NOP = 4
FDT_END = 9


def __getattr__(name: str) -> Any:
    check_moved(__name__, name, ("FdtHeader",))  # the declarations' old names here
    from . import headers

    return getattr(headers, name)


PropValue = bytes | int | str | list[int] | list[str] | None


class FdtError(E2kcharError, ValueError):
    """A malformed device tree blob."""


def cells(*values: int) -> bytes:
    """Big-endian 32-bit cells."""
    return b"".join(struct.pack(">I", v & 0xFFFFFFFF) for v in values)


def reg64(*pairs: tuple[int, int]) -> bytes:
    """reg with #address-cells = #size-cells = 2."""
    return b"".join(cells(a >> 32, a, s >> 32, s) for a, s in pairs)


def encode(value: PropValue) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return cells(value)
    if isinstance(value, str):
        return value.encode() + b"\0"
    if all(isinstance(v, str) for v in value):
        return b"".join(str(v).encode() + b"\0" for v in value)
    return cells(*[int(v) for v in value])


@dataclass
class FdtNode:
    name: str
    props: dict[str, bytes] = field(default_factory=dict)
    children: list[FdtNode] = field(default_factory=list)

    def set(self, name: str, value: PropValue) -> FdtNode:
        self.props[name] = encode(value)
        return self

    def add(self, name: str, **props: PropValue) -> FdtNode:
        """Add a child; keyword names use '_' for '-' and '__' for ',' (riscv__isa)."""
        child = FdtNode(name)
        for key, value in props.items():
            if key != "device_type":
                key = key.replace("__", ",").replace("_", "-")
            child.set(key, value)
        self.children.append(child)
        return child

    def find(self, path: str) -> FdtNode | None:
        node: FdtNode | None = self
        for part in [p for p in path.split("/") if p]:
            assert node is not None
            node = next((c for c in node.children
                         if c.name == part or c.name.split("@")[0] == part), None)
            if node is None:
                return None
        return node

    def walk(self, prefix: str = "") -> list[tuple[str, FdtNode]]:
        path = prefix + "/" + self.name if self.name else "/"
        out = [(path, self)]
        for c in self.children:
            out += c.walk("" if path == "/" else path)
        return out

    def u32(self, prop: str) -> int:
        return int(struct.unpack(">I", self.props[prop][:4])[0])

    def strings(self, prop: str) -> list[str]:
        return [s.decode() for s in self.props[prop].split(b"\0")[:-1]]


def build_dtb(root: FdtNode, *, boot_cpuid: int = 0) -> bytes:
    """Serialise a tree to a DTB (version 17)."""
    strings = bytearray()
    offsets: dict[str, int] = {}
    struct_blk = bytearray()

    def pad4(b: bytearray) -> None:
        b.extend(b"\0" * (-len(b) % 4))

    def emit(node: FdtNode) -> None:
        struct_blk.extend(struct.pack(">I", FDT_BEGIN_NODE))
        struct_blk.extend(node.name.encode() + b"\0")
        pad4(struct_blk)
        for name, value in node.props.items():
            if name not in offsets:
                offsets[name] = len(strings)
                strings.extend(name.encode() + b"\0")
            struct_blk.extend(struct.pack(">III", FDT_PROP, len(value), offsets[name]))
            struct_blk.extend(value)
            pad4(struct_blk)
        for child in node.children:
            emit(child)
        struct_blk.extend(struct.pack(">I", FDT_END_NODE))

    emit(root)
    struct_blk.extend(struct.pack(">I", FDT_END))
    hdr_size = FDT_HEADER.size
    off_rsv = (hdr_size + 7) & ~7
    rsvmap = bytes(16)  # one terminating (0, 0) entry
    off_struct = off_rsv + len(rsvmap)
    off_strings = off_struct + len(struct_blk)
    total = off_strings + len(strings)
    header = FDT_HEADER.build(dict(
        totalsize=total, off_dt_struct=off_struct, off_dt_strings=off_strings,
        off_mem_rsvmap=off_rsv, version=17, last_comp_version=16, boot_cpuid_phys=boot_cpuid,
        size_dt_strings=len(strings), size_dt_struct=len(struct_blk)))
    out = bytearray(header)
    out.extend(b"\0" * (off_rsv - len(out)))
    out += rsvmap + struct_blk + strings
    return bytes(out)


def parse_dtb(blob: bytes) -> FdtNode:
    """Read a DTB back into a tree (tests, and a check that what we write is well-formed)."""
    from .headers import FdtHeader  # tests only: construct may load here

    try:
        hdr = FdtHeader.parse(blob)
    except Exception as exc:
        raise FdtError(f"not a device tree blob: {exc}") from None
    if hdr.totalsize > len(blob):
        raise FdtError("device tree blob is truncated")
    strs = blob[hdr.off_dt_strings:hdr.off_dt_strings + hdr.size_dt_strings]
    pos = hdr.off_dt_struct
    end = pos + hdr.size_dt_struct
    stack: list[FdtNode] = []
    root: FdtNode | None = None

    def word() -> int:
        nonlocal pos
        if pos + 4 > end:
            raise FdtError("structure block ends early")
        (v,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        return int(v)

    while True:
        tok = word()
        if tok == FDT_BEGIN_NODE:
            nul = blob.index(b"\0", pos)
            node = FdtNode(blob[pos:nul].decode())
            pos = (nul + 4) & ~3
            if stack:
                stack[-1].children.append(node)
            elif root is None:
                root = node
            else:
                raise FdtError("two root nodes")
            stack.append(node)
        elif tok == FDT_PROP:
            length, nameoff = word(), word()
            name = strs[nameoff:strs.index(b"\0", nameoff)].decode()
            if not stack:
                raise FdtError("property outside a node")
            stack[-1].props[name] = bytes(blob[pos:pos + length])
            pos = (pos + length + 3) & ~3
        elif tok == FDT_END_NODE:
            if not stack:
                raise FdtError("unbalanced end of node")
            stack.pop()
        elif tok == FDT_NOP:
            continue
        elif tok == FDT_END:
            break
        else:
            raise FdtError(f"bad token {tok:#x} at {pos - 4:#x}")
    if root is None or stack:
        raise FdtError("incomplete structure block")
    return root


def machine_tree(*, ram_size: int, cmdline: str = "", virtio_slots: int = L.VIRTIO_SLOTS,
                 isa: str = "rv64imac", initrd: tuple[int, int] | None = None) -> FdtNode:
    """The E2K machine as stock RISC-V firmware needs to see it (docs/interfaces.md)."""
    INTC, PLIC, TEST = 1, 2, 3
    root = FdtNode("")
    root.set("#address-cells", 2).set("#size-cells", 2)
    root.set("compatible", "mcst,e2k-rv64-standin").set("model", "E2K machine (RV64 stand-in)")
    com1 = L.IO_BASE + L.COM1_PORT
    serial_path = f"/soc/serial@{com1:x}"
    chosen = root.add("chosen", stdout_path=f"{serial_path}:115200n8")
    if cmdline:
        chosen.set("bootargs", cmdline)
    if initrd is not None:
        # 64-bit values (QEMU 7.2 writes one cell; Linux reads either length)
        chosen.set("linux,initrd-start", cells(initrd[0] >> 32, initrd[0]))
        chosen.set("linux,initrd-end", cells(initrd[1] >> 32, initrd[1]))
    root.add("aliases", serial0=serial_path)
    cpus = root.add("cpus", timebase_frequency=L.TIMEBASE_HZ)
    cpus.set("#address-cells", 1).set("#size-cells", 0)
    cpu = cpus.add("cpu@0", device_type="cpu", reg=0, status="okay", compatible="riscv",
                   riscv__isa=isa, mmu_type="riscv,sv39")
    intc = cpu.add("interrupt-controller", compatible="riscv,cpu-intc", phandle=INTC)
    intc.set("#interrupt-cells", 1).set("#address-cells", 0).set("interrupt-controller", None)
    root.add(f"memory@{L.RAM_BASE:x}", device_type="memory", reg=reg64((L.RAM_BASE, ram_size)))
    soc = root.add("soc", compatible="simple-bus", ranges=None)
    soc.set("#address-cells", 2).set("#size-cells", 2)
    soc.add(f"serial@{com1:x}", compatible="ns16550a", reg=reg64((com1, 8)), reg_shift=0,
            reg_io_width=1, clock_frequency=1843200, current_speed=115200,
            interrupt_parent=PLIC, interrupts=L.IRQ_COM1)
    soc.add(f"clint@{L.TIMER_BASE:x}", compatible=["sifive,clint0", "riscv,clint0"],
            reg=reg64((L.TIMER_BASE, L.TIMER_SIZE)),
            interrupts_extended=[INTC, 3, INTC, 7])
    plic = soc.add(f"plic@{L.INTC_BASE:x}", compatible=["sifive,plic-1.0.0", "riscv,plic0"],
                   reg=reg64((L.INTC_BASE, L.INTC_SIZE)), riscv__ndev=L.PLIC_SOURCES - 1,
                   interrupts_extended=[INTC, 11, INTC, 9], phandle=PLIC)
    plic.set("#interrupt-cells", 1).set("#address-cells", 0).set("interrupt-controller", None)
    soc.add(f"test@{L.EXIT_BASE:x}", compatible=["sifive,test1", "sifive,test0", "syscon"],
            reg=reg64((L.EXIT_BASE, L.EXIT_SIZE)), phandle=TEST)
    for n in range(virtio_slots):
        base = L.VIRTIO_BASE + n * L.VIRTIO_SLOT_SIZE
        soc.add(f"virtio_mmio@{base:x}", compatible="virtio,mmio",
                reg=reg64((base, L.VIRTIO_SLOT_SIZE)), interrupt_parent=PLIC,
                interrupts=L.IRQ_VIRTIO0 + n)
    pci = soc.add(f"pci@{L.ECAM_BASE:x}", compatible="pci-host-ecam-generic", device_type="pci",
                  reg=reg64((L.ECAM_BASE, L.ECAM_SIZE)), bus_range=[0, 0],
                  linux__pci_domain=0, dma_coherent=None)
    pci.set("#address-cells", 3).set("#size-cells", 2).set("#interrupt-cells", 1)
    # MEM window, 32-bit non-prefetchable, PCI address = CPU address
    pci.set("ranges", cells(0x0200_0000, 0, L.PCI_MEM_BASE, L.PCI_MEM_BASE >> 32, L.PCI_MEM_BASE,
                            L.PCI_MEM_SIZE >> 32, L.PCI_MEM_SIZE))
    # slot 2, INTA -> the Am85C30's PLIC source (the only PCI function with an interrupt)
    pci.set("interrupt-map-mask", cells(0xF800, 0, 0, 7))
    pci.set("interrupt-map", cells(L.AM85C30_PCI_DEVFN[0] << 11, 0, 0, 1, PLIC, L.IRQ_AM85C30))
    soc.add(f"lms@{L.IO_BASE + L.LMS_PORT:x}", compatible="mcst,lms-console",
            reg=reg64((L.IO_BASE + L.LMS_PORT, 5)))
    root.add("poweroff", compatible="syscon-poweroff", regmap=TEST, offset=0,
             value=L.EXIT_PASS)
    root.add("reboot", compatible="syscon-reboot", regmap=TEST, offset=0, value=L.EXIT_RESET)
    return root


def machine_dtb(*, ram_size: int, cmdline: str = "", virtio_slots: int = L.VIRTIO_SLOTS,
                initrd: tuple[int, int] | None = None) -> bytes:
    blob = build_dtb(machine_tree(ram_size=ram_size, cmdline=cmdline, virtio_slots=virtio_slots,
                                  initrd=initrd))
    if len(blob) > L.FDT_MAX_SIZE:
        raise ValueError(f"device tree is {len(blob)} bytes, more than fits below boot_info")
    return blob
