"""virtio-mmio v2 transport: register map, negotiation, status machine, sloppy drivers."""

from __future__ import annotations

import logging
import struct

from e2kchar.devices import BytearrayMemory, IrqLine, VirtioConsole, VirtioMmio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from virtio_guest import (
    ACK,
    CONFIG,
    CONFIG_GEN,
    DESC_HI,
    DESC_LO,
    DEV_FEAT,
    DEV_FEAT_SEL,
    DEVICE_ID,
    DRIVER,
    DRIVER_OK,
    DRV_FEAT,
    DRV_FEAT_SEL,
    F_EMERG_WRITE,
    F_EVENT_IDX,
    F_INDIRECT,
    F_MULTIPORT,
    F_RING_RESET,
    F_SIZE,
    F_VERSION_1,
    FAILED,
    FEATURES_OK,
    INT_ACK,
    INT_STATUS,
    MAGIC,
    NEEDS_RESET,
    QUEUE_NOTIFY,
    QUEUE_NUM,
    QUEUE_NUM_MAX,
    QUEUE_READY,
    QUEUE_RESET,
    QUEUE_SEL,
    RAM_BASE,
    RAM_SIZE,
    STATUS,
    VENDOR_ID,
    VERSION,
    ConsoleGuest,
    GuestDriver,
)


def slot(max_ports=4, device=True):
    mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
    irq = IrqLine()
    console = VirtioConsole(max_ports=max_ports) if device else None
    mmio = VirtioMmio(device=console, memory=mem, irq=irq)
    return mmio, console, mem, irq


def test_identification_registers():
    mmio, _, _, _ = slot()
    assert mmio.read(MAGIC, 4) == 0x74726976
    assert mmio.read(VERSION, 4) == 2
    assert mmio.read(DEVICE_ID, 4) == 3
    assert mmio.read(VENDOR_ID, 4) == 0x554D4551


def test_empty_slot_reads_device_id_zero_and_ignores_writes():
    mmio, _, _, irq = slot(device=False)
    assert mmio.read(MAGIC, 4) == 0x74726976 and mmio.read(VERSION, 4) == 2
    assert mmio.read(VENDOR_ID, 4) == 0x554D4551
    for off in range(0x8, 0x100, 4):
        if off != VENDOR_ID:
            assert mmio.read(off, 4) == 0, hex(off)
    mmio.write(STATUS, 4, ACK)
    mmio.write(QUEUE_NOTIFY, 4, 0)
    assert mmio.read(STATUS, 4) == 0 and mmio.read(CONFIG, 4) == 0 and not irq.level


def test_device_features_windows():
    mmio, _, mem, _ = slot(max_ports=4)
    g = GuestDriver(mmio, mem)
    feats = g.device_features()
    assert feats == (1 << F_SIZE | 1 << F_MULTIPORT | 1 << F_EMERG_WRITE | 1 << F_INDIRECT
                     | 1 << F_EVENT_IDX | 1 << F_VERSION_1 | 1 << F_RING_RESET)
    mmio.write(DEV_FEAT_SEL, 4, 2)
    assert mmio.read(DEV_FEAT, 4) == 0
    # MULTIPORT is offered only with more than one port
    mmio1, _, mem1, _ = slot(max_ports=1)
    assert not GuestDriver(mmio1, mem1).device_features() >> F_MULTIPORT & 1


def test_registers_below_0x100_are_32_bit_only():
    mmio, console, _, _ = slot()
    assert mmio.read(MAGIC, 1) == 0 and mmio.read(MAGIC, 2) == 0 and mmio.read(MAGIC + 1, 4) == 0
    assert mmio.read(MAGIC, 8) == 0
    mmio.write(STATUS, 1, ACK)
    mmio.write(STATUS, 2, ACK)
    assert console.status == 0
    mmio.write(STATUS, 4, ACK)
    assert mmio.read(STATUS, 4) == ACK


def test_write_only_and_legacy_registers_read_zero():
    mmio, _, _, _ = slot()
    for off in (DEV_FEAT_SEL, DRV_FEAT, DRV_FEAT_SEL, 0x28, 0x3C, 0x40, QUEUE_SEL, QUEUE_NOTIFY,
                INT_ACK):
        assert mmio.read(off, 4) == 0, hex(off)
    mmio.write(DEV_FEAT_SEL, 4, 1)
    assert mmio.read(DEV_FEAT_SEL, 4) == 0


def test_config_space_byte_exact_and_sizes():
    mmio, console, _, _ = slot(max_ports=5)
    console.cols, console.rows = 80, 25
    cfg = struct.pack("<HHII", 80, 25, 5, 0)
    for size in (1, 2, 4):
        for off in range(0, len(cfg) - size + 1, size):
            assert mmio.read(CONFIG + off, size) == int.from_bytes(cfg[off:off + size], "little")
    assert mmio.read(CONFIG + 12, 4) == 0  # past the end
    assert mmio.read(CONFIG + 0, 3) == 0  # odd size


def test_config_generation_changes_on_resize():
    mmio, console, mem, irq = slot()
    console.add_port(None, console=True)
    g = ConsoleGuest(mmio, mem)
    g.start(4)
    gen = mmio.read(CONFIG_GEN, 4)
    console.resize(0, 132, 43)
    assert mmio.read(CONFIG_GEN, 4) == gen + 1
    assert mmio.read(CONFIG, 2) == 132 and mmio.read(CONFIG + 2, 2) == 43
    assert mmio.read(INT_STATUS, 4) & 2 and irq.level
    mmio.write(INT_ACK, 4, 2)
    assert not irq.level


def test_feature_negotiation_refuses_without_version_1():
    mmio, console, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK | DRIVER)
    g.set_driver_features(1 << F_SIZE)  # a legacy driver: no VERSION_1
    g.w(STATUS, ACK | DRIVER | FEATURES_OK)
    assert g.r(STATUS) == ACK | DRIVER  # FEATURES_OK not accepted
    # features it was not offered are refused as well
    g.set_driver_features(1 << F_VERSION_1 | 1 << 20)
    g.w(STATUS, ACK | DRIVER | FEATURES_OK)
    assert not g.r(STATUS) & FEATURES_OK
    g.set_driver_features(1 << F_VERSION_1 | 1 << F_MULTIPORT)
    g.w(STATUS, ACK | DRIVER | FEATURES_OK)
    assert g.r(STATUS) == ACK | DRIVER | FEATURES_OK
    assert console.driver_features == 1 << F_VERSION_1 | 1 << F_MULTIPORT
    # after FEATURES_OK the features are frozen
    g.set_driver_features(1 << F_VERSION_1)
    assert console.driver_features == 1 << F_VERSION_1 | 1 << F_MULTIPORT
    g.w(DRV_FEAT_SEL, 0)
    assert g.r(DRV_FEAT) == 0  # write-only


def test_driver_that_never_writes_driver_features_is_refused():
    mmio, _, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK)
    g.w(STATUS, ACK | DRIVER | FEATURES_OK)
    assert g.r(STATUS) == ACK | DRIVER


def test_status_bits_cannot_be_cleared_without_reset(caplog):
    mmio, _, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK | DRIVER)
    with caplog.at_level(logging.WARNING):
        g.w(STATUS, DRIVER)  # non-cumulative
    assert g.r(STATUS) == ACK | DRIVER
    assert "cleared status bits" in caplog.text
    g.w(STATUS, ACK | DRIVER | FAILED)
    assert g.r(STATUS) == ACK | DRIVER | FAILED
    g.w(STATUS, 0)
    assert g.r(STATUS) == 0


def test_driver_ok_before_features_ok_needs_reset():
    mmio, _, mem, irq = slot()
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK | DRIVER | DRIVER_OK)
    assert g.r(STATUS) == ACK | DRIVER | DRIVER_OK | NEEDS_RESET
    assert g.r(INT_STATUS) == 2 and irq.level  # configuration change notification
    # the driver cannot set or clear NEEDS_RESET itself; only a reset does
    g.w(STATUS, 0)
    assert g.r(STATUS) == 0 and g.r(INT_STATUS) == 0 and not irq.level


def test_queue_registers_and_ready_latch():
    mmio, console, mem, _ = slot(max_ports=2)  # queues 0..5
    g = GuestDriver(mmio, mem)
    g.init(queues={})
    for q, nmax in ((0, 128), (1, 128), (2, 32), (3, 32), (4, 128), (5, 128), (6, 0), (99, 0)):
        g.w(QUEUE_SEL, q)
        assert g.r(QUEUE_NUM_MAX) == nmax, q
    g.w(QUEUE_SEL, 4)
    g.w(QUEUE_NUM, 16)
    g.w(DESC_LO, 0x8010_0000)
    g.w(DESC_HI, 0x1)
    assert g.r(QUEUE_NUM) == 16 and g.r(DESC_LO) == 0x8010_0000 and g.r(DESC_HI) == 1
    g.w(DESC_HI, 0)
    g.w(QUEUE_READY, 1)
    assert g.r(QUEUE_READY) == 1 and console.queues[4].ready
    g.w(QUEUE_NUM, 8)  # ignored while ready
    g.w(DESC_LO, 0)
    assert g.r(QUEUE_NUM) == 16 and g.r(DESC_LO) == 0x8010_0000
    g.w(QUEUE_READY, 0)
    assert g.r(QUEUE_READY) == 0
    g.w(QUEUE_SEL, 6)  # nonexistent: writes ignored, reads 0
    g.w(QUEUE_NUM, 8)
    g.w(QUEUE_READY, 1)
    assert g.r(QUEUE_NUM) == 0 and g.r(QUEUE_READY) == 0


def test_bad_queue_size_needs_reset():
    mmio, _, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.init(queues={}, driver_ok=True)
    g.w(QUEUE_SEL, 0)
    g.w(QUEUE_NUM, 100)  # not a power of two
    g.w(QUEUE_READY, 1)
    assert g.r(QUEUE_READY) == 0 and g.r(STATUS) & NEEDS_RESET


def test_queue_reset_register():
    mmio, console, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.init(queues={0: 16, 1: 16})
    g.w(QUEUE_SEL, 1)
    assert g.r(QUEUE_RESET) == 0
    g.w(QUEUE_RESET, 1)
    # reads 1 once the queue is reset, until the driver enables it again
    assert g.r(QUEUE_RESET) == 1 and g.r(QUEUE_READY) == 0
    assert g.r(QUEUE_NUM) == 128 and g.r(DESC_LO) == 0  # back to defaults
    assert console.queues[0].ready  # the other queue is untouched
    g.w(QUEUE_SEL, 0)
    assert g.r(QUEUE_RESET) == 0
    g.setup_queue(1, 16)  # and it can be re-enabled
    assert g.r(QUEUE_READY) == 1 and g.r(QUEUE_RESET) == 0


def test_queue_reset_needs_ring_reset_feature():
    mmio, _, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.init(want=1 << F_VERSION_1, queues={0: 16})
    g.w(QUEUE_SEL, 0)
    g.w(QUEUE_RESET, 1)
    assert g.r(QUEUE_READY) == 1


def test_status_zero_resets_transport_and_device():
    mmio, console, mem, irq = slot()
    g = GuestDriver(mmio, mem)
    g.init(queues={0: 16, 1: 16})
    g.w(QUEUE_SEL, 1)
    g.w(DEV_FEAT_SEL, 1)
    console.resize(0, 1, 1) if console.ports else console.config_changed()
    assert irq.level
    g.w(STATUS, 0)
    assert not irq.level and g.r(STATUS) == 0 and console.driver_features == 0
    assert g.r(QUEUE_READY) == 0  # QueueSel back to 0 and every queue disabled
    assert not any(q.ready for q in console.queues)
    assert g.r(DEV_FEAT) & 1  # DeviceFeaturesSel back to 0: low word


def test_interrupt_status_and_ack():
    mmio, console, _, irq = slot()
    console.config_changed()  # before DRIVER_OK: no interrupt
    assert mmio.read(INT_STATUS, 4) == 0
    g = GuestDriver(mmio, console.memory)
    g.init(queues={})
    console.config_changed()
    assert mmio.read(INT_STATUS, 4) == 2 and irq.level and irq.raises == 1
    mmio.write(INT_ACK, 4, 1)  # acking another bit changes nothing
    assert irq.level
    mmio.write(INT_ACK, 4, 2)
    assert mmio.read(INT_STATUS, 4) == 0 and not irq.level


def test_notify_before_ready_or_driver_ok_is_not_lost():
    mmio, console, mem, irq = slot(max_ports=1)
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK | DRIVER)
    g.set_driver_features(1 << F_VERSION_1)
    g.w(STATUS, ACK | DRIVER | FEATURES_OK)
    g.w(QUEUE_NOTIFY, 1)  # queue not ready: ignored
    q = g.setup_queue(1, 8)
    q.add(outs=[b"early"])
    q.kick()  # before DRIVER_OK: deferred, nothing consumed
    assert q.used_idx() == 0
    g.w(QUEUE_NOTIFY, 77)  # nonexistent queue
    g.w(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK)
    # on DRIVER_OK the device looks at what was posted (no backend: completed unread)
    assert q.used_idx() == 1 and irq.level


def test_state_round_trip():
    mmio, console, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.init(queues={0: 16})
    s = mmio.state()
    mmio2, console2, _, _ = slot()
    mmio2.load_state(s)
    assert mmio2.read(STATUS, 4) == mmio.read(STATUS, 4)
    mmio2.write(QUEUE_SEL, 4, 0)
    assert mmio2.read(QUEUE_READY, 4) == 1 and mmio2.read(QUEUE_NUM, 4) == 16


REGS = [0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x020, 0x024, 0x028, 0x030, 0x034, 0x038,
        0x03C, 0x040, 0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0A0,
        0x0A4, 0x0AC, 0x0B0, 0x0B8, 0x0C0, 0x0FC, 0x100, 0x102, 0x104, 0x108, 0x10C, 0x7FC]
VALUES = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(
    [0, 1, 2, 3, 4, 7, 8, 11, 15, 0x40, 0x80, 0xFF, RAM_BASE, RAM_BASE + 0x1000, 0x100]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.booleans(), st.sampled_from(REGS), st.sampled_from([1, 2, 4, 8]),
                              VALUES), max_size=60),
       ram_junk=st.binary(max_size=256))
def test_random_register_sequences_never_raise(ops, ram_junk):
    logging.disable(logging.CRITICAL)
    try:
        mem = BytearrayMemory(0x10000, RAM_BASE)
        mem.write(RAM_BASE, ram_junk)
        irq = IrqLine()
        console = VirtioConsole(max_ports=2)
        console.add_port(None)
        mmio = VirtioMmio(device=console, memory=mem, irq=irq)
        for is_write, off, size, val in ops:
            if is_write:
                mmio.write(off, size, val)
            else:
                assert 0 <= mmio.read(off, size) < 1 << 64
        assert irq.level == bool(console.isr)
    finally:
        logging.disable(logging.NOTSET)


def test_status_written_one_step_at_a_time_adds_bits(caplog):
    """A sloppy driver that writes each step's bit alone still comes up (bits only add)."""
    mmio, _, mem, _ = slot()
    g = GuestDriver(mmio, mem)
    g.w(STATUS, ACK)
    with caplog.at_level(logging.WARNING):
        g.w(STATUS, DRIVER)
    assert g.r(STATUS) == ACK | DRIVER
    g.w(DRV_FEAT_SEL, 1)
    g.w(DRV_FEAT, 1)  # VERSION_1 (bit 32)
    g.w(STATUS, FEATURES_OK)
    assert g.r(STATUS) == ACK | DRIVER | FEATURES_OK
