"""Split virtqueue: layouts, chains, indirect tables, EVENT_IDX and hostile descriptor tables."""

from __future__ import annotations

import struct

import pytest
from e2kchar.devices import BytearrayMemory
from e2kchar.devices.virtqueue import (
    VirtQueue,
    VirtqueueError,
    VringAvail,
    VringDesc,
    VringUsed,
    avail_size,
    need_event,
    used_size,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BASE = 0x8000_0000
DESC, AVAIL, USED, DATA = BASE + 0x1000, BASE + 0x2000, BASE + 0x3000, BASE + 0x10000
NEXT, WRITE, INDIRECT = 1, 2, 4


def make(num=8, indirect=False, event_idx=False):
    mem = BytearrayMemory(1 << 20, BASE)
    vq = VirtQueue(0, 256, mem)
    vq.num = num
    vq.desc_addr, vq.avail_addr, vq.used_addr = DESC, AVAIL, USED
    vq.indirect, vq.event_idx = indirect, event_idx
    assert vq.check_layout() is None
    vq.ready = True
    return mem, vq


def desc(mem, i, addr, n, flags=0, nxt=0, table=DESC):
    mem.write(table + 16 * i, struct.pack("<QIHH", addr, n, flags, nxt))


def offer(mem, vq, *heads, start=0):
    idx = start
    for h in heads:
        mem.write(AVAIL + 4 + 2 * (idx % vq.num), struct.pack("<H", h))
        idx = (idx + 1) & 0xFFFF
    mem.write(AVAIL + 2, struct.pack("<H", idx))


def used(mem, vq, slot):
    return struct.unpack("<II", mem.read(USED + 4 + 8 * slot, 8))


def used_idx(mem):
    return struct.unpack("<H", mem.read(USED + 2, 2))[0]


def test_layouts_are_the_spec_sizes():
    assert VringDesc.sizeof() == 16
    assert avail_size(8) == 6 + 2 * 8 == VringAvail.sizeof(num=8)
    assert used_size(8) == 6 + 8 * 8 == VringUsed.sizeof(num=8)
    raw = VringDesc.build({"addr": 0x1122334455667788, "len": 0x99AABBCC, "flags": 3, "next": 7})
    assert raw == bytes.fromhex("8877665544332211ccbbaa99" "0300" "0700")


def test_need_event_rule_with_wraparound():
    assert need_event(0, 1, 0)          # crossed event 0
    assert not need_event(1, 1, 0)      # event 1 not reached
    assert need_event(5, 10, 0) and not need_event(10, 10, 0)
    assert need_event(0xFFFF, 2, 0xFFFE)  # across the u16 wrap
    assert not need_event(3, 2, 0xFFFE)


def test_chain_out_then_in_and_used_ring():
    mem, vq = make()
    mem.write(DATA, b"hello")
    desc(mem, 3, DATA, 5, NEXT, 6)
    desc(mem, 6, DATA + 0x100, 4, NEXT | WRITE, 1)
    desc(mem, 1, DATA + 0x200, 8, WRITE)
    assert vq.pop() is None
    offer(mem, vq, 3)
    elem = vq.pop()
    assert elem.head == 3 and elem.out_sg == [(DATA, 5)]
    assert elem.in_sg == [(DATA + 0x100, 4), (DATA + 0x200, 8)]
    assert vq.read_segments(elem.out_sg) == [b"hello"]
    assert vq.write_segments(elem.in_sg, b"0123456789") == 10
    assert mem.read(DATA + 0x100, 4) == b"0123" and mem.read(DATA + 0x200, 6) == b"456789"
    vq.push(elem, 10)
    assert used(mem, vq, 0) == (3, 10) and used_idx(mem) == 1
    assert vq.pop() is None


def test_free_running_indices_wrap_at_u16():
    mem, vq = make(num=4)
    vq.last_avail_idx = vq.used_idx = 0xFFFE
    desc(mem, 0, DATA, 1)
    desc(mem, 1, DATA, 2)
    desc(mem, 2, DATA, 3)
    offer(mem, vq, 0, 1, 2, start=0xFFFE)
    assert struct.unpack("<H", mem.read(AVAIL + 2, 2))[0] == 1
    heads = []
    while (e := vq.pop()) is not None:
        heads.append(e.head)
        vq.push(e, 0)
    assert heads == [0, 1, 2]
    assert vq.last_avail_idx == 1 and used_idx(mem) == 1
    # slots used: 0xFFFE % 4 = 2, 3, then 0
    assert [used(mem, vq, s)[0] for s in (2, 3, 0)] == [0, 1, 2]


def test_indirect_table():
    mem, vq = make(indirect=True)
    table = DATA + 0x1000
    desc(mem, 0, DATA, 3, NEXT, 1, table=table)
    desc(mem, 1, DATA + 0x10, 2, NEXT | WRITE, 2, table=table)
    desc(mem, 2, DATA + 0x20, 2, WRITE, 0, table=table)
    desc(mem, 5, table, 48, INDIRECT)
    offer(mem, vq, 5)
    elem = vq.pop()
    assert elem.head == 5
    assert elem.out_sg == [(DATA, 3)] and elem.in_sg == [(DATA + 0x10, 2), (DATA + 0x20, 2)]


def test_direct_descriptors_then_one_indirect_table():
    """Spec 2.7.5.3.2: the device must take direct descriptors followed by an indirect one."""
    mem, vq = make(indirect=True)
    table = DATA + 0x1000
    desc(mem, 2, DATA, 3, NEXT, 7)
    desc(mem, 7, table, 32, INDIRECT | WRITE, 0)  # WRITE on the table pointer is ignored
    desc(mem, 0, DATA + 0x10, 2, NEXT, 1, table=table)
    desc(mem, 1, DATA + 0x20, 4, WRITE, 0, table=table)
    offer(mem, vq, 2)
    elem = vq.pop()
    assert elem.head == 2
    assert elem.out_sg == [(DATA, 3), (DATA + 0x10, 2)] and elem.in_sg == [(DATA + 0x20, 4)]
    # the readable-before-writable rule holds across the switch into the table
    mem, vq = make(indirect=True)
    desc(mem, 0, DATA, 3, NEXT | WRITE, 1)
    desc(mem, 1, table, 16, INDIRECT, 0)
    desc(mem, 0, DATA + 0x10, 2, 0, 0, table=table)
    offer(mem, vq, 0)
    _bad(mem, vq, "readable descriptor after")


def _bad(mem, vq, match):
    with pytest.raises(VirtqueueError, match=match):
        vq.pop()


def test_indirect_without_feature_is_refused():
    mem, vq = make(indirect=False)
    desc(mem, 0, DATA + 0x1000, 16, INDIRECT)
    offer(mem, vq, 0)
    _bad(mem, vq, "without RING_INDIRECT_DESC")


@pytest.mark.parametrize("setup,match", [
    (lambda m: (desc(m, 0, DATA, 1, NEXT, 1), desc(m, 1, DATA, 1, NEXT, 0)), "loops"),
    (lambda m: desc(m, 0, DATA, 1, NEXT, 9), "next index 9"),
    (lambda m: (desc(m, 0, DATA, 1, WRITE | NEXT, 1), desc(m, 1, DATA, 1)),
     "readable descriptor after"),
    (lambda m: (desc(m, 0, DATA + 0x1000, 16, INDIRECT | NEXT, 1), desc(m, 1, DATA, 1)),
     "indirect descriptor in a chain"),
    (lambda m: desc(m, 0, DATA + 0x1000, 10, INDIRECT), "bad indirect table length"),
    (lambda m: desc(m, 0, DATA + 0x1000, 0, INDIRECT), "bad indirect table length"),
    (lambda m: (desc(m, 0, DATA + 0x1000, 16, INDIRECT),
                desc(m, 0, DATA + 0x2000, 16, INDIRECT, table=DATA + 0x1000)), "nested"),
    (lambda m: (desc(m, 0, DATA + 0x1000, 32, INDIRECT),
                desc(m, 0, DATA, 1, NEXT, 1, table=DATA + 0x1000),
                desc(m, 1, DATA, 1, NEXT, 0, table=DATA + 0x1000)), "loops"),
    (lambda m: desc(m, 0, 0xFFFF_FFFF_FFFF_FFF0, 0x100), "wraps"),
    (lambda m: desc(m, 0, 0x10_0000_0000, 16, INDIRECT), "outside RAM"),
])
def test_hostile_chains_raise_virtqueue_error(setup, match):
    mem, vq = make(indirect=True)
    setup(mem)
    offer(mem, vq, 0)
    _bad(mem, vq, match)


def test_head_out_of_range_and_avail_idx_jump():
    mem, vq = make()
    offer(mem, vq, 8)
    _bad(mem, vq, "head index 8")
    mem.write(AVAIL + 2, struct.pack("<H", 200))
    _bad(mem, vq, "moved 200 entries")


def test_rings_outside_ram():
    mem, vq = make()
    vq.avail_addr = BASE + (1 << 20) - 2  # idx lies past the end of RAM
    _bad(mem, vq, "outside RAM")
    mem, vq = make()
    desc(mem, 0, BASE + (1 << 20) - 4, 8)
    offer(mem, vq, 0)
    elem = vq.pop()  # the chain is well-formed; touching the buffer faults
    with pytest.raises(VirtqueueError, match="outside RAM"):
        vq.read_segments(elem.out_sg)
    vq.used_addr = BASE + (1 << 20)
    with pytest.raises(VirtqueueError):
        vq.push(elem, 0)


def test_check_layout():
    _, vq = make()
    for num, problem in ((6, "power of two"), (512, "power of two"), (0, "power of two")):
        vq.num = num
        assert problem in vq.check_layout()
    vq.num = 8
    vq.desc_addr = DESC + 8
    assert "16-byte" in vq.check_layout()


def test_no_interrupt_flag_without_event_idx():
    mem, vq = make()
    desc(mem, 0, DATA, 1)
    offer(mem, vq, 0)
    vq.push(vq.pop(), 0)
    assert vq.should_notify()
    mem.write(AVAIL, struct.pack("<H", 1))  # VRING_AVAIL_F_NO_INTERRUPT
    assert not vq.should_notify()


def test_event_idx_suppression_and_avail_event():
    mem, vq = make(num=8, event_idx=True)
    for i in range(8):
        desc(mem, i, DATA, 1)
    offer(mem, vq, *range(6))
    # the driver wants an interrupt only once used idx passes 3 (used_event = 3)
    mem.write(AVAIL + 4 + 2 * 8, struct.pack("<H", 3))
    notes = []
    for _ in range(6):
        vq.push(vq.pop(), 0)
        notes.append(vq.should_notify())
    # first push always notifies (nothing signalled yet), then only crossing used_event=3
    assert notes == [True, False, False, True, False, False]
    # after each pop the device asks to be kicked for the next new buffer
    assert struct.unpack("<H", mem.read(USED + 4 + 8 * 8, 2))[0] == 6


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.binary(min_size=16 * 8, max_size=16 * 8),
       ring=st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8),
       idx=st.integers(0, 0xFFFF), indirect_table=st.binary(min_size=64, max_size=64),
       point_indirect=st.booleans(), indirect=st.booleans(), event_idx=st.booleans())
def test_random_descriptor_tables_never_escape(table, ring, idx, indirect_table, point_indirect,
                                               indirect, event_idx):
    mem, vq = make(num=8, indirect=indirect, event_idx=event_idx)
    tb = bytearray(table)
    if point_indirect:  # make some entries point at a (random) indirect table inside RAM
        for i in range(0, 8, 2):
            struct.pack_into("<Q", tb, 16 * i, DATA + 0x1000)
    mem.write(DESC, bytes(tb))
    mem.write(DATA + 0x1000, indirect_table)
    mem.write(AVAIL + 4, struct.pack("<8H", *ring))
    mem.write(AVAIL + 2, struct.pack("<H", idx))
    for _ in range(10):
        try:
            elem = vq.pop()
        except VirtqueueError:
            break
        if elem is None:
            break
        # at most the queue size of direct descriptors plus one indirect table (4 entries)
        assert len(elem.out_sg) + len(elem.in_sg) <= 8 + 4
        try:
            vq.read_segments(elem.out_sg[:1] if elem.out_sg and elem.out_sg[0][1] < 4096 else [])
            vq.push(elem, 0)
            vq.should_notify()
        except VirtqueueError:
            break


# ---------------------------------------------------------------------------------------
# the hot path's struct forms and zero-copy views of guest RAM


@settings(max_examples=200, deadline=None)
@given(addr=st.integers(0, 2**64 - 1), n=st.integers(0, 2**32 - 1),
       flags=st.integers(0, 0xFFFF), nxt=st.integers(0, 0xFFFF), head=st.integers(0, 2**32 - 1))
def test_struct_forms_agree_with_the_construct_declarations(addr, n, flags, nxt, head):
    from e2kchar.devices.virtqueue import DESC, U16, U16_FORM, USED_ELEM, VringUsedElem

    raw = VringDesc.build({"addr": addr, "len": n, "flags": flags, "next": nxt})
    assert DESC.size == VringDesc.sizeof() and DESC.pack(addr, n, flags, nxt) == raw
    assert DESC.unpack(raw) == (addr, n, flags, nxt)
    raw = VringUsedElem.build({"id": head, "len": n})
    assert USED_ELEM.size == VringUsedElem.sizeof() and USED_ELEM.pack(head, n) == raw
    assert U16_FORM.pack(flags) == U16.build(flags) and U16_FORM.unpack(U16.build(nxt)) == (nxt,)


def test_packed_refuses_layouts_that_are_not_plain_fields():
    from construct import Int16ub, Int16ul, PascalString, Struct
    from e2kchar.devices.virtqueue import packed

    assert packed(Struct("a" / Int16ul, "b" / Int16ul)).format == "<HH"
    with pytest.raises(TypeError, match="not a fixed-size plain field"):
        packed(Struct("s" / PascalString(Int16ul, "ascii")))
    with pytest.raises(TypeError, match="mixed byte order"):
        packed(Struct("a" / Int16ul, "b" / Int16ub))


@pytest.mark.parametrize("kind", ["bytearray", "ram"])
def test_dma_views_are_guest_ram_and_refuse_anything_outside(kind):
    from e2kchar.devices import GuestMemoryError
    from e2kchar.devices.memory import DmaMemory

    from e2kchar.machine.ram import RamMemory

    size = 1 << 16
    mem = BytearrayMemory(size, BASE) if kind == "bytearray" else RamMemory.anonymous(BASE, size)
    assert isinstance(mem, DmaMemory)
    v = mem.view(BASE + 0x100, 4)
    mem.write(BASE + 0x100, b"abcd")
    assert bytes(v) == b"abcd"                      # a view of RAM, not a copy
    v[1:3] = b"XY"
    assert mem.read(BASE + 0x100, 4) == b"aXYd"
    mem.write(BASE + 0x200, memoryview(b"from a view"))
    assert mem.read(BASE + 0x200, 11) == b"from a view"
    assert len(mem.view(BASE + size - 8, 8)) == 8 and len(mem.view(BASE, 0)) == 0
    for addr, n in [(BASE - 1, 2), (BASE + size - 7, 8), (BASE, size + 1), (BASE, -1),
                    (BASE + 2**64, 1), (BASE - 2**64, 4), (2**64 - 1, 2), (0, 4)]:
        with pytest.raises(GuestMemoryError, match="outside RAM"):
            mem.view(addr, n)
        with pytest.raises(GuestMemoryError):
            mem.read(addr, n)
    mem.write(BASE + 0x300, b"kept")  # a failed access changed nothing
    if kind == "ram":
        held = mem.view(BASE + 0x300, 4)
        mem.close()  # a view still lent out: the mapping lives until it goes
        assert bytes(held) == b"kept"
        del held, v


class ReadWriteOnly:
    """A GuestMemory of an embedder that lends no views (read and write only)."""

    def __init__(self, mem):
        self.mem = mem

    def read(self, addr, n):
        return self.mem.read(addr, n)

    def write(self, addr, data):
        assert isinstance(data, bytes)  # the protocol promises bytes
        self.mem.write(addr, data)


def test_a_memory_without_views_still_works_by_copying():
    mem, vq = make()
    vq.memory = ReadWriteOnly(mem)
    desc(mem, 0, DATA, 5, NEXT, 1)
    desc(mem, 1, DATA + 0x100, 8, WRITE)
    mem.write(DATA, b"hello")
    offer(mem, vq, 0)
    e = vq.pop()
    assert bytes(vq.view(*e.out_sg[0])) == b"hello" and vq.read_segments(e.out_sg) == [b"hello"]
    assert vq.write_segments(e.in_sg, memoryview(b"world!!!")) == 8
    vq.push(e, 8)
    assert mem.read(DATA + 0x100, 8) == b"world!!!" and used(mem, vq, 0) == (0, 8)
    desc(mem, 2, BASE + (1 << 20) - 4, 8)
    offer(mem, vq, 2, start=1)
    e = vq.pop()
    with pytest.raises(VirtqueueError, match="outside RAM"):
        vq.view(*e.out_sg[0])
    vq.memory = None
    with pytest.raises(VirtqueueError, match="no guest memory"):
        vq.pop()


KINDS = ["one", "empty", "two", "in", "indirect", "write-only"]


def _offer_kinds(kinds, memory=None):
    """A queue of 16 offering one chain of each kind, in order; the chains' heads."""
    mem, vq = make(num=16, indirect=True)
    if memory is not None:
        vq.memory = memory(mem)
    heads, nxt = [], 0
    for k, kind in enumerate(kinds):
        h, buf = nxt, DATA + 0x1000 * k
        if kind == "one":
            desc(mem, h, buf, 1000 + k)
        elif kind == "empty":
            desc(mem, h, buf, 0)
        elif kind == "two":
            desc(mem, h, buf, 700, NEXT, h + 1)
            desc(mem, h + 1, buf + 700, 300)
        elif kind == "in":
            desc(mem, h, buf, 500, NEXT, h + 1)
            desc(mem, h + 1, buf + 500, 64, WRITE)
        elif kind == "indirect":
            table = DATA + 0x20000 + 0x100 * k
            desc(mem, 0, buf, 1200, table=table)
            desc(mem, h, table, 16, INDIRECT)
        else:
            desc(mem, h, buf, 64, WRITE)
        nxt = h + (2 if kind in ("two", "in") else 1)
        heads.append(h)
    offer(mem, vq, *heads)
    return mem, vq


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KINDS), min_size=0, max_size=8), st.integers(0, 9),
       st.integers(0, 6000), st.booleans())
def test_pop_many_takes_what_pop_takes_in_order(kinds, most, limit, copying):
    memory = ReadWriteOnly if copying else None
    (_, a), (_, b) = _offer_kinds(kinds, memory), _offer_kinds(kinds, memory)
    got = a.pop_many(most, limit)
    want: list = []
    total = 0
    while len(want) < most and (e := b.pop()) is not None:
        if want and total + e.out_len > limit:  # the byte limit, the first chain always
            b.unpop()
            break
        want.append(e)
        total += e.out_len
    assert got == want
    assert (a.last_avail_idx, a.inflight) == (b.last_avail_idx, b.inflight) == (len(got),) * 2
    a.unpop(len(got))  # all of them back: the next call takes them again, and the rest
    assert a.pop_many(16, 1 << 30) == [b.element(h.head) for h in got] + [
        e for e in iter(b.pop, None)]
    assert a.pop_many(16, 1 << 30) == [] and a.inflight == len(kinds)


def test_pop_many_of_a_bad_chain_pops_nothing():
    mem, vq = make()
    desc(mem, 0, DATA, 10)
    desc(mem, 1, DATA, 10, NEXT, 1)  # loops
    offer(mem, vq, 0, 1)
    with pytest.raises(VirtqueueError, match="loops"):
        vq.pop_many(8, 1 << 20)
    assert (vq.last_avail_idx, vq.inflight) == (0, 0)
    assert vq.pop().head == 0
    offer(mem, vq, 0, 9, start=1)  # a head beyond the table
    with pytest.raises(VirtqueueError, match="head index 9"):
        vq.pop_many(8, 1 << 20)
    assert vq.last_avail_idx == 1


def test_pop_many_with_the_descriptor_table_partly_outside_ram_goes_chain_by_chain():
    mem, vq = make(num=8)
    vq.desc_addr = BASE + (1 << 20) - 16 * 4  # room for 4 of the 8 descriptors only
    for i in range(2):
        desc(mem, i, DATA + 0x100 * i, 10 + i, table=vq.desc_addr)
    offer(mem, vq, 0, 1)
    assert [e.head for e in vq.pop_many(8, 1 << 20)] == [0]
    assert [e.head for e in vq.pop_many(8, 1 << 20)] == [1]


@pytest.mark.parametrize("copying", [False, True])
def test_push_many_gives_chains_back_in_order_with_one_idx_update(copying):
    mem, vq = make()
    if copying:
        vq.memory = ReadWriteOnly(mem)
    for i in range(3):
        desc(mem, i, DATA, 10)
    offer(mem, vq, 2, 0, 1)
    elems = vq.pop_many(8, 1 << 20)
    assert vq.inflight == 3
    vq.push_many([])
    assert used_idx(mem) == 0
    vq.push_many(elems, 7)
    assert used_idx(mem) == vq.used_idx == 3 and vq.inflight == 0
    assert [used(mem, vq, s) for s in range(3)] == [(2, 7), (0, 7), (1, 7)]
