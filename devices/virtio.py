"""Transport-independent virtio core: constants, the status machine and feature negotiation.

A transport (virtio-mmio now, virtio-pci later) only decodes registers and drives an
interrupt line; everything a driver negotiates lives in VirtioDevice so both share it.
"""

from __future__ import annotations

import logging
import threading
from enum import IntEnum, IntFlag
from typing import Any, Protocol

from .memory import GuestMemory
from .virtqueue import VirtQueue

log = logging.getLogger(__name__)


class VirtioId(IntEnum):
    NONE = 0
    CONSOLE = 3


class Status(IntFlag):
    ACKNOWLEDGE = 1
    DRIVER = 2
    DRIVER_OK = 4
    FEATURES_OK = 8
    NEEDS_RESET = 0x40
    FAILED = 0x80


# transport feature bits (bit numbers)
F_RING_INDIRECT_DESC = 28
F_RING_EVENT_IDX = 29
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33
F_RING_PACKED = 34
F_ORDER_PLATFORM = 36
F_RING_RESET = 40

#: what the core implements for every device
TRANSPORT_FEATURES = ((1 << F_RING_INDIRECT_DESC) | (1 << F_RING_EVENT_IDX)
                      | (1 << F_VERSION_1) | (1 << F_RING_RESET))

_NEEDS_RESET = int(Status.NEEDS_RESET)
_DRIVER_OK = int(Status.DRIVER_OK)

# InterruptStatus bits
INT_USED_BUFFER = 1
INT_CONFIG = 2


class Transport(Protocol):
    """What a VirtioDevice needs from its transport."""

    def update_irq(self) -> None: ...


class VirtioDevice:
    """Common state of a virtio device: status, features, queues, interrupt status.

    Subclasses set ``device_id``, return their feature bits from ``device_features()``,
    their config space from ``config_bytes()``, and react in the ``_on_*`` hooks. All state
    is guarded by ``self.lock`` (CPU thread register accesses vs. I/O thread host events).
    """

    device_id: int = VirtioId.NONE

    def __init__(self, queue_sizes: list[int]) -> None:
        self.lock = threading.RLock()
        self.memory: GuestMemory | None = None
        self.transport: Transport | None = None
        self.queues = [VirtQueue(i, n) for i, n in enumerate(queue_sizes)]
        self.status = 0
        self.driver_features = 0
        self.isr = 0
        self.config_generation = 0

    # -- binding ---------------------------------------------------------------------

    def bind(self, transport: Transport, memory: GuestMemory) -> None:
        """Called once by the transport that exposes this device."""
        if self.transport is not None and self.transport is not transport:
            raise ValueError("virtio device is already bound to a transport")
        self.transport = transport
        self.memory = memory
        for vq in self.queues:
            vq.memory = memory

    # -- features --------------------------------------------------------------------

    def device_features(self) -> int:
        """Device-specific feature bits (0..23); the core adds the transport bits."""
        return 0

    def host_features(self) -> int:
        return self.device_features() | TRANSPORT_FEATURES

    def has_feature(self, bit: int) -> bool:
        return bool(self.driver_features >> bit & 1)

    @property
    def driver_ok(self) -> bool:
        status = self.status  # plain ints: IntFlag arithmetic is slow on the hot path
        return bool(status & _DRIVER_OK) and not status & _NEEDS_RESET

    # -- config space ----------------------------------------------------------------

    def config_bytes(self) -> bytes:
        return b""

    def config_write(self, offset: int, data: bytes) -> None:
        """A driver write into the device config space (default: read-only, ignored)."""
        log.debug("%s: write to read-only config offset %#x ignored", type(self).__name__, offset)

    def config_changed(self) -> None:
        """Device config changed: bump the generation and raise a config interrupt."""
        with self.lock:
            self.config_generation = (self.config_generation + 1) & 0xFFFFFFFF
            if self.status & Status.DRIVER_OK:
                self._raise(INT_CONFIG)

    # -- status machine --------------------------------------------------------------

    def write_status(self, value: int) -> None:
        """The driver writes Status: 0 resets; bits may only be added, never cleared.

        Some drivers write each step's bit alone (ACK, then DRIVER, ...); such a write is
        taken as adding its bits, so those drivers still come up.
        """
        with self.lock:
            value &= 0xFF
            if value == 0:
                self.reset()
                return
            old = self.status
            if old & ~value & ~_NEEDS_RESET & 0xFF:
                log.warning("virtio: driver cleared status bits (%#x -> %#x) without a reset; "
                            "kept them", old, value)
            new_bits = value & ~old & ~_NEEDS_RESET & 0xFF  # NEEDS_RESET is device-owned
            if new_bits & Status.FEATURES_OK and not self._accept_features():
                new_bits &= ~int(Status.FEATURES_OK)
            status = old | new_bits
            if new_bits & Status.DRIVER_OK and not status & Status.FEATURES_OK:
                log.warning("virtio: DRIVER_OK without FEATURES_OK; device needs reset")
                self.status = status
                self.set_needs_reset("DRIVER_OK before FEATURES_OK")
                return
            self.status = status
            if new_bits & Status.DRIVER_OK and not status & Status.NEEDS_RESET:
                self._on_driver_ok()

    def _accept_features(self) -> bool:
        feats = self.driver_features
        offered = self.host_features()
        if not feats >> F_VERSION_1 & 1:
            log.warning("virtio: driver did not accept VERSION_1; FEATURES_OK refused")
            return False
        if feats & ~offered:
            log.warning("virtio: driver accepted unoffered features %#x; FEATURES_OK refused",
                        feats & ~offered)
            return False
        for vq in self.queues:
            vq.event_idx = bool(feats >> F_RING_EVENT_IDX & 1)
            vq.indirect = bool(feats >> F_RING_INDIRECT_DESC & 1)
        self._on_features_ok(feats)
        return True

    def write_driver_features(self, word: int, value: int) -> None:
        """DriverFeatures window `word` (0 = bits 0..31, 1 = bits 32..63)."""
        with self.lock:
            if self.status & Status.FEATURES_OK:
                log.warning("virtio: driver features written after FEATURES_OK; ignored")
                return
            if word not in (0, 1):
                log.debug("virtio: driver feature window %d ignored", word)
                return
            shift = 32 * word
            mask = 0xFFFFFFFF << shift
            self.driver_features = (self.driver_features & ~mask) | ((value & 0xFFFFFFFF) << shift)

    def set_needs_reset(self, reason: str) -> None:
        """The device hit a driver error: NEEDS_RESET plus a config interrupt (spec 2.1.2)."""
        with self.lock:
            if self.status & Status.NEEDS_RESET:
                log.debug("virtio %s: %s (already needs reset)", type(self).__name__, reason)
                return
            log.error("virtio %s: %s; device needs reset", type(self).__name__, reason)
            self.status |= _NEEDS_RESET
            if self.status & Status.DRIVER_OK:
                self._raise(INT_CONFIG)

    def reset(self) -> None:
        """Status 0 / transport reset: queues, features and interrupt state go back to zero."""
        with self.lock:
            self.status = 0
            self.driver_features = 0
            self.isr = 0
            for vq in self.queues:
                vq.reset()
                vq.event_idx = vq.indirect = vq.in_reset = False
            self._on_reset()
            self._update_irq()

    # -- queues and interrupts -------------------------------------------------------

    def queue_notify(self, index: int) -> None:
        """QueueNotify from the CPU thread."""
        with self.lock:
            if not 0 <= index < len(self.queues):
                log.warning("virtio: notify of nonexistent queue %d ignored", index)
                return
            vq = self.queues[index]
            if not vq.ready:
                log.warning("virtio: notify of queue %d before QueueReady; ignored", index)
                return
            if self.status & _NEEDS_RESET:
                log.debug("virtio: notify of queue %d while the device needs reset", index)
                return
            if not self.driver_ok:
                log.debug("virtio: notify of queue %d before DRIVER_OK deferred", index)
                return
            self._on_queue_notify(vq)

    def queue_reset(self, index: int) -> None:
        with self.lock:
            if 0 <= index < len(self.queues):
                self.queues[index].reset()
                self.queues[index].in_reset = True
                self._on_queue_reset(index)

    def queue_disable(self, index: int) -> None:
        """QueueReady 0: the device lets go of every buffer it holds from that queue."""
        with self.lock:
            if 0 <= index < len(self.queues):
                self.queues[index].ready = False
                self._on_queue_reset(index)

    def notify_used(self, vq: VirtQueue) -> None:
        """After pushing used buffers: interrupt the driver unless it suppressed it."""
        try:
            if vq.should_notify():
                self._raise(INT_USED_BUFFER)
        except Exception as exc:  # noqa: BLE001 - guest memory trouble
            self.set_needs_reset(f"queue {vq.index}: {exc}")

    def ack_interrupt(self, bits: int) -> None:
        with self.lock:
            self.isr &= ~bits
            self._update_irq()

    def _raise(self, bits: int) -> None:
        self.isr |= bits
        self._update_irq()

    def _update_irq(self) -> None:
        t = self.transport
        if t is not None:
            t.update_irq()

    # -- hooks for device classes ----------------------------------------------------

    def _on_features_ok(self, features: int) -> None:
        pass

    def _on_driver_ok(self) -> None:
        pass

    def _on_queue_notify(self, vq: VirtQueue) -> None:
        pass

    def _on_queue_reset(self, index: int) -> None:
        pass

    def _on_reset(self) -> None:
        pass

    # -- snapshot --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"status": self.status, "driver_features": self.driver_features,
                    "isr": self.isr, "config_generation": self.config_generation,
                    "queues": [vq.state() for vq in self.queues]}

    def load_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.status = int(state.get("status", 0))
            self.driver_features = int(state.get("driver_features", 0))
            self.isr = int(state.get("isr", 0))
            self.config_generation = int(state.get("config_generation", 0))
            for vq, qs in zip(self.queues, state.get("queues", []), strict=False):
                vq.load_state(qs)
            self._update_irq()
