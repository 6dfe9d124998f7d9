"""A small Python "guest driver" for virtio-mmio + virtio-console, used by the virtio tests.

It writes descriptor tables and rings into a BytearrayMemory exactly as a guest kernel would,
so the device under test is exercised only through its register window and guest memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from e2kchar.devices import BytearrayMemory, VirtioMmio

RAM_BASE = 0x8000_0000
RAM_SIZE = 8 << 20

# register offsets (spelled out here on purpose: the test checks the device's map)
MAGIC, VERSION, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
DEV_FEAT, DEV_FEAT_SEL, DRV_FEAT, DRV_FEAT_SEL = 0x010, 0x014, 0x020, 0x024
QUEUE_SEL, QUEUE_NUM_MAX, QUEUE_NUM, QUEUE_READY = 0x030, 0x034, 0x038, 0x044
QUEUE_NOTIFY, INT_STATUS, INT_ACK, STATUS = 0x050, 0x060, 0x064, 0x070
DESC_LO, DESC_HI, DRIVER_LO, DRIVER_HI, DEVICE_LO, DEVICE_HI = 0x80, 0x84, 0x90, 0x94, 0xA0, 0xA4
QUEUE_RESET, CONFIG_GEN, CONFIG = 0x0C0, 0x0FC, 0x100

ACK, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET, FAILED = 1, 2, 4, 8, 0x40, 0x80
F_SIZE, F_MULTIPORT, F_EMERG_WRITE = 0, 1, 2
F_INDIRECT, F_EVENT_IDX, F_VERSION_1, F_RING_RESET = 28, 29, 32, 40

NEXT, WRITE, INDIRECT = 1, 2, 4

DEVICE_READY, PORT_ADD, PORT_REMOVE, PORT_READY = 0, 1, 2, 3
CONSOLE_PORT, RESIZE, PORT_OPEN, PORT_NAME = 4, 5, 6, 7


class Allocator:
    """Bump allocator over guest RAM (tests are short; nothing is freed)."""

    def __init__(self, mem: BytearrayMemory, start: int = 0x1000) -> None:
        self.mem = mem
        self.next = mem.base + start

    def alloc(self, n: int, align: int = 16) -> int:
        addr = (self.next + align - 1) & ~(align - 1)
        self.next = addr + max(n, 1)
        assert self.next <= self.mem.base + self.mem.size, "test guest ran out of RAM"
        return addr


@dataclass
class Used:
    head: int
    len: int
    data: bytes  # what the device wrote into the device-writable buffers (first len bytes)


@dataclass
class GuestQueue:
    drv: GuestDriver
    index: int
    num: int
    desc: int
    avail: int
    used: int
    event_idx: bool
    avail_idx: int = 0
    last_used: int = 0
    free: list[int] = field(default_factory=list)
    chains: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # head -> in bufs
    chain_ids: dict[int, list[int]] = field(default_factory=dict)  # head -> descriptor ids

    def __post_init__(self) -> None:
        self.free = list(range(self.num))

    @property
    def mem(self) -> BytearrayMemory:
        return self.drv.mem

    def write_desc(self, table: int, i: int, addr: int, n: int, flags: int, nxt: int) -> None:
        self.mem.write(table + 16 * i, struct.pack("<QIHH", addr, n, flags, nxt))

    def add(self, outs: list[bytes] = (), ins: list[int] = (), indirect: bool = False,
            publish: bool = True) -> int:
        """Make a chain of readable buffers `outs` then writable buffers of sizes `ins`."""
        segs = [(self.drv.put(b), len(b), 0) for b in outs]
        in_bufs = []
        for n in ins:
            a = self.drv.alloc.alloc(n, 8)
            segs.append((a, n, WRITE))
            in_bufs.append((a, n))
        if indirect:
            table = self.drv.alloc.alloc(16 * len(segs), 16)
            for i, (a, n, fl) in enumerate(segs):
                last = i == len(segs) - 1
                self.write_desc(table, i, a, n, fl | (0 if last else NEXT), 0 if last else i + 1)
            head = self.free.pop(0)
            self.write_desc(self.desc, head, table, 16 * len(segs), INDIRECT, 0)
            self.chain_ids[head] = [head]
        else:
            ids = [self.free.pop(0) for _ in segs]
            for k, (i, (a, n, fl)) in enumerate(zip(ids, segs, strict=True)):
                last = k == len(ids) - 1
                self.write_desc(self.desc, i, a, n, fl | (0 if last else NEXT),
                                0 if last else ids[k + 1])
            head = ids[0]
            self.chain_ids[head] = ids
        self.chains[head] = in_bufs
        self.publish(head, bump=publish)
        return head

    def publish(self, head: int, bump: bool = True) -> None:
        self.mem.write(self.avail + 4 + 2 * (self.avail_idx % self.num), struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        if bump:
            self.mem.write(self.avail + 2, struct.pack("<H", self.avail_idx))

    def set_avail_flags(self, flags: int) -> None:
        self.mem.write(self.avail, struct.pack("<H", flags))

    def set_used_event(self, value: int) -> None:
        self.mem.write(self.avail + 4 + 2 * self.num, struct.pack("<H", value & 0xFFFF))

    def avail_event(self) -> int:
        return struct.unpack("<H", self.mem.read(self.used + 4 + 8 * self.num, 2))[0]

    def used_idx(self) -> int:
        return struct.unpack("<H", self.mem.read(self.used + 2, 2))[0]

    def kick(self) -> None:
        self.drv.w(QUEUE_NOTIFY, self.index)

    def pending_used(self) -> int:
        return (self.used_idx() - self.last_used) & 0xFFFF

    def get_used(self) -> list[Used]:
        out = []
        while self.last_used != self.used_idx():
            slot = self.last_used % self.num
            head, n = struct.unpack("<II", self.mem.read(self.used + 4 + 8 * slot, 8))
            self.last_used = (self.last_used + 1) & 0xFFFF
            data = bytearray()
            for a, size in self.chains.pop(head, []):  # junk heads: tolerate
                take = min(size, n - len(data))
                if take > 0:
                    data += self.mem.read(a, take)
            self.free.extend(self.chain_ids.pop(head, []))
            out.append(Used(head, n, bytes(data)))
        return out


class GuestDriver:
    """Spec-order virtio-mmio initialisation and queue handling, as a guest kernel does it."""

    def __init__(self, mmio: VirtioMmio, mem: BytearrayMemory) -> None:
        self.mmio = mmio
        self.mem = mem
        self.alloc = Allocator(mem)
        self.queues: dict[int, GuestQueue] = {}
        self.features = 0

    def r(self, off: int) -> int:
        return self.mmio.read(off, 4)

    def w(self, off: int, val: int) -> None:
        self.mmio.write(off, 4, val)

    def put(self, data: bytes) -> int:
        a = self.alloc.alloc(len(data), 8)
        self.mem.write(a, data)
        return a

    def device_features(self) -> int:
        self.w(DEV_FEAT_SEL, 0)
        lo = self.r(DEV_FEAT)
        self.w(DEV_FEAT_SEL, 1)
        return lo | self.r(DEV_FEAT) << 32

    def set_driver_features(self, feats: int) -> None:
        self.w(DRV_FEAT_SEL, 0)
        self.w(DRV_FEAT, feats & 0xFFFFFFFF)
        self.w(DRV_FEAT_SEL, 1)
        self.w(DRV_FEAT, feats >> 32)

    def init(self, want: int | None = None, queues: dict[int, int] | None = None,
             driver_ok: bool = True) -> None:
        """Reset, ACK, DRIVER, features, FEATURES_OK, queues, DRIVER_OK (spec 3.1.1)."""
        assert self.r(MAGIC) == 0x74726976 and self.r(VERSION) == 2
        self.w(STATUS, 0)
        self.w(STATUS, ACK)
        self.w(STATUS, ACK | DRIVER)
        offered = self.device_features()
        self.features = offered if want is None else want & offered
        self.set_driver_features(self.features)
        self.w(STATUS, ACK | DRIVER | FEATURES_OK)
        assert self.r(STATUS) & FEATURES_OK, "device refused our features"
        for index, num in (queues or {}).items():
            self.setup_queue(index, num)
        if driver_ok:
            self.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK)

    def setup_queue(self, index: int, num: int | None = None) -> GuestQueue:
        self.w(QUEUE_SEL, index)
        assert self.r(QUEUE_READY) == 0
        nmax = self.r(QUEUE_NUM_MAX)
        assert nmax > 0, f"queue {index} does not exist"
        num = num or nmax
        desc = self.alloc.alloc(16 * num, 16)
        avail = self.alloc.alloc(6 + 2 * num, 2)
        used = self.alloc.alloc(6 + 8 * num, 4)
        self.w(QUEUE_NUM, num)
        self.w(DESC_LO, desc & 0xFFFFFFFF)
        self.w(DESC_HI, desc >> 32)
        self.w(DRIVER_LO, avail & 0xFFFFFFFF)
        self.w(DRIVER_HI, avail >> 32)
        self.w(DEVICE_LO, used & 0xFFFFFFFF)
        self.w(DEVICE_HI, used >> 32)
        self.w(QUEUE_READY, 1)
        q = GuestQueue(self, index, num, desc, avail, used,
                       bool(self.features >> F_EVENT_IDX & 1))
        self.queues[index] = q
        return q

    def ack_irq(self) -> int:
        isr = self.r(INT_STATUS)
        self.w(INT_ACK, isr)
        return isr


def rx_queue(port: int) -> int:
    return 0 if port == 0 else 2 * port + 2


class ConsoleGuest(GuestDriver):
    """The multiport half of a virtio_console guest driver."""

    CTRL_BUF = 128

    def start(self, nports: int, multiport: bool = True, extra: int = 0,
              ctrl_bufs: int = 16) -> None:
        want = (1 << F_VERSION_1) | (1 << F_SIZE) | (1 << F_EMERG_WRITE) | extra
        if multiport:
            want |= 1 << F_MULTIPORT
        qs = [0, 1] + ([2, 3] + [q for p in range(1, nports) for q in (2 * p + 2, 2 * p + 3)]
                       if multiport else [])
        self.init(want, {q: 0 for q in qs}, driver_ok=False)
        if multiport:
            for _ in range(ctrl_bufs):
                self.queues[2].add(ins=[self.CTRL_BUF])
        self.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK)
        self.ctrl_log: list[tuple[int, int, int, bytes]] = []

    def send_ctrl(self, port: int, event: int, value: int, extra: bytes = b"") -> None:
        q = self.queues[3]
        q.add(outs=[struct.pack("<IHH", port, event, value) + extra])
        q.kick()
        q.get_used()

    def read_ctrl(self) -> list[tuple[int, int, int, bytes]]:
        """Collect control messages and repost the buffers (as the Linux driver does)."""
        q = self.queues[2]
        msgs = []
        for u in q.get_used():
            pid, ev, val = struct.unpack("<IHH", u.data[:8])
            msgs.append((pid, ev, val, u.data[8:]))
            q.add(ins=[self.CTRL_BUF])
        if msgs:
            q.kick()
        self.ctrl_log += msgs
        return msgs

    def post_rx(self, port: int, count: int, size: int, kick: bool = True) -> None:
        q = self.queues[rx_queue(port)]
        for _ in range(count):
            q.add(ins=[size])
        if kick:
            q.kick()

    def recv(self, port: int) -> list[Used]:
        return self.queues[rx_queue(port)].get_used()

    def send(self, port: int, data: bytes, kick: bool = True) -> int:
        q = self.queues[rx_queue(port) + 1]
        head = q.add(outs=[data])
        if kick:
            q.kick()
        return head
