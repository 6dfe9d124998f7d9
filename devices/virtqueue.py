"""Split virtqueue (virtio 1.x section 2.7): descriptor chains, indirect tables, EVENT_IDX.

Everything the guest wrote is untrusted: every index is bounds-checked, chains are capped
at the table size (no loops), and guest-memory faults surface as VirtqueueError so the
device can set NEEDS_RESET instead of crashing the emulator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from construct import Array, Int16ul, Int32ul, Int64ul, Struct, this

from e2kchar.errors import E2kcharError

from .memory import GuestMemory, GuestMemoryError

log = logging.getLogger(__name__)

# ---- binary layouts (declared once) -------------------------------------------------------

#: one descriptor table entry
VringDesc = Struct("addr" / Int64ul, "len" / Int32ul, "flags" / Int16ul, "next" / Int16ul)
#: driver area: flags, idx, ring[num], used_event (EVENT_IDX); parse with num=N
VringAvail = Struct("flags" / Int16ul, "idx" / Int16ul, "ring" / Array(this._params.num, Int16ul),
                    "used_event" / Int16ul)
VringUsedElem = Struct("id" / Int32ul, "len" / Int32ul)
#: device area: flags, idx, ring[num] of {id, len}, avail_event (EVENT_IDX); parse with num=N
VringUsed = Struct("flags" / Int16ul, "idx" / Int16ul,
                   "ring" / Array(this._params.num, VringUsedElem), "avail_event" / Int16ul)
RingHeader = Struct("flags" / Int16ul, "idx" / Int16ul)
U16 = Int16ul

_desc = VringDesc.compile()
_used_elem = VringUsedElem.compile()
_u16 = Int16ul.compile()

DESC_SIZE = VringDesc.sizeof()
HDR_SIZE = RingHeader.sizeof()
USED_ELEM_SIZE = VringUsedElem.sizeof()

VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

#: the largest split queue the spec allows
MAX_QUEUE_SIZE = 32768


class VirtqueueError(E2kcharError):
    """The driver put something malformed in the queue (the device must need a reset)."""


def need_event(event: int, new: int, old: int) -> bool:
    """The EVENT_IDX rule: notify iff event lies in [old, new) modulo 2**16."""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


def avail_size(num: int) -> int:
    size: int = VringAvail.sizeof(num=num)  # construct is untyped
    return size


def used_size(num: int) -> int:
    size: int = VringUsed.sizeof(num=num)
    return size


@dataclass
class VirtqElement:
    """One popped chain: device-readable (out) then device-writable (in) segments."""

    head: int
    out_sg: list[tuple[int, int]] = field(default_factory=list)
    in_sg: list[tuple[int, int]] = field(default_factory=list)

    @property
    def out_len(self) -> int:
        return sum(n for _, n in self.out_sg)

    @property
    def in_len(self) -> int:
        return sum(n for _, n in self.in_sg)


class VirtQueue:
    """One split virtqueue as the device sees it."""

    def __init__(self, index: int, num_max: int, memory: GuestMemory | None = None) -> None:
        self.index = index
        self.num_max = num_max
        self.memory = memory
        self.event_idx = False
        self.indirect = False
        #: reset through QueueReset and not re-enabled yet (reads back as 1)
        self.in_reset = False
        self.reset()

    def reset(self) -> None:
        self.num = self.num_max
        self.ready = False
        self.desc_addr = 0
        self.avail_addr = 0
        self.used_addr = 0
        self.last_avail_idx = 0
        self.used_idx = 0
        #: used idx at the last interrupt we sent (EVENT_IDX bookkeeping)
        self.signalled_used = 0
        self.signalled_used_valid = False
        self.inflight = 0

    # -- setup -----------------------------------------------------------------------

    def check_layout(self) -> str | None:
        """Why the queue cannot be enabled as configured, or None."""
        n = self.num
        if n <= 0 or n > self.num_max or n & (n - 1):
            return f"queue {self.index}: size {n} is not a power of two <= {self.num_max}"
        if self.desc_addr % 16:
            return f"queue {self.index}: descriptor table {self.desc_addr:#x} not 16-byte aligned"
        if self.avail_addr % 2:
            return f"queue {self.index}: driver area {self.avail_addr:#x} not 2-byte aligned"
        if self.used_addr % 4:
            return f"queue {self.index}: device area {self.used_addr:#x} not 4-byte aligned"
        return None

    # -- guest memory ----------------------------------------------------------------

    def _read(self, addr: int, n: int) -> bytes:
        mem = self.memory
        if mem is None:
            raise VirtqueueError("no guest memory")
        try:
            return mem.read(addr, n)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None

    def _write(self, addr: int, data: bytes) -> None:
        mem = self.memory
        if mem is None:
            raise VirtqueueError("no guest memory")
        try:
            mem.write(addr, data)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None

    def read_u16(self, addr: int) -> int:
        value: int = _u16.parse(self._read(addr, 2))  # construct is untyped
        return value

    # -- driver area -----------------------------------------------------------------

    def avail_idx(self) -> int:
        return self.read_u16(self.avail_addr + 2)

    def avail_flags(self) -> int:
        return self.read_u16(self.avail_addr)

    def used_event(self) -> int:
        return self.read_u16(self.avail_addr + HDR_SIZE + 2 * self.num)

    def pending(self) -> int:
        """Chains the driver made available that the device has not popped."""
        if not self.ready:
            return 0
        n = (self.avail_idx() - self.last_avail_idx) & 0xFFFF
        if n > self.num:
            raise VirtqueueError(
                f"queue {self.index}: avail idx moved {n} entries past the device (size {self.num})")
        return n

    def pop(self) -> VirtqElement | None:
        """Take the next available chain, or None when the ring is empty."""
        if not self.pending():
            return None
        slot = self.last_avail_idx % self.num
        head = self.read_u16(self.avail_addr + HDR_SIZE + 2 * slot)
        elem = self._walk(head)
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        self.inflight += 1
        if self.event_idx:
            self._write(self.used_addr + HDR_SIZE + USED_ELEM_SIZE * self.num,
                        _u16.build(self.last_avail_idx))
        return elem

    def _walk(self, head: int) -> VirtqElement:
        num = self.num
        if head >= num:
            raise VirtqueueError(f"queue {self.index}: head index {head} >= size {num}")
        elem = VirtqElement(head)
        table, limit, i = self.desc_addr, num, head
        seen = 0
        indirect = False
        while True:
            d = _desc.parse(self._read(table + DESC_SIZE * i, DESC_SIZE))
            flags = d.flags
            if flags & VRING_DESC_F_INDIRECT:
                if not self.indirect:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor without "
                                         "RING_INDIRECT_DESC")
                if indirect:
                    raise VirtqueueError(f"queue {self.index}: nested indirect table")
                # Spec 2.7.5.3: zero or more direct descriptors may come before one indirect
                # descriptor, which ends the direct chain (it must not have NEXT set).
                if flags & VRING_DESC_F_NEXT:
                    raise VirtqueueError(f"queue {self.index}: indirect descriptor in a chain "
                                         "with NEXT set")
                if d.len == 0 or d.len % DESC_SIZE or d.len // DESC_SIZE > MAX_QUEUE_SIZE:
                    raise VirtqueueError(f"queue {self.index}: bad indirect table length {d.len}")
                indirect = True
                table, limit, i = d.addr, d.len // DESC_SIZE, 0
                seen = 0
                continue
            seen += 1
            if seen > limit:
                raise VirtqueueError(f"queue {self.index}: descriptor chain loops or is longer "
                                     f"than its table ({limit})")
            if d.addr + d.len > 1 << 64:
                raise VirtqueueError(f"queue {self.index}: descriptor wraps the address space")
            if flags & VRING_DESC_F_WRITE:
                elem.in_sg.append((d.addr, d.len))
            else:
                if elem.in_sg:
                    raise VirtqueueError(f"queue {self.index}: device-readable descriptor after "
                                         "a device-writable one")
                elem.out_sg.append((d.addr, d.len))
            if not flags & VRING_DESC_F_NEXT:
                return elem
            i = d.next
            if i >= limit:
                raise VirtqueueError(f"queue {self.index}: next index {i} >= {limit}")

    def element(self, head: int) -> VirtqElement:
        """Re-read the chain at `head` without popping it (a snapshot restores the chains
        the device held); raises VirtqueueError like pop()."""
        return self._walk(head)

    def unpop(self) -> None:
        """Give the last popped chain back (the device could not use it yet)."""
        self.last_avail_idx = (self.last_avail_idx - 1) & 0xFFFF
        self.inflight -= 1

    # -- device area -----------------------------------------------------------------

    def push(self, elem: VirtqElement, written: int) -> None:
        """Return a chain to the driver with `written` bytes stored in its in-segments."""
        slot = self.used_idx % self.num
        self._write(self.used_addr + HDR_SIZE + USED_ELEM_SIZE * slot,
                    _used_elem.build({"id": elem.head, "len": written}))
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self._write(self.used_addr + 2, _u16.build(self.used_idx))
        self.inflight = max(0, self.inflight - 1)

    def should_notify(self) -> bool:
        """Whether the driver wants an interrupt for what was pushed since the last one."""
        if not self.event_idx:
            return not self.avail_flags() & VRING_AVAIL_F_NO_INTERRUPT
        old, new = self.signalled_used, self.used_idx
        valid = self.signalled_used_valid
        self.signalled_used = new
        self.signalled_used_valid = True
        if not valid:
            return True
        return need_event(self.used_event(), new, old)

    # -- data movement ---------------------------------------------------------------

    def read_segments(self, sg: list[tuple[int, int]]) -> list[bytes]:
        return [self._read(a, n) for a, n in sg]

    def write_segments(self, sg: list[tuple[int, int]], data: bytes | memoryview) -> int:
        """Scatter data over the in-segments; returns bytes written."""
        view = memoryview(data)
        done = 0
        for addr, n in sg:
            if done >= len(view):
                break
            chunk = view[done:done + n]
            self._write(addr, bytes(chunk))
            done += len(chunk)
        return done

    # -- snapshot --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"num": self.num, "ready": self.ready, "desc": self.desc_addr,
                "avail": self.avail_addr, "used": self.used_addr,
                "last_avail_idx": self.last_avail_idx, "used_idx": self.used_idx,
                "event_idx": self.event_idx, "indirect": self.indirect}

    def load_state(self, s: dict[str, Any]) -> None:
        self.num = int(s.get("num", self.num_max))
        self.ready = bool(s.get("ready", False))
        self.desc_addr = int(s.get("desc", 0))
        self.avail_addr = int(s.get("avail", 0))
        self.used_addr = int(s.get("used", 0))
        self.last_avail_idx = int(s.get("last_avail_idx", 0)) & 0xFFFF
        self.used_idx = int(s.get("used_idx", 0)) & 0xFFFF
        self.event_idx = bool(s.get("event_idx", False))
        self.indirect = bool(s.get("indirect", False))
        self.signalled_used_valid = False
