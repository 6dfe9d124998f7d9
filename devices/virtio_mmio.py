"""virtio-mmio version 2 transport: the register window in front of a VirtioDevice.

Only register decoding lives here; status, features and queues are in the device core
(devices/virtio.py) so a virtio-pci transport can reuse them. Register reference:
docs/devices/virtio-console.md ("virtio-mmio registers").
"""

from __future__ import annotations

import logging
import threading
from enum import IntEnum
from typing import Any

from .irq import IrqLine
from .memory import GuestMemory
from .virtio import F_RING_RESET, VirtioDevice

log = logging.getLogger(__name__)

MAGIC = 0x74726976  # "virt"
VERSION = 2
VENDOR_QEMU = 0x554D4551  # "QEMU"
CONFIG_OFFSET = 0x100
WINDOW_SIZE = 0x1000


class Reg(IntEnum):
    MAGIC = 0x000
    VERSION = 0x004
    DEVICE_ID = 0x008
    VENDOR_ID = 0x00C
    DEVICE_FEATURES = 0x010
    DEVICE_FEATURES_SEL = 0x014
    DRIVER_FEATURES = 0x020
    DRIVER_FEATURES_SEL = 0x024
    GUEST_PAGE_SIZE = 0x028  # legacy
    QUEUE_SEL = 0x030
    QUEUE_NUM_MAX = 0x034
    QUEUE_NUM = 0x038
    QUEUE_ALIGN = 0x03C  # legacy
    QUEUE_PFN = 0x040  # legacy
    QUEUE_READY = 0x044
    QUEUE_NOTIFY = 0x050
    INTERRUPT_STATUS = 0x060
    INTERRUPT_ACK = 0x064
    STATUS = 0x070
    QUEUE_DESC_LOW = 0x080
    QUEUE_DESC_HIGH = 0x084
    QUEUE_DRIVER_LOW = 0x090
    QUEUE_DRIVER_HIGH = 0x094
    QUEUE_DEVICE_LOW = 0x0A0
    QUEUE_DEVICE_HIGH = 0x0A4
    SHM_SEL = 0x0AC
    SHM_LEN_LOW = 0x0B0
    SHM_LEN_HIGH = 0x0B4
    SHM_BASE_LOW = 0x0B8
    SHM_BASE_HIGH = 0x0BC
    QUEUE_RESET = 0x0C0
    CONFIG_GENERATION = 0x0FC


_QUEUE_NOTIFY = int(Reg.QUEUE_NOTIFY)

_QUEUE_ADDR = {
    Reg.QUEUE_DESC_LOW: ("desc_addr", 0), Reg.QUEUE_DESC_HIGH: ("desc_addr", 32),
    Reg.QUEUE_DRIVER_LOW: ("avail_addr", 0), Reg.QUEUE_DRIVER_HIGH: ("avail_addr", 32),
    Reg.QUEUE_DEVICE_LOW: ("used_addr", 0), Reg.QUEUE_DEVICE_HIGH: ("used_addr", 32),
}


class VirtioMmio:
    """One 4 KiB virtio-mmio slot; device=None is an empty slot (DeviceID 0)."""

    def __init__(self, *, device: VirtioDevice | None = None, memory: GuestMemory | None = None,
                 irq: IrqLine | None = None, vendor_id: int = VENDOR_QEMU) -> None:
        self.device = device
        self.memory = memory
        self.irq = irq if irq is not None else IrqLine()
        self.vendor_id = vendor_id
        self.lock = device.lock if device is not None else threading.RLock()
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.queue_sel = 0
        self.shm_sel = 0
        if device is not None:
            if memory is None:
                raise ValueError("a virtio device needs guest memory")
            device.bind(self, memory)

    # -- device interface ------------------------------------------------------------

    def update_irq(self) -> None:
        dev = self.device
        self.irq.set(bool(dev is not None and dev.isr))

    def reset(self) -> None:
        with self.lock:
            self._reset_regs()
            if self.device is not None:
                self.device.reset()

    def _reset_regs(self) -> None:
        self.device_features_sel = 0
        self.driver_features_sel = 0
        self.queue_sel = 0
        self.shm_sel = 0

    def read(self, offset: int, size: int) -> int:
        try:
            with self.lock:
                return self._read(offset, size)
        except Exception:  # never raise into the emulator
            log.exception("virtio-mmio: read of %#x/%d failed", offset, size)
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        dev = self.device
        try:
            if offset == _QUEUE_NOTIFY and size == 4 and dev is not None:
                dev.queue_notify(value & 0xFFFF)  # the hot register: the device locks itself
                return
            with self.lock:
                self._write(offset, size, value)
        except Exception:
            log.exception("virtio-mmio: write of %#x/%d failed", offset, size)

    # -- decoding --------------------------------------------------------------------

    def _queue(self) -> Any:
        dev = self.device
        if dev is None or not 0 <= self.queue_sel < len(dev.queues):
            return None
        return dev.queues[self.queue_sel]

    def _read(self, offset: int, size: int) -> int:
        dev = self.device
        if offset >= CONFIG_OFFSET:
            return self._config_read(offset - CONFIG_OFFSET, size)
        if size != 4 or offset % 4:
            log.warning("virtio-mmio: %d-byte read at %#x (registers are 32-bit); reads 0",
                        size, offset)
            return 0
        if offset == Reg.MAGIC:
            return MAGIC
        if offset == Reg.VERSION:
            return VERSION
        if offset == Reg.VENDOR_ID:
            return self.vendor_id
        if dev is None:
            return 0
        if offset == Reg.DEVICE_ID:
            return int(dev.device_id)
        if offset == Reg.DEVICE_FEATURES:
            if self.device_features_sel > 1:
                return 0
            return dev.host_features() >> (32 * self.device_features_sel) & 0xFFFFFFFF
        if offset == Reg.QUEUE_NUM_MAX:
            vq = self._queue()
            return 0 if vq is None else vq.num_max
        if offset == Reg.QUEUE_NUM:
            vq = self._queue()
            return 0 if vq is None else vq.num
        if offset == Reg.QUEUE_READY:
            vq = self._queue()
            return int(vq is not None and vq.ready)
        if offset in _QUEUE_ADDR:
            vq = self._queue()
            if vq is None:
                return 0
            attr, shift = _QUEUE_ADDR[Reg(offset)]
            value: int = getattr(vq, attr) >> shift & 0xFFFFFFFF
            return value
        if offset == Reg.QUEUE_RESET:
            # 1 from the (synchronous) reset until the driver re-enables the queue (spec 4.2.2)
            vq = self._queue()
            return int(vq is not None and vq.in_reset)
        if offset == Reg.INTERRUPT_STATUS:
            return int(dev.isr)
        if offset == Reg.STATUS:
            return int(dev.status)
        if offset == Reg.CONFIG_GENERATION:
            return dev.config_generation
        if offset in (Reg.SHM_LEN_LOW, Reg.SHM_LEN_HIGH, Reg.SHM_BASE_LOW, Reg.SHM_BASE_HIGH):
            return 0xFFFFFFFF  # no shared memory region: length and base read as -1
        return 0  # write-only, legacy or reserved

    def _write(self, offset: int, size: int, value: int) -> None:
        dev = self.device
        if offset >= CONFIG_OFFSET:
            self._config_write(offset - CONFIG_OFFSET, size, value)
            return
        if size != 4 or offset % 4:
            log.warning("virtio-mmio: %d-byte write at %#x (registers are 32-bit); ignored",
                        size, offset)
            return
        value &= 0xFFFFFFFF
        if dev is None:
            log.debug("virtio-mmio: write %#x to empty slot ignored", offset)
            return
        if offset == Reg.DEVICE_FEATURES_SEL:
            self.device_features_sel = value
        elif offset == Reg.DRIVER_FEATURES_SEL:
            self.driver_features_sel = value
        elif offset == Reg.DRIVER_FEATURES:
            dev.write_driver_features(self.driver_features_sel, value)
        elif offset == Reg.QUEUE_SEL:
            self.queue_sel = value
        elif offset == Reg.QUEUE_NUM:
            vq = self._writable_queue("QueueNum")
            if vq is not None:
                vq.num = value
        elif offset in _QUEUE_ADDR:
            vq = self._writable_queue(Reg(offset).name)
            if vq is not None:
                attr, shift = _QUEUE_ADDR[Reg(offset)]
                mask = 0xFFFFFFFF << shift
                setattr(vq, attr, (getattr(vq, attr) & ~mask) | (value << shift))
        elif offset == Reg.QUEUE_READY:
            self._queue_ready(value)
        elif offset == Reg.QUEUE_RESET:
            if value == 1:
                if not dev.has_feature(F_RING_RESET):
                    log.warning("virtio-mmio: QueueReset without RING_RESET negotiated; ignored")
                elif self._queue() is not None:
                    dev.queue_reset(self.queue_sel)
        elif offset == Reg.QUEUE_NOTIFY:
            dev.queue_notify(value & 0xFFFF)
        elif offset == Reg.INTERRUPT_ACK:
            dev.ack_interrupt(value)
        elif offset == Reg.STATUS:
            if value == 0:
                self._reset_regs()
            dev.write_status(value)
        elif offset == Reg.SHM_SEL:
            self.shm_sel = value
        else:
            log.warning("virtio-mmio: write %#x to read-only/reserved register %#x ignored",
                        value, offset)

    def _writable_queue(self, what: str) -> Any:
        vq = self._queue()
        if vq is None:
            log.warning("virtio-mmio: %s for nonexistent queue %d ignored", what, self.queue_sel)
            return None
        if vq.ready:
            log.warning("virtio-mmio: %s for queue %d while it is ready; ignored", what,
                        self.queue_sel)
            return None
        return vq

    def _queue_ready(self, value: int) -> None:
        dev = self.device
        assert dev is not None
        vq = self._queue()
        if vq is None:
            log.warning("virtio-mmio: QueueReady for nonexistent queue %d ignored", self.queue_sel)
            return
        if not value & 1:
            if vq.ready:
                dev.queue_disable(self.queue_sel)
            return
        if vq.ready:
            return
        problem = vq.check_layout()
        if problem is not None:
            dev.set_needs_reset(problem)
            return
        vq.ready = True
        vq.in_reset = False

    # -- device config ---------------------------------------------------------------

    def _config_read(self, off: int, size: int) -> int:
        dev = self.device
        if dev is None or size not in (1, 2, 4, 8):
            return 0
        cfg = dev.config_bytes()
        if off + size > len(cfg):
            log.debug("virtio-mmio: config read past the end (%#x/%d)", off, size)
            return 0
        return int.from_bytes(cfg[off:off + size], "little")

    def _config_write(self, off: int, size: int, value: int) -> None:
        dev = self.device
        if dev is None or size not in (1, 2, 4, 8):
            log.warning("virtio-mmio: config write %#x/%d ignored", off, size)
            return
        if off + size > len(dev.config_bytes()):
            log.warning("virtio-mmio: config write past the end (%#x/%d) ignored", off, size)
            return
        dev.config_write(off, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    # -- snapshot --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.lock:
            s: dict[str, Any] = {"device_features_sel": self.device_features_sel,
                                 "driver_features_sel": self.driver_features_sel,
                                 "queue_sel": self.queue_sel, "shm_sel": self.shm_sel}
            if self.device is not None:
                s["device"] = self.device.state()
            return s

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.device_features_sel = int(state.get("device_features_sel", 0))
            self.driver_features_sel = int(state.get("driver_features_sel", 0))
            self.queue_sel = int(state.get("queue_sel", 0))
            self.shm_sel = int(state.get("shm_sel", 0))
            if self.device is not None and "device" in state:
                self.device.load_state(state["device"])
            self.update_irq()
