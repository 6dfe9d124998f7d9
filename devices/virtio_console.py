"""virtio-console (virtio-serial): port 0 console plus named multiport ports.

Host data is never dropped: input the guest has no buffers for stays in the backend (can_read
is 0) and is pulled again with accept_input(); guest output a backend cannot take throttles
the port until a writable watch fires. The device sits behind any transport (virtio_mmio).

Deliberate differences from QEMU's virtio-serial (all in favour of "nothing is lost"):
console ports are throttled like generic ports instead of dropping what the backend refuses;
a generic port whose host side is closed keeps the guest's output queued until the host
connects again, including the rest of a chain it was writing (QEMU completes it unsent);
device->guest control messages wait for control buffers instead of being dropped. RESIZE
carries (cols, rows) as the spec orders them. Reference: docs/devices/virtio-console.md.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from e2kchar.chardev.frontend import CharBackend
from e2kchar.chardev.outqueue import OutQueue
from e2kchar.chardev.types import ChardevEvent

from .layouts_packed import CONSOLE_CONFIG, CONSOLE_RESIZE, CONTROL_MSG
from .virtio import VirtioDevice, VirtioId
from .virtqueue import VirtqElement, VirtQueue, VirtqueueError

if TYPE_CHECKING:
    import threading

    from e2kchar.chardev.base import Chardev

log = logging.getLogger(__name__)

# device feature bits
F_SIZE = 0
F_MULTIPORT = 1
F_EMERG_WRITE = 2

DATA_QUEUE_SIZE = 128
CONTROL_QUEUE_SIZE = 32
#: the most ports a virtio-mmio/pci transport can address (queue index is 16 bits in QEMU: 1024)
MAX_PORTS_LIMIT = 511
#: how many device->guest control messages wait for control buffers before we log drops
CTRL_BACKLOG_LIMIT = 4096
#: the most bytes of one guest control message we look at
CTRL_MSG_MAX = 4096
#: guest output is handed to the backend in pieces of at most this size (views of guest RAM)
TX_CHUNK = 4 << 20
#: the most guest buffers one vectored write hands to the backend (Linux's UIO_MAXIOV)
TX_IOV = 1024
#: guest bytes one notify (or one writable watch) writes at most; the rest goes on from
#: the port's writable watch, so a hostile chain (all of RAM, posted 128 times) cannot keep
#: the CPU thread in one QUEUE_NOTIFY for hours
TX_BUDGET = 2 * TX_CHUNK

#: declared in layouts.py; these are their struct forms (build and parse the same bytes)
ConsoleConfig = CONSOLE_CONFIG
ControlMsg = CONTROL_MSG
ConsoleResize = CONSOLE_RESIZE
CTRL_HDR = CONTROL_MSG.size
EMERG_WR_OFFSET = 8


class CtrlEvent(IntEnum):
    DEVICE_READY = 0
    PORT_ADD = 1
    PORT_REMOVE = 2
    PORT_READY = 3
    CONSOLE_PORT = 4
    RESIZE = 5
    PORT_OPEN = 6
    PORT_NAME = 7


class Port:
    """One virtio-serial port: its backend handle and both data directions."""

    def __init__(self, nr: int, name: str | None, console: bool,
                 lock: threading.RLock | None = None) -> None:
        self.nr = nr
        self.name = name
        self.console = console
        #: guest output to the backend, used unbuffered: the bytes stay in the guest's chain
        #: (tx_view/tx_rest) or the backlog while the backend is full
        self.out = OutQueue(None, lock, f"virtio-console: port {nr}")
        self.host_connected = False
        self.guest_ready = False       # PORT_READY received
        self.guest_connected = False   # the guest has the port open
        # host -> guest
        self.rx_elems: deque[VirtqElement] = deque()  # popped, still empty receive buffers
        self.pending_in = bytearray()   # taken from the backend, not yet in guest memory
        # guest -> host
        self.tx_elem: VirtqElement | None = None
        self.tx_rest: list[tuple[int, int]] = []
        self.tx_view: memoryview | None = None
        #: bytes the next batch of chains may hold: what the backend took at once last time
        #: (a pipe takes 64 KiB: chains popped beyond that would only go back to the ring)
        self.tx_window = TX_CHUNK
        self.backlog = bytearray()      # emergency-write bytes the backend did not take yet
        #: bytes each way, and how often guest output was throttled by a full backend
        self.stats = {"rx_bytes": 0, "tx_bytes": 0, "throttles": 0,
                      "budget_yields": 0}

    @property
    def fe(self) -> CharBackend | None:
        return self.out.fe

    @fe.setter
    def fe(self, fe: CharBackend | None) -> None:
        self.out.fe = fe

    @property
    def throttled(self) -> bool:
        """Guest output waits for the backend to take more."""
        return self.out.waiting

    @property
    def rx_queue(self) -> int:
        return 0 if self.nr == 0 else 2 * self.nr + 2

    @property
    def tx_queue(self) -> int:
        return self.rx_queue + 1


class VirtioConsole(VirtioDevice):
    """virtio-console with up to max_ports ports (MULTIPORT when max_ports > 1)."""

    device_id = VirtioId.CONSOLE

    def __init__(self, *, max_ports: int = 31, cols: int = 0, rows: int = 0,
                 emergency_write: bool = True) -> None:
        if not isinstance(max_ports, int) or not 1 <= max_ports <= MAX_PORTS_LIMIT:
            raise ValueError(f"max_ports must be 1..{MAX_PORTS_LIMIT}, not {max_ports!r}")
        self.max_ports = max_ports
        self.multiport_offered = max_ports > 1
        nq = 2 * max_ports + 2 if self.multiport_offered else 2
        sizes = [CONTROL_QUEUE_SIZE if i in (2, 3) and self.multiport_offered
                 else DATA_QUEUE_SIZE for i in range(nq)]
        super().__init__(sizes)
        self.cols = cols & 0xFFFF
        self.rows = rows & 0xFFFF
        self.emergency_write = emergency_write
        #: called as on_guest_open(port_nr, is_open) when the guest opens or closes a port
        #: (a monitor turns it into QEMU's VSERPORT_CHANGE event); runs under the device lock
        self.on_guest_open: Callable[[int, bool], Any] | None = None
        self.ports: dict[int, Port] = {}
        self.device_ready = False
        self.ctrl_pending: deque[bytes] = deque()

    # -- host-side API ---------------------------------------------------------------

    def add_port(self, chardev: Chardev | None = None, name: str | None = None,
                 console: bool = True, nr: int | None = None) -> int:
        """Add a virtconsole (console=True) or virtserialport; returns the port number.

        The first console takes port 0; other ports take the lowest free number >= 1.
        A port added after the guest's DEVICE_READY is hot-plugged (PORT_ADD).
        """
        with self.lock:
            if name is not None:
                if not isinstance(name, str) or not name or "\0" in name:
                    raise ValueError(f"bad port name {name!r}")
                if any(p.name == name for p in self.ports.values()):
                    raise ValueError(f"virtio-serial port name '{name}' is already in use")
            if nr is None:
                if console and 0 not in self.ports:
                    nr = 0
                else:
                    nr = next((i for i in range(1, self.max_ports) if i not in self.ports), None)
                    if nr is None:
                        raise ValueError(f"no free port: all {self.max_ports} are in use")
            elif not 0 <= nr < self.max_ports or nr in self.ports:
                raise ValueError(f"port number {nr} is out of range or in use")
            elif nr == 0 and not console:
                raise ValueError("port 0 is reserved for a console")
            port = Port(nr, name, console, self.lock)
            if chardev is not None:
                port.fe = CharBackend(chardev)
                if console:
                    port.host_connected = True
                self._register_handlers(port)
            self.ports[nr] = port
            if self.device_ready and self.has_feature(F_MULTIPORT):
                self._send_ctrl(nr, CtrlEvent.PORT_ADD, 1)
            return nr

    def remove_port(self, nr: int) -> None:
        """Hot-unplug a port: PORT_REMOVE to the guest, the backend is detached."""
        with self.lock:
            port = self.ports.pop(nr, None)
            if port is None:
                raise ValueError(f"no port {nr}")
            port.out.cancel_wait()
            fe = port.fe
            port.fe = None
            if self.device_ready and self.has_feature(F_MULTIPORT):
                self._send_ctrl(nr, CtrlEvent.PORT_REMOVE, 1)
        if fe is not None:
            fe.deinit()

    def port(self, nr: int) -> Port | None:
        return self.ports.get(nr)

    def resize(self, nr: int, cols: int, rows: int) -> None:
        """Tell the guest a console's size: config space for port 0, RESIZE when multiport."""
        with self.lock:
            port = self.ports.get(nr)
            if port is None:
                raise ValueError(f"no port {nr}")
            if nr == 0:
                self.cols, self.rows = cols & 0xFFFF, rows & 0xFFFF
                self.config_changed()
            if self.device_ready and self.has_feature(F_MULTIPORT) and port.guest_ready:
                self._send_ctrl(nr, CtrlEvent.RESIZE, 0,
                                ConsoleResize.build({"cols": cols & 0xFFFF, "rows": rows & 0xFFFF}))

    # -- VirtioDevice ----------------------------------------------------------------

    def device_features(self) -> int:
        f = 1 << F_SIZE
        if self.multiport_offered:
            f |= 1 << F_MULTIPORT
        if self.emergency_write:
            f |= 1 << F_EMERG_WRITE
        return f

    def config_bytes(self) -> bytes:
        cfg: bytes = ConsoleConfig.build({"cols": self.cols, "rows": self.rows,
                                          "max_nr_ports": self.max_ports, "emerg_wr": 0})
        return cfg if self.emergency_write else cfg[:EMERG_WR_OFFSET]

    def config_write(self, offset: int, data: bytes) -> None:
        with self.lock:
            if not self.emergency_write or not (
                    offset <= EMERG_WR_OFFSET < offset + len(data)):
                log.debug("virtio-console: config write at %#x ignored", offset)
                return
            value = int.from_bytes(data, "little") >> 8 * (EMERG_WR_OFFSET - offset)
            self._emergency_write(value & 0xFF)

    def _multiport(self) -> bool:
        return self.has_feature(F_MULTIPORT)

    def _on_driver_ok(self) -> None:
        if not self._multiport():
            p0 = self.ports.get(0)
            if p0 is not None:
                self._set_guest_connected(p0, True)
        for vq in self.queues:
            if vq.ready:
                self._on_queue_notify(vq)

    def _on_reset(self) -> None:
        self.device_ready = False
        self.ctrl_pending.clear()
        for port in self.ports.values():
            port.guest_ready = False
            if port.guest_connected:
                self._set_guest_connected(port, False)
            port.rx_elems.clear()
            self._drop_tx(port)

    def _on_queue_reset(self, index: int) -> None:
        for port in self.ports.values():
            if index == port.rx_queue:
                port.rx_elems.clear()
            elif index == port.tx_queue:
                self._drop_tx(port)

    def _drop_tx(self, port: Port) -> None:
        if port.tx_elem is not None:
            log.debug("virtio-console: port %d: guest output in flight discarded by reset",
                      port.nr)
        port.tx_elem = None
        port.tx_rest = []
        port.tx_view = None
        if not port.backlog:  # emergency bytes already taken from the guest still go out
            port.out.cancel_wait()

    def _on_queue_notify(self, vq: VirtQueue) -> None:
        i = vq.index
        if i >= 2 and not self._multiport():
            log.warning("virtio-console: notify of queue %d without MULTIPORT; ignored", i)
            return
        try:
            if self.multiport_offered and i == 2:
                self._flush_ctrl()
            elif self.multiport_offered and i == 3:
                self._handle_ctrl_out(vq)
            else:
                nr = 0 if i < 2 else (i - 2) // 2
                port = self.ports.get(nr)
                if port is None:
                    self._discard_queue(vq, nr)
                elif i == port.rx_queue:
                    self._flush_rx(port)
                    if not port.pending_in and port.fe is not None:
                        port.fe.accept_input()
                else:
                    self._flush_tx(port)
        except VirtqueueError as exc:
            self.set_needs_reset(str(exc))

    def _discard_queue(self, vq: VirtQueue, nr: int) -> None:
        """Transmit buffers for a port that does not exist: complete them unread."""
        if vq.index % 2 == 0:
            return  # receive buffers stay posted; nothing will fill them
        pushed = False
        while (elem := vq.pop()) is not None:
            vq.push(elem, 0)
            pushed = True
        if pushed:
            log.warning("virtio-console: output for nonexistent port %d discarded", nr)
            self.notify_used(vq)

    # -- guest connection state ------------------------------------------------------

    def _guest_usable(self, port: Port) -> bool:
        return self.driver_ok and port.guest_connected

    def _set_guest_connected(self, port: Port, connected: bool) -> None:
        port.guest_connected = connected
        if port.fe is not None:
            if not port.console:
                port.fe.set_open(connected)
            if connected:
                port.fe.accept_input()
        listener = self.on_guest_open
        if listener is not None:
            try:
                listener(port.nr, connected)
            except Exception:
                log.exception("virtio-console: on_guest_open listener failed")

    # -- host -> guest ---------------------------------------------------------------

    def _rx_space(self, port: Port, want: int) -> int:
        """Writable bytes in posted receive buffers, popping more while short of want."""
        space = sum(e.in_len for e in port.rx_elems)
        vq = self.queues[port.rx_queue]
        while space < want and vq.ready:
            elem = vq.pop()
            if elem is None:
                break
            if not elem.in_len:
                log.warning("virtio-console: port %d: receive buffer with no writable space",
                            port.nr)
                vq.push(elem, 0)
                self.notify_used(vq)
                continue
            port.rx_elems.append(elem)
            space += elem.in_len
        return space

    def _flush_rx(self, port: Port) -> None:
        """Copy pending host input into the guest's receive buffers, one chunk per buffer."""
        if not self._guest_usable(port) or port.rx_queue >= len(self.queues):
            return
        vq = self.queues[port.rx_queue]
        pushed = False
        try:
            while port.pending_in:
                if not port.rx_elems and not self._rx_space(port, 1):
                    break
                elem = port.rx_elems[0]
                n = vq.write_segments(elem.in_sg, bytes(port.pending_in[:elem.in_len]))
                port.rx_elems.popleft()
                vq.push(elem, n)
                pushed = True
                del port.pending_in[:n]
                port.stats["rx_bytes"] += n
        except VirtqueueError as exc:
            self.set_needs_reset(str(exc))
        finally:
            if pushed:
                self.notify_used(vq)

    def _can_read(self, port: Port) -> int:
        with self.lock:
            if port.pending_in or not self._guest_usable(port):
                return 0
            try:
                return self._rx_space(port, 4096)
            except VirtqueueError as exc:
                self.set_needs_reset(str(exc))
                return 0

    def _read(self, port: Port, data: bytes) -> None:
        with self.lock:
            port.pending_in += data
            self._flush_rx(port)

    # -- guest -> host ---------------------------------------------------------------

    def _flush_tx(self, port: Port) -> None:
        """Hand the port's transmit chains to the backend until empty or it pushes back.

        Each guest buffer goes to the backend as a view of guest RAM (no copy); a chain
        returns to the guest only once the backend took all of it, so a stalled backend
        leaves the rest in guest RAM (tx_elem / tx_rest / tx_view) until its watch fires.
        """
        if port.throttled:
            return
        vq = self.queues[port.tx_queue]
        out = port.out
        pushed = False
        budget = TX_BUDGET
        try:
            while True:
                fe = out.fe
                if port.tx_view is None:
                    if port.backlog and fe is not None:
                        if not self._write_out(port, port.backlog, is_backlog=True):
                            break
                        continue
                    if port.tx_elem is None:
                        if fe is not None and not port.console and not port.host_connected:
                            break  # hold guest output until the host side connects
                        if not self.driver_ok:
                            break  # no buffers are consumed before DRIVER_OK or after NEEDS_RESET
                        if fe is not None:
                            if budget <= 0:
                                if vq.pending():  # more to write: it goes on from the watch
                                    port.stats["budget_yields"] += 1
                                    out.wait_writable(lambda: self._flush_tx(port))
                                break
                            took, n, more = self._tx_batch(port, vq)
                            pushed = pushed or took > 0
                            budget -= n
                            if not more:
                                break
                            continue
                        elem = vq.pop()
                        if elem is None:
                            break
                        if fe is None:
                            vq.push(elem, 0)  # no backend at all: nobody could ever read it
                            pushed = True
                            log.debug("virtio-console: port %d has no backend; output discarded",
                                      port.nr)
                            continue
                        port.tx_elem = elem
                        port.tx_rest = list(elem.out_sg)
                    if not port.tx_rest:
                        vq.push(port.tx_elem, 0)
                        port.tx_elem = None
                        pushed = True
                        continue
                    if budget <= 0 and fe is not None:
                        port.stats["budget_yields"] += 1
                        out.wait_writable(lambda: self._flush_tx(port))
                        break
                    addr, n = port.tx_rest.pop(0)
                    if n > TX_CHUNK:  # bound what one huge descriptor writes at once
                        port.tx_rest.insert(0, (addr + TX_CHUNK, n - TX_CHUNK))
                        n = TX_CHUNK
                    budget -= n
                    port.tx_view = vq.view(addr, n)  # guest RAM itself, no copy
                if fe is None:
                    port.tx_view = None
                    continue
                if not port.host_connected and not port.console:
                    break  # the host side went away mid-chain: the rest waits for it too
                if not self._write_out(port, port.tx_view, is_backlog=False):
                    break
        except VirtqueueError as exc:
            self.set_needs_reset(str(exc))
        finally:
            if pushed:
                self.notify_used(vq)

    def _tx_batch(self, port: Port, vq: VirtQueue) -> tuple[int, int, bool]:
        """Hand the chains the guest made available to the backend in one vectored write
        (up to TX_CHUNK bytes in TX_IOV buffers, as views of guest RAM) and give back those
        it took whole, with one used idx update. Returns (chains given back, bytes
        written, go on); go on is False when the ring is empty or the backend pushed back
        (its watch is armed). A chain the backend took part of becomes the port's chain in
        progress (tx_elem/tx_rest) and those after it go back to the ring; a chain too big
        for a batch is left to the caller as the chain in progress."""
        elems = vq.pop_many(TX_IOV, port.tx_window)
        if not elems:
            return 0, 0, False
        first = elems[0]
        if len(elems) == 1 and (first.out_len > TX_CHUNK or len(first.out_sg) > TX_IOV):
            port.tx_elem, port.tx_rest = first, list(first.out_sg)  # piece by piece
            return 0, 0, True
        window = port.tx_window
        views, sizes = vq.out_views(elems, TX_IOV)  # guest RAM itself, no copy
        if len(sizes) < len(elems):
            vq.unpop(len(elems) - len(sizes))  # the next batch's
            del elems[len(sizes):]
        total = sum(sizes)
        out = port.out
        res = 0
        if views:
            dropped = out.dropped
            res = out.writev(views)
            if out.dropped != dropped:  # the backend failed for good (logged): all of it goes
                res = total
            else:
                port.stats["tx_bytes"] += res
        # the next batch: as big as what went at once (at least one 64 KiB chain's worth),
        # twice that after a batch that went whole
        port.tx_window = min(TX_CHUNK, 2 * window if res >= total else max(res, 65536))
        left, done = res, 0
        for size in sizes:
            if size > left:
                break
            left -= size
            done += 1
        vq.push_many(elems[:done])
        if done == len(elems):
            return done, res, True
        rest: list[tuple[int, int]] = []
        for addr, n in elems[done].out_sg:  # the part the backend has not taken
            if left >= n:
                left -= n
            else:
                rest.append((addr + left, n - left))
                left = 0
        port.tx_elem, port.tx_rest = elems[done], rest
        vq.unpop(len(elems) - done - 1)
        port.stats["throttles"] += 1
        out.wait_writable(lambda: self._flush_tx(port))
        return done, res, False

    def _write_out(self, port: Port, buf: Any, is_backlog: bool) -> bool:
        """One write of buf; True when all of it went out, else the port is throttled."""
        if not len(buf):
            if not is_backlog:
                port.tx_view = None
            return True
        out = port.out
        dropped = out.dropped
        res = out.write(buf)
        if out.dropped != dropped:  # the backend failed for good (logged): the rest goes too
            if is_backlog:
                port.backlog.clear()
            else:
                port.tx_view = None
                port.tx_rest = []
            return True
        if res > 0:
            port.stats["tx_bytes"] += res
            if is_backlog:
                del port.backlog[:res]
                done = not port.backlog
            else:
                port.tx_view = port.tx_view[res:] if res < len(buf) else None  # type: ignore[index]
                done = port.tx_view is None
            if done:
                return True
        port.stats["throttles"] += 1
        port.out.wait_writable(lambda: self._flush_tx(port))
        return False

    def _emergency_write(self, byte: int) -> None:
        port = next((p for _, p in sorted(self.ports.items()) if p.console and p.fe is not None),
                    None)
        if port is None:
            log.debug("virtio-console: emergency write %#x with no console port", byte)
            return
        port.backlog.append(byte)
        self._flush_tx(port)

    # -- control queues --------------------------------------------------------------

    def _send_ctrl(self, nr: int, event: CtrlEvent, value: int, payload: bytes = b"") -> None:
        if len(self.ctrl_pending) >= CTRL_BACKLOG_LIMIT:
            log.error("virtio-console: guest is not reading control messages; oldest dropped")
            self.ctrl_pending.popleft()
        self.ctrl_pending.append(
            ControlMsg.build({"id": nr, "event": int(event), "value": value}) + payload)
        self._flush_ctrl()

    def _flush_ctrl(self) -> None:
        if not self.driver_ok or not self._multiport():
            return
        vq = self.queues[2]
        pushed = False
        try:
            while self.ctrl_pending:
                elem = vq.pop()
                if elem is None:
                    break
                msg = self.ctrl_pending[0]
                if not elem.in_len:  # a device-readable buffer: return it, keep the message
                    log.warning("virtio-console: control receive buffer with no writable space")
                    vq.push(elem, 0)
                    pushed = True
                    continue
                if elem.in_len < len(msg):
                    log.warning("virtio-console: control buffer of %d bytes truncates a "
                                "%d-byte message", elem.in_len, len(msg))
                n = vq.write_segments(elem.in_sg, msg)
                vq.push(elem, n)
                pushed = True
                self.ctrl_pending.popleft()
        except VirtqueueError as exc:
            self.set_needs_reset(str(exc))
        finally:
            if pushed:
                self.notify_used(vq)

    def _handle_ctrl_out(self, vq: VirtQueue) -> None:
        msgs: list[bytes] = []
        try:
            while (elem := vq.pop()) is not None:
                data = bytearray()
                for addr, n in elem.out_sg:
                    take = min(n, CTRL_MSG_MAX - len(data))
                    if take <= 0:
                        break
                    data += vq.read_segments([(addr, take)])[0]
                vq.push(elem, 0)
                msgs.append(bytes(data))
        finally:
            if msgs:
                self.notify_used(vq)
        for msg in msgs:
            self._handle_ctrl_msg(msg)

    def _handle_ctrl_msg(self, msg: bytes) -> None:
        if len(msg) < CTRL_HDR:
            log.warning("virtio-console: short control message (%d bytes) ignored", len(msg))
            return
        m = ControlMsg.parse(msg)
        try:
            event = CtrlEvent(m.event)
        except ValueError:
            log.warning("virtio-console: unknown control event %d ignored", m.event)
            return
        if event == CtrlEvent.DEVICE_READY:
            if m.value != 1:
                log.error("virtio-console: guest failed to initialise the device")
                return
            self.device_ready = True
            for nr in sorted(self.ports):
                self._send_ctrl(nr, CtrlEvent.PORT_ADD, 1)
            return
        port = self.ports.get(m.id)
        if port is None:
            log.warning("virtio-console: control event %s for unknown port %d ignored",
                        event.name, m.id)
            return
        if event == CtrlEvent.PORT_READY:
            if m.value != 1:
                log.error("virtio-console: guest failed to add port %d", port.nr)
                return
            port.guest_ready = True
            if port.console:
                self._send_ctrl(port.nr, CtrlEvent.CONSOLE_PORT, 1)
            if port.name is not None:
                self._send_ctrl(port.nr, CtrlEvent.PORT_NAME, 1,
                                port.name.encode("utf-8", "replace") + b"\0")
            if port.host_connected:
                self._send_ctrl(port.nr, CtrlEvent.PORT_OPEN, 1)
        elif event == CtrlEvent.PORT_OPEN:
            connected = bool(m.value)
            if connected != port.guest_connected:
                self._set_guest_connected(port, connected)
            if connected:
                self._flush_rx(port)
                self._flush_tx(port)
        else:
            log.warning("virtio-console: guest sent device-only control event %s; ignored",
                        event.name)

    # -- backend handlers ------------------------------------------------------------

    def _register_handlers(self, port: Port) -> None:
        fe = port.fe
        assert fe is not None
        if port.console:
            fe.set_handlers(lambda: self._can_read(port), lambda d: self._read(port, d),
                            None, lambda: self._be_change(port), set_open=True)
        else:
            fe.set_handlers(lambda: self._can_read(port), lambda d: self._read(port, d),
                            lambda ev: self._event(port, ev), lambda: self._be_change(port),
                            set_open=False)

    def _event(self, port: Port, event: ChardevEvent) -> None:
        with self.lock:
            if event == ChardevEvent.OPENED:
                if port.host_connected:
                    return
                port.host_connected = True
                if self.device_ready and port.guest_ready and self._multiport():
                    self._send_ctrl(port.nr, CtrlEvent.PORT_OPEN, 1)
                if self.driver_ok:
                    self._flush_tx(port)
            elif event == ChardevEvent.CLOSED:
                if not port.host_connected:
                    return
                port.host_connected = False
                if self.device_ready and port.guest_ready and self._multiport():
                    self._send_ctrl(port.nr, CtrlEvent.PORT_OPEN, 0)

    def _be_change(self, port: Port) -> int:
        """Hotswap: re-register on the new backend and move the unthrottle watch."""
        with self.lock:
            fe = port.fe
            if fe is None:
                return 0
            self._register_handlers(port)
            if port.console:
                port.host_connected = True
                if port.guest_connected:
                    pass  # console ports never push the guest's open state (as QEMU)
            port.out.after_swap()  # the unthrottle watch moves to the new backend
            fe.accept_input()
            return 0

    # -- snapshot --------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.lock:
            s = super().state()
            s["console"] = {
                "cols": self.cols, "rows": self.rows, "device_ready": self.device_ready,
                "ctrl_pending": [m.hex() for m in self.ctrl_pending],
                "ports": {nr: {"name": p.name, "console": p.console,
                               "guest_ready": p.guest_ready,
                               "guest_connected": p.guest_connected,
                               "host_connected": p.host_connected,
                               "pending_in": bytes(p.pending_in).hex(),
                               "backlog": bytes(p.backlog).hex(),
                               # popped chains the guest has not got back yet
                               "rx_heads": [e.head for e in p.rx_elems],
                               "tx_head": None if p.tx_elem is None else p.tx_elem.head,
                               "tx_sent": self._tx_sent(p)}
                          for nr, p in self.ports.items()}}
            return s

    @staticmethod
    def _tx_sent(port: Port) -> int:
        """Bytes of the port's current transmit chain already handed to the backend."""
        elem = port.tx_elem
        if elem is None:
            return 0
        left = sum(n for _, n in port.tx_rest)
        if port.tx_view is not None:
            left += len(port.tx_view)
        return elem.out_len - left

    def _restore_held(self, port: Port, ps: dict[str, Any]) -> None:
        """Re-read the chains a snapshot says the port held, from (restored) guest memory."""
        port.rx_elems.clear()
        self._drop_tx(port)
        rxq, txq = self.queues[port.rx_queue], self.queues[port.tx_queue]
        try:
            for head in ps.get("rx_heads", []):
                port.rx_elems.append(rxq.element(int(head)))
            head = ps.get("tx_head")
            if head is not None:
                elem = txq.element(int(head))
                skip = int(ps.get("tx_sent", 0))
                rest = []
                for addr, n in elem.out_sg:
                    if skip >= n:
                        skip -= n
                        continue
                    rest.append((addr + skip, n - skip))
                    skip = 0
                port.tx_elem, port.tx_rest = elem, rest
        except VirtqueueError as exc:
            self.set_needs_reset(f"restoring port {port.nr}: {exc}")
        rxq.inflight = len(port.rx_elems)
        txq.inflight = int(port.tx_elem is not None)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state() snapshot; guest RAM must be restored first (the chains the
        device held are re-read from it and output caught in flight resumes)."""
        with self.lock:
            super().load_state(state)
            c = state.get("console", {})
            self.cols = int(c.get("cols", self.cols))
            self.rows = int(c.get("rows", self.rows))
            self.device_ready = bool(c.get("device_ready", False))
            self.ctrl_pending = deque(bytes.fromhex(m) for m in c.get("ctrl_pending", []))
            for nr, ps in c.get("ports", {}).items():
                port = self.ports.get(int(nr))
                if port is None:
                    continue
                port.guest_ready = bool(ps.get("guest_ready", False))
                port.guest_connected = bool(ps.get("guest_connected", False))
                port.pending_in = bytearray.fromhex(ps.get("pending_in", ""))
                port.backlog = bytearray.fromhex(ps.get("backlog", ""))
                if port.tx_queue < len(self.queues):
                    self._restore_held(port, ps)
            for port in self.ports.values():
                if port.tx_elem is not None or port.backlog:
                    self._flush_tx(port)  # output the snapshot caught in flight goes on
