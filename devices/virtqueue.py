"""Split virtqueue (virtio 1.x section 2.7): descriptor chains, indirect tables, EVENT_IDX.

Everything the guest wrote is untrusted: every index is bounds-checked, chains are capped
at the table size (no loops), and guest-memory faults surface as VirtqueueError so the
device can set NEEDS_RESET instead of crashing the emulator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from e2kchar.errors import E2kcharError

from .layouts_packed import RING_HEADER, VRING_DESC, VRING_USED_ELEM
from .layouts_packed import U16 as U16_PACKED
from .memory import DmaMemory, GuestMemory, GuestMemoryError
from .packedform import check_moved

log = logging.getLogger(__name__)

# ---- binary layouts (declared once, in layouts.py) -----------------------------------------

#: descriptor, used element and u16 in their struct forms (derived from the construct
#: declarations by tools/gen_packed.py, checked by tests/test_packed.py)
DESC = VRING_DESC.struct
USED_ELEM = VRING_USED_ELEM.struct
U16_FORM = U16_PACKED.struct
_desc_from = DESC.unpack_from
_u16_from = U16_FORM.unpack_from
_u16_pack = U16_FORM.pack
_used_pack = USED_ELEM.pack
_used_into = USED_ELEM.pack_into
_u16_into = U16_FORM.pack_into

DESC_SIZE = DESC.size
HDR_SIZE = RING_HEADER.size
USED_ELEM_SIZE = USED_ELEM.size


def __getattr__(name: str) -> Any:
    # the declarations' old names here
    check_moved(__name__, name, ("VringDesc", "VringAvail", "VringUsedElem", "VringUsed",
                                 "RingHeader", "U16", "packed"))
    from . import layouts

    return getattr(layouts, name)


VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_AVAIL_F_NO_INTERRUPT = 1
VRING_USED_F_NO_NOTIFY = 1

#: the largest split queue the spec allows
MAX_QUEUE_SIZE = 32768


class VirtqueueError(E2kcharError):
    """The driver put something malformed in the queue (the device must need a reset)."""


def _no_memory(addr: int, n: int) -> memoryview:
    raise VirtqueueError("no guest memory")


def _lends_views(memory: GuestMemory) -> TypeGuard[DmaMemory]:
    """isinstance(memory, DmaMemory), asked with issubclass first: ABCMeta caches that per
    class, while isinstance against a Protocol lists the protocol's members again on every
    call (~80k instructions; a machine binds 64 queues at start-up). Same answer."""
    return issubclass(type(memory), DmaMemory) or isinstance(memory, DmaMemory)


def need_event(event: int, new: int, old: int) -> bool:
    """The EVENT_IDX rule: notify iff event lies in [old, new) modulo 2**16."""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


def avail_size(num: int) -> int:
    from .layouts import VringAvail

    size: int = VringAvail.sizeof(num=num)  # construct is untyped
    return size


def used_size(num: int) -> int:
    from .layouts import VringUsed

    size: int = VringUsed.sizeof(num=num)
    return size


@dataclass(slots=True)
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
        self._view: Callable[[int, int], memoryview] = _no_memory
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
        #: the avail idx last read, and the driver area it was read from (pop)
        self._avail_seen = 0
        self._avail_seen_at = -1
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

    @property
    def memory(self) -> GuestMemory | None:
        return self._memory

    @memory.setter
    def memory(self, memory: GuestMemory | None) -> None:
        """Bind guest RAM; a DmaMemory lends views, any other GuestMemory is copied from."""
        self._memory = memory
        self._dma: DmaMemory | None = None
        if memory is None:
            self._view = _no_memory
        elif _lends_views(memory):
            self._dma = memory
            self._view = memory.view
        else:
            read = memory.read
            self._view = lambda addr, n: memoryview(read(addr, n))

    def view(self, addr: int, n: int) -> memoryview:
        """Guest RAM [addr, addr + n) to read: a view of RAM itself when the memory lends
        one (DmaMemory), else a copy; VirtqueueError outside RAM."""
        try:
            return self._view(addr, n)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None

    def _read(self, addr: int, n: int) -> bytes:
        return bytes(self.view(addr, n))

    def _write(self, addr: int, data: bytes) -> None:
        mem = self.memory
        if mem is None:
            raise VirtqueueError("no guest memory")
        try:
            mem.write(addr, data)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None

    def read_u16(self, addr: int) -> int:
        try:
            value: int = _u16_from(self._view(addr, 2))[0]
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None
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
        """Take the next available chain, or None when the ring is empty.

        The driver's avail idx is read again only once the chains it announced last time
        are taken (QEMU's shadow_avail_idx): one guest-memory read per batch, not per chain.
        """
        if not self.ready:
            return None
        seen = self._avail_seen
        if self.last_avail_idx == seen or self.avail_addr != self._avail_seen_at:
            n = self.pending()
            if not n:
                return None
            seen = (self.last_avail_idx + n) & 0xFFFF
        slot = self.last_avail_idx % self.num
        head = self.read_u16(self.avail_addr + HDR_SIZE + 2 * slot)
        elem = self._walk(head)
        # remembered only now: a chain that raised is looked at afresh next time
        self._avail_seen, self._avail_seen_at = seen, self.avail_addr
        self.last_avail_idx = (self.last_avail_idx + 1) & 0xFFFF
        self.inflight += 1
        if self.event_idx:
            self._write(self.used_addr + HDR_SIZE + USED_ELEM_SIZE * self.num,
                        _u16_pack(self.last_avail_idx))
        return elem

    def pop_many(self, most: int, out_bytes: int) -> list[VirtqElement]:
        """pop() up to `most` chains at once, stopping before a chain whose device-readable
        bytes would take the total past `out_bytes` (the first is always taken).

        The driver area and the descriptor table are each read through one view, and a
        one-descriptor chain (the common case) is taken from its descriptor directly; any
        other chain is walked as pop() walks it. A chain that raises leaves the queue as
        it was (nothing of this call is popped).
        """
        if not self.ready or most <= 0:
            return []
        avail = self.pending()
        if not avail:
            return []
        num, start, view = self.num, self.last_avail_idx, self._view
        try:
            ring = view(self.avail_addr + HDR_SIZE, 2 * num)
            table = view(self.desc_addr, DESC_SIZE * num)
        except GuestMemoryError:  # a table that is not all in RAM: chain by chain
            first = self.pop()
            return [] if first is None else [first]
        elems: list[VirtqElement] = []
        total = 0
        for i in range(min(avail, most)):
            head = _u16_from(ring, 2 * ((start + i) % num))[0]
            elem = None
            if head < num:
                addr, length, flags, _ = _desc_from(table, DESC_SIZE * head)
                if not flags and addr + length <= 1 << 64:
                    elem = VirtqElement(head, [(addr, length)])
                    size = length
            if elem is None:
                elem = self._walk(head)
                size = elem.out_len
            if elems and total + size > out_bytes:
                break
            elems.append(elem)
            total += size
        n = len(elems)
        self._avail_seen, self._avail_seen_at = (start + avail) & 0xFFFF, self.avail_addr
        self.last_avail_idx = (start + n) & 0xFFFF
        self.inflight += n
        if self.event_idx:
            self._write(self.used_addr + HDR_SIZE + USED_ELEM_SIZE * num,
                        _u16_pack(self.last_avail_idx))
        return elems

    def _walk(self, head: int) -> VirtqElement:
        num = self.num
        if head >= num:
            raise VirtqueueError(f"queue {self.index}: head index {head} >= size {num}")
        elem = VirtqElement(head)
        table, limit, i = self.desc_addr, num, head
        seen = 0
        indirect = False
        view = self._view
        while True:
            try:
                addr, length, flags, nxt = _desc_from(view(table + DESC_SIZE * i, DESC_SIZE))
            except GuestMemoryError as exc:
                raise VirtqueueError(f"queue {self.index}: {exc}") from None
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
                if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_QUEUE_SIZE:
                    raise VirtqueueError(f"queue {self.index}: bad indirect table length {length}")
                indirect = True
                table, limit, i = addr, length // DESC_SIZE, 0
                seen = 0
                continue
            seen += 1
            if seen > limit:
                raise VirtqueueError(f"queue {self.index}: descriptor chain loops or is longer "
                                     f"than its table ({limit})")
            if addr + length > 1 << 64:
                raise VirtqueueError(f"queue {self.index}: descriptor wraps the address space")
            if flags & VRING_DESC_F_WRITE:
                elem.in_sg.append((addr, length))
            else:
                if elem.in_sg:
                    raise VirtqueueError(f"queue {self.index}: device-readable descriptor after "
                                         "a device-writable one")
                elem.out_sg.append((addr, length))
            if not flags & VRING_DESC_F_NEXT:
                return elem
            i = nxt
            if i >= limit:
                raise VirtqueueError(f"queue {self.index}: next index {i} >= {limit}")

    def element(self, head: int) -> VirtqElement:
        """Re-read the chain at `head` without popping it (a snapshot restores the chains
        the device held); raises VirtqueueError like pop()."""
        return self._walk(head)

    def unpop(self, n: int = 1) -> None:
        """Give the last `n` popped chains back (the device could not use them yet)."""
        self.last_avail_idx = (self.last_avail_idx - n) & 0xFFFF
        self.inflight -= n

    # -- device area -----------------------------------------------------------------

    def push(self, elem: VirtqElement, written: int) -> None:
        """Return a chain to the driver with `written` bytes stored in its in-segments."""
        slot = self.used_idx % self.num
        at = self.used_addr + HDR_SIZE + USED_ELEM_SIZE * slot
        if self._dma is None:
            self._write(at, _used_pack(elem.head, written))
            self.used_idx = (self.used_idx + 1) & 0xFFFF
            self._write(self.used_addr + 2, _u16_pack(self.used_idx))
        else:  # straight into guest RAM: the struct forms pack into views of it
            view = self._view
            try:
                _used_into(view(at, USED_ELEM_SIZE), 0, elem.head, written)
                self.used_idx = (self.used_idx + 1) & 0xFFFF
                _u16_into(view(self.used_addr + 2, 2), 0, self.used_idx)
            except GuestMemoryError as exc:
                raise VirtqueueError(f"queue {self.index}: {exc}") from None
        self.inflight = self.inflight - 1 if self.inflight > 0 else 0

    def push_many(self, elems: list[VirtqElement], written: int = 0) -> None:
        """push(elem, written) for each chain, in order, with one store of the used idx
        (the guest sees them all at once)."""
        if not elems:
            return
        if self._dma is None:
            for elem in elems:
                self.push(elem, written)
            return
        num, idx = self.num, self.used_idx
        try:
            area = self._view(self.used_addr, HDR_SIZE + USED_ELEM_SIZE * num)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None
        for elem in elems:
            _used_into(area, HDR_SIZE + USED_ELEM_SIZE * (idx % num), elem.head, written)
            idx = (idx + 1) & 0xFFFF
        _u16_into(area, 2, idx)
        self.used_idx = idx
        self.inflight = max(0, self.inflight - len(elems))

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

    def view_segments(self, sg: list[tuple[int, int]]) -> list[memoryview]:
        """read_segments without the copy where the memory lends views (see view())."""
        return [self.view(a, n) for a, n in sg]

    def out_views(self, elems: list[VirtqElement],
                  most: int) -> tuple[list[memoryview], list[int]]:
        """view_segments of the device-readable segments of the first chains (empty
        segments left out) while they come to at most `most` views (the first chain's
        always), and each of those chains' device-readable bytes."""
        views: list[memoryview] = []
        sizes: list[int] = []
        view, add = self._view, views.append
        try:
            for elem in elems:
                if sizes and len(views) + len(elem.out_sg) > most:
                    break
                size = 0
                for addr, n in elem.out_sg:
                    if n:
                        add(view(addr, n))
                        size += n
                sizes.append(size)
        except GuestMemoryError as exc:
            raise VirtqueueError(f"queue {self.index}: {exc}") from None
        return views, sizes

    def write_segments(self, sg: list[tuple[int, int]], data: bytes | memoryview) -> int:
        """Scatter data over the in-segments; returns bytes written."""
        view = memoryview(data)
        done = 0
        for addr, n in sg:
            if done >= len(view):
                break
            chunk = view[done:done + n]
            dma = self._dma
            if dma is None:
                self._write(addr, bytes(chunk))
            else:
                try:
                    dma.write(addr, chunk)
                except GuestMemoryError as exc:
                    raise VirtqueueError(f"queue {self.index}: {exc}") from None
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
        self._avail_seen, self._avail_seen_at = self.last_avail_idx, -1
        self.used_idx = int(s.get("used_idx", 0)) & 0xFFFF
        self.event_idx = bool(s.get("event_idx", False))
        self.indirect = bool(s.get("indirect", False))
        self.signalled_used_valid = False
