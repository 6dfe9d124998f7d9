"""The Chardev backend base class: the contract every backend module implements.

A backend subclasses Chardev and overrides the ``chr_*`` hooks it needs. It talks to its
frontend only through ``be_can_write`` / ``be_write`` / ``be_event`` (the ``Frontend``
protocol, which CharBackend implements) and to its registry only through the
``ChardevHost`` protocol, so it never sees a device, the CPU or the registry class.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from .configbase import BackendConfig
from .logfile import LogFile
from .types import READ_BUF_LEN, ChardevError, ChardevEvent

if TYPE_CHECKING:
    from .ioloop import IOLoop

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    # default= (PEP 696): a bare ``Chardev`` is ``Chardev[Any]`` to the type checker, so
    # frontends, devices and the registry take any backend without spelling a parameter;
    # 3.11's TypeVar has no default and the runtime needs none
    from typing_extensions import TypeVar as _TypeVar

    C = _TypeVar("C", bound=BackendConfig, default=Any)
else:
    C = TypeVar("C", bound=BackendConfig)


class Watch:
    """A one-shot "backend can take more output" notification."""

    def __init__(self, chardev: Chardev, callback: Callable[[], Any]) -> None:
        self.chardev = chardev
        self.callback = callback
        self.active = True

    def cancel(self) -> None:
        self.active = False
        self.chardev.remove_watch(self)

    def fire(self) -> None:
        if self.active:
            self.active = False
            self.callback()


class OutputSink:
    """A frontend's bound output path: where its hot path puts bytes without a Python frame.

    Owned by the frontend (CharBackend.sink), drained by the chardev it is attached to (the
    "drainer"), which binds it at attach and re-binds it at every hotswap; docs/architecture.md
    ("The output hot path") describes the protocol. A writer does::

        if sink.fast:                # the drainer coalesces and has room
            sink.put(data)           # bytearray.extend: one C-level call, no lock
                                     # (or sink.put_byte(b): bytearray.append)
            if sink.idle:            # the drainer's flusher has stopped: start it
                sink.wake()
        else:
            ...                      # CharBackend.write (refusals, backpressure, no drainer)

    Exactness: ``buf`` belongs to the frontend and is never replaced, so a byte put is in it
    whatever the drainer is; only the drainer removes bytes from it, under its write lock,
    and a hotswap hands the drainer role over under both write locks (Chardev.release_sink,
    then bind_sink), so each byte is taken exactly once and in order. The ``idle`` flag
    makes sure it is taken at all: the flusher sets ``idle`` *before* its last look at
    ``buf``, the writer puts *before* it looks at ``idle``, so a byte the flusher's last look
    missed is followed by a wake() (the GIL orders the two threads' steps).
    """

    __slots__ = ("buf", "put", "put_byte", "fast", "idle", "drainer")

    def __init__(self) -> None:
        #: bytes put and not yet taken by the drainer (only the drainer removes any)
        self.buf = bytearray()
        #: ``buf.extend``: the hot path's one C-level call
        self.put: Callable[[bytes], None] = self.buf.extend
        #: ``buf.append``: put() for one byte given as an int 0..255 (cheaper than extend)
        self.put_byte: Callable[[int], None] = self.buf.append
        #: put() may be used now (a coalescing drainer with room; cleared at a swap)
        self.fast = False
        #: the drainer's flusher is not running: a writer must call wake() after put()
        self.idle = True
        self.drainer: Chardev | None = None

    def wake(self) -> None:
        """Start the drainer's flusher (after a put() that saw ``idle``)."""
        drainer = self.drainer
        if drainer is not None:
            drainer.wake_output(self)

    def write(self, data: bytes) -> bool:
        """The fast path as one call, for frontends that are not that hot: True when the
        bytes were taken, False when the caller must use CharBackend.write."""
        if not self.fast:
            return False
        self.put(data)
        if self.idle:
            self.wake()
        return True


class Frontend(Protocol):
    """What a backend needs of its frontend handle (Frontend implements it)."""

    fe_open: bool

    @property
    def has_reader(self) -> bool: ...

    def can_receive(self) -> int: ...

    def deliver(self, data: bytes) -> bool: ...

    def deliver_event(self, event: ChardevEvent) -> None: ...

    def backend_destroyed(self, chardev: Chardev) -> None: ...


class ChardevHost(Protocol):
    """The registry as a backend sees it."""

    #: the I/O thread every backend registers its fds and timers with
    ioloop: IOLoop
    #: whether backends that can buffer output bursts (``Chardev.coalesce_output``) may
    coalesce_output: bool

    def find(self, label: str) -> Chardev | None:
        """The chardev registered under label (a mux looks up its base)."""
        ...

    def request_exit(self, status: int) -> None:
        """End the emulation with status (mux Ctrl-A x, testdev 'q')."""
        ...

    def claim_stdio(self) -> bool:
        """Take the process's stdin/stdout for one chardev; False if another has them."""
        ...

    def release_stdio(self) -> None:
        """Give stdio back (the stdio chardev closed)."""
        ...

    def destroy(self, chardev: Chardev) -> None:
        """Unregister and finalize chardev (``Frontend.deinit(delete=True)``)."""
        ...


class Chardev(Generic[C]):
    """A character device backend (QEMU's Chardev), typed by its config
    (``SocketChardev(Chardev[SocketConfig])``)."""

    #: QAPI type name; set by each backend class.
    TYPE: ClassVar[str] = "abstract"
    #: backends that can be the base of a mux, the mux itself overrides
    is_mux: ClassVar[bool] = False

    def __init__(self, host: ChardevHost, label: str | None, config: C) -> None:
        #: the registry, as far as a backend may use it
        self.host = host
        self.ioloop: IOLoop = host.ioloop
        self.label = label
        self.config = config
        self.filename: str = ""
        self.be_open = False
        self.be: Frontend | None = None
        #: held while output is accepted; a hotswap holds the old and the new chardev's
        self.write_lock = threading.RLock()
        #: output is refused (-EPIPE): swapped out or being destroyed (read by Frontend's
        #: hot path, set only by retire_output / resume_output / finalize)
        self.closing = False
        self.closed = False
        self.logfile: LogFile | None = None
        self._watches: list[Watch] = []
        self._read_recheck: Any = None
        #: set by a reopen after a failed swap: do not truncate or reset what exists
        self.reopen = False
        #: observers of accepted output (test consoles, --capture); kept across a swap
        self.taps: list[Callable[[bytes], Any]] = []
        self._obuf = bytearray()
        #: the attached frontend's OutputSink while this chardev drains it
        self._sink: OutputSink | None = None
        self._flush_scheduled = False
        self._flush_waiting = False
        #: the backend's last output error (strerror) while it is failing, else None
        self.output_error: str | None = None
        #: accepted (coalesced) output bytes a failing backend dropped; bytes it refused
        #: outright are counted by the frontend's OutQueue
        self.dropped_bytes = 0

    @property
    def registry(self) -> ChardevHost:
        """The old name of ``host``."""
        return self.host

    # ------------------------------------------------------------------------------------
    # hooks for backend classes

    def open(self) -> bool:
        """Acquire resources; return whether the backend is open (connected) right away."""
        return True

    def chr_write(self, data: memoryview) -> int:
        """Write what the backend can; raise BlockingIOError when nothing fits now.

        ``data`` may be a view of guest RAM (virtio): a backend copies what it keeps."""
        return len(data)

    def chr_writev(self, bufs: list[memoryview]) -> int:
        """chr_write for several buffers in order (one ``writev(2)`` where the backend has
        one); may take less than all, like chr_write. Default: one chr_write of the first."""
        return self.chr_write(bufs[0])

    def chr_ioctl(self, cmd: int, arg: Any) -> Any:
        return -errno.ENOTSUP

    def chr_arm_watch(self) -> None:
        """Arrange for fire_watches() once writable; default: always writable."""
        self.ioloop.call_soon(self.fire_watches)

    def chr_update_read_handler(self) -> None:
        """(Re)evaluate input delivery: called on the I/O thread after handler changes."""

    def chr_accept_input(self) -> None:
        """The frontend has room again; push buffered input (I/O thread)."""

    def chr_set_echo(self, echo: bool) -> None:
        pass

    def chr_set_fe_open(self, fe_open: bool) -> None:
        pass

    def chr_disconnect(self) -> None:
        pass

    def chr_wait_connected(self, timeout: float | None) -> None:
        """Block the (non-I/O) caller until connected; socket servers with wait=on."""

    def chr_close(self) -> None:
        """Release every fd, timer and thread the backend owns."""

    def chr_be_event(self, event: ChardevEvent) -> None:
        be = self.be
        if be is not None:
            be.deliver_event(event)

    def chr_take_focus(self, fe: Frontend) -> None:
        pass

    @classmethod
    def exclusive_resource(cls, config: BackendConfig) -> object | None:
        """A key for a host resource only one chardev can hold (a port, a tty, stdio).

        Two configs with the same key conflict; a swap may then release the old chardev
        before opening the new one.
        """
        return None

    def chr_release_exclusive(self) -> bool:
        """Let go of the exclusive resource for a swap while staying usable otherwise
        (a server closes its listener, keeping its client); True if done."""
        return False

    def chr_reacquire_exclusive(self) -> None:
        """Take the resource back after the swap that wanted it failed."""

    def chr_registered(self) -> None:
        """The chardev is now entered under its id (created, or a swap onto it committed):
        what it was handed may become its own (a socket's fd=N, docs/interfaces.md)."""

    def query_extra(self) -> dict[str, Any]:
        """Extra fields of the chardev-add / chardev-change return value."""
        return {}

    def forget_history(self) -> None:
        """Drop the output kept for the next client (history=), for a frontend whose output
        belongs to one session, such as a monitor; backends without history do nothing."""

    #: True for backends whose finalisation emits CLOSED (fd family, socket, pty, udp)
    closed_on_finalize: ClassVar[bool] = False
    #: Buffer accepted output and hand it to chr_write from the I/O thread: a guest that
    #: prints byte by byte costs one syscall per burst instead of one per byte, and an
    #: interactive reader waits at most one loop iteration.
    coalesce_output: ClassVar[bool] = False
    COALESCE_LIMIT: ClassVar[int] = 65536
    #: a write at least this big goes to the backend at once, uncopied (a virtio buffer):
    #: one syscall already, coalescing would only add a copy
    DIRECT_WRITE_MIN: ClassVar[int] = 4096

    # ------------------------------------------------------------------------------------
    # frontend attachment

    def attach_frontend(self, fe: Frontend) -> int:
        if self.be is not None:
            raise ChardevError(f"Device '{self.label}' is in use")
        self.be = fe
        return 0

    def detach_frontend(self, fe: Frontend) -> None:
        if self.be is fe:
            self.be = None

    def frontends(self) -> list[Frontend]:
        return [self.be] if self.be is not None else []

    @property
    def busy(self) -> bool:
        return bool(self.frontends())

    def focused(self) -> Frontend | None:
        """The frontend that gets input and events (on a mux: the one with the focus)."""
        return self.be

    def frontend_open(self) -> bool:
        be = self.be
        return bool(be is not None and be.fe_open)

    # ------------------------------------------------------------------------------------
    # backend -> frontend helpers (call on the I/O thread)

    def be_can_write(self) -> int:
        be = self.be
        if be is None:
            return 0
        return min(be.can_receive(), READ_BUF_LEN)

    def be_write(self, data: bytes) -> None:
        be = self.be
        if be is None or not data:
            return
        if be.deliver(bytes(data)):
            self.ioloop.notify()

    def reader_attached(self) -> bool:
        """A frontend that takes input is attached (worth re-checking can_read later)."""
        be = self.be
        return be is not None and be.has_reader

    def be_event(self, event: ChardevEvent) -> None:
        if event == ChardevEvent.OPENED:
            self.be_open = True
        elif event == ChardevEvent.CLOSED:
            self.be_open = False
        self.chr_be_event(event)
        self.ioloop.notify()

    def schedule_read_recheck(self, delay: float = 0.01) -> None:
        """QEMU re-polls can_read every loop iteration; we re-check while throttled."""
        if self._read_recheck is None and not self.closed:
            def recheck() -> None:
                self._read_recheck = None
                if not self.closed:
                    self.chr_update_read_handler()
            self._read_recheck = self.ioloop.call_later(delay, recheck)

    # ------------------------------------------------------------------------------------
    # output

    def write(self, data: bytes, write_all: bool) -> int:
        """Frontend output; returns bytes accepted or -errno (QEMU's qemu_chr_write)."""
        if (self.coalesce_output and self.host.coalesce_output
                and (write_all or len(data) < self.DIRECT_WRITE_MIN)):
            if not write_all:
                # the hot path of a polled UART (one byte per call), inlined from
                # _write_coalesced: one Python call less per guest byte
                lock = self.write_lock
                lock.acquire()
                try:
                    sink = self._sink
                    if sink is not None and sink.buf:
                        self._collect_locked()  # the frontend's fast-path bytes go first
                    obuf = self._obuf
                    # (bytes the collect left in the sink mean a full buffer: refused here)
                    if not self.closing and len(obuf) + len(data) <= self.COALESCE_LIMIT:
                        obuf += data
                        if self.logfile is not None or self.taps:
                            self._accepted(bytes(data))
                        if not self._flush_scheduled:
                            self._flush_scheduled = True
                            self.ioloop.call_soon(self._flush_from_loop)
                        return len(data)
                finally:
                    lock.release()
            return self._write_coalesced(data, write_all)
        view = memoryview(data)
        total = len(view)
        off = 0
        res = 0
        with self.write_lock:
            if self.closing:
                return -errno.EPIPE
            while not self._older_output_out_locked():
                if not write_all or self.closing:
                    return -errno.EAGAIN
                time.sleep(0.0001)
            while off < total:
                res = self._attempt(self.chr_write, view[off:])
                if res == -errno.EAGAIN and write_all and not self.closing:
                    time.sleep(0.0001)
                    continue
                if res <= 0:
                    break
                if self.output_error is not None:
                    self.output_recovered()
                off += res
                if not write_all:
                    break
            if off and (self.logfile is not None or self.taps):
                self._accepted(bytes(view[:off]))
        if off:
            return off
        return res

    def _older_output_out_locked(self) -> bool:
        """Output adopted in a swap, or put in the sink, goes out before anything newer
        written past the buffer: True once none is left (write lock held)."""
        sink = self._sink
        if not self._obuf and (sink is None or not sink.buf):
            return True
        return self._drain_pending_locked()

    def _attempt(self, write: Callable[[Any], int], data: Any) -> int:
        """One chr_write / chr_writev call (write lock held): bytes taken, or -errno."""
        try:
            res: int = write(data)
        except BlockingIOError:
            return -errno.EAGAIN
        except OSError as exc:
            self.output_failed(exc, 0)  # refused: the frontend counts its drop
            return -(exc.errno or errno.EIO)
        return res

    def writev(self, bufs: list[memoryview]) -> int:
        """write(b"".join(bufs), False) without the join: one attempt, bytes accepted (the
        first ones, in order) or -errno. Virtio-console hands all the chains of a notify to
        the backend in one call; what is small enough to coalesce is joined and coalesced."""
        total = 0
        for buf in bufs:
            total += len(buf)
        if total < self.DIRECT_WRITE_MIN or len(bufs) == 1:
            one = bufs[0] if len(bufs) == 1 else b"".join(bufs)
            return self.write(one, False)  # type: ignore[arg-type]  # (a view, as elsewhere)
        res = 0
        with self.write_lock:
            if self.closing:
                return -errno.EPIPE
            if not self._older_output_out_locked():
                return -errno.EAGAIN
            res = self._attempt(self.chr_writev, bufs)
            if res > 0:
                if self.output_error is not None:
                    self.output_recovered()
                if self.logfile is not None or self.taps:
                    self._accepted(b"".join(bufs)[:res])
        return res

    def _accepted(self, data: bytes) -> None:
        if self.logfile is not None:
            self.logfile.write(data)
        for tap in self.taps:
            try:
                tap(data)
            except Exception:
                log.exception("%s: output tap failed", self.label)

    def _write_coalesced(self, data: bytes, write_all: bool) -> int:
        # (a single write that fits is taken by write() itself)
        total = len(data)
        off = 0
        while True:
            with self.write_lock:
                if self.closing:
                    return off if off else -errno.EPIPE
                self._collect_locked()  # the frontend's fast-path bytes go first
                obuf = self._obuf
                room = self.COALESCE_LIMIT - len(obuf)
                if room < total - off:
                    self._flush_obuf_locked()
                    self._collect_locked()
                    room = self.COALESCE_LIMIT - len(obuf)
                if room > 0 and off < total:
                    chunk = data[off:off + room] if (off or room < total) else data
                    obuf += chunk
                    off += len(chunk)
                    self._accepted(bytes(chunk))
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        self.ioloop.call_soon(self._flush_from_loop)
                if off >= total and write_all:
                    self._flush_obuf_locked()  # write_all: on the backend when we return
                    if not obuf or self.closing:
                        return off
                elif off >= total or not write_all or self.closing:
                    return off if off else -errno.EAGAIN
            time.sleep(0.0001)

    def _flush_obuf_locked(self) -> bool:
        """Hand buffered output to the backend; True once the buffer is empty."""
        obuf = self._obuf
        while obuf:
            failed: OSError | None = None
            try:
                n = self.chr_write(memoryview(obuf))
            except BlockingIOError:
                return False
            except OSError as exc:
                failed = OSError(exc.errno, exc.strerror)  # without the traceback
            if failed is not None:
                # cleared only here, with no traceback left: its frames hold views of the
                # buffer, and a buffer with views cannot be resized (BufferError)
                self.output_failed(failed, len(obuf))
                obuf.clear()
                return True
            if n <= 0:
                return False
            if self.output_error is not None:
                self.output_recovered()
            del obuf[:n]
        return True

    def _drain_pending_locked(self) -> bool:
        """Collect the sink and flush until both are empty; False when the backend is full."""
        while True:
            self._collect_locked()
            if not self._flush_obuf_locked():
                return False
            sink = self._sink
            if sink is None or not sink.buf:
                return True

    # ------------------------------------------------------------------------------------
    # the frontend's OutputSink (the output hot path; docs/architecture.md)

    def _collect_locked(self, everything: bool = False) -> None:
        """Move what the frontend put in its sink into the output buffer (up to the
        coalescing limit unless ``everything``); this is where those bytes are accepted
        (logfile, taps). Write lock held; the only place bytes leave a sink."""
        sink = self._sink
        if sink is None:
            return
        buf = sink.buf
        if buf:
            obuf = self._obuf
            room = self.COALESCE_LIMIT - len(obuf)
            # copies, never a memoryview of buf: an export would make the writer's
            # concurrent extend() fail (BufferError)
            if everything or len(buf) <= room:
                chunk = bytes(buf)
            else:
                chunk = bytes(buf[:room]) if room > 0 else b""
            if chunk:
                del buf[:len(chunk)]  # only the front: a concurrent put() appends behind it
                obuf += chunk
                if self.logfile is not None or self.taps:
                    self._accepted(chunk)
        sink.fast = self._sink_fast()

    def _sink_fast(self) -> bool:
        """Whether the frontend may put bytes in its sink now: a coalescing chardev that
        takes output, has room, and whose flusher is not waiting for a stalled backend
        (then writers go through write(), which refuses beyond the limit: backpressure)."""
        return bool(self.coalesce_output and self.host.coalesce_output and not self.closing
                    and not self._flush_waiting and len(self._obuf) < self.COALESCE_LIMIT)

    def bind_sink(self, sink: OutputSink) -> None:
        """Become the drainer of the frontend's sink (attach, hotswap; write lock held).

        Nothing is collected here (a rolled-back swap puts older bytes behind this
        chardev's first); the flusher started here takes what the sink holds. A mux has
        several frontends and never drains one: they write through CharBackend.write.
        """
        if self.is_mux:
            return
        self._sink = sink
        sink.drainer = self
        sink.fast = self._sink_fast()
        sink.idle = False  # the flusher started now runs until it sees the sink empty
        self._schedule_flush_locked()

    def release_sink(self, sink: OutputSink) -> None:
        """Stop draining sink (hotswap, detach, finalize; write lock held): everything put
        so far is collected into this chardev's output (which a swap hands to the new
        chardev); a put() after this waits in the sink for the next drainer."""
        if self._sink is not sink:
            return
        sink.fast = False
        self._collect_locked(everything=True)
        sink.fast = False
        self._sink = None
        sink.drainer = None

    def wake_output(self, sink: OutputSink) -> None:
        """A writer put bytes while the flusher was idle (OutputSink.wake): start it."""
        with self.write_lock:
            if self._sink is not sink or self.closed:
                return  # released meanwhile: the next drainer's bind started its flusher
            sink.idle = False
            self._schedule_flush_locked()

    def _schedule_flush_locked(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.ioloop.call_soon(self._flush_from_loop)

    def output_failed(self, exc: OSError, dropped: int) -> None:
        """The backend refused output for good (not EAGAIN): logged once per state change,
        dropped bytes counted."""
        self.dropped_bytes += dropped
        text = exc.strerror or str(exc)
        if self.output_error != text:
            self.output_error = text
            log.warning("%s: output failed: %s; output is dropped (and counted) until the "
                        "backend takes it again", self.label, text)

    def output_recovered(self) -> None:
        """The backend took output again after output_failed: logged once."""
        log.warning("%s: output works again (%d bytes dropped meanwhile)", self.label,
                    self.dropped_bytes)
        self.output_error = None

    def retire_output(self, flush: bool = True) -> bytes:
        """Stop taking output (the chardev is being swapped out) and return what its
        backend has not taken yet, after one more non-blocking try if ``flush``. Write
        lock held.

        Writers turned away from now on (-EPIPE) are sent on to the frontend's new chardev
        by Frontend.
        """
        self.closing = True
        if flush:
            self._flush_obuf_locked()
        left = bytes(self._obuf)
        self._obuf.clear()
        return left

    def resume_output(self) -> None:
        """Take output again after retire_output (a swap was rolled back). Write lock held."""
        self.closing = False

    def adopt_output(self, data: bytes, front: bool) -> None:
        """Take over output another chardev accepted but never delivered (a swap): ahead of
        what this one holds (``front``) or after it. Write lock held."""
        if not data:
            return
        if front:
            self._obuf[:0] = data
        else:
            self._obuf += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.ioloop.call_soon(self._flush_from_loop)

    def flush(self, timeout: float = 1.0) -> bool:
        """Push buffered output to the backend now; True once nothing is left buffered."""
        deadline = time.monotonic() + timeout
        while True:
            with self.write_lock:
                if self.closed or self._drain_pending_locked():
                    sink = self._sink
                    return not self._obuf and not (sink is not None and sink.buf)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.0005)

    #: while output flows, the I/O thread looks for more this often instead of being woken
    #: by every write (a cross-thread wake-up costs a syscall)
    FLUSH_INTERVAL: ClassVar[float] = 0.001

    def _flush_from_loop(self) -> None:
        """The flusher: while output flows it runs every FLUSH_INTERVAL (writers need not
        wake it); it stops when nothing came, or waits for a watch when the backend is full.
        While it is scheduled or waiting the sink's ``idle`` is clear (OutputSink)."""
        with self.write_lock:
            if self.closed:
                self._flush_scheduled = False
                return
            sink = self._sink
            self._collect_locked()
            had_output = bool(self._obuf)
            drained = self._flush_obuf_locked()
            if drained and had_output:
                # still busy: keep the flag set so writers need not wake us
                if sink is not None:
                    self._collect_locked()  # more room now: the fast path may go on
                self.ioloop.call_later(self.FLUSH_INTERVAL, self._flush_from_loop)
                return
            if drained:
                if sink is not None:
                    sink.idle = True  # first: a put() after this sees it and wakes us
                    if sink.buf:  # then: a put() before it is seen here
                        sink.idle = False
                        self.ioloop.call_soon(self._flush_from_loop)
                        return
                self._flush_scheduled = False
                return
            self._flush_waiting = True  # the flag stays set: fire_watches() resumes it
            if sink is not None:
                sink.fast = False  # the backend is full: writers meet the limit in write()
        self.chr_arm_watch()

    def add_tap(self, callback: Callable[[bytes], Any]) -> None:
        """Also hand every accepted output chunk to callback (on the writer's thread)."""
        with self.write_lock:
            self.taps = [*self.taps, callback]

    def remove_tap(self, callback: Callable[[bytes], Any]) -> None:
        with self.write_lock:
            # what the frontend put in its sink before now was written before the tap went:
            # accept it here, so the tap sees it (a capture closed at exit kept the last line)
            self._collect_locked(everything=True)
            self.taps = [t for t in self.taps if t is not callback]

    def add_watch(self, callback: Callable[[], Any]) -> Watch:
        watch = Watch(self, callback)
        with self.write_lock:
            self._watches.append(watch)
        self.ioloop.call_soon(self._arm)
        return watch

    def _arm(self) -> None:
        if self._watches and not self.closed:
            self.chr_arm_watch()

    def remove_watch(self, watch: Watch) -> None:
        with self.write_lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def fire_watches(self) -> None:
        resume = False
        with self.write_lock:
            if self._obuf and not self.closed and not self._drain_pending_locked():
                self.chr_arm_watch()  # still full: user watches wait for real room
                return
            if self._flush_waiting and not self._obuf:
                # the flush that waited for room goes on (it stops, and lets the sink
                # idle, once nothing more comes)
                self._flush_waiting = False
                resume = True
            watches, self._watches = self._watches, []
        if resume:
            self._flush_from_loop()
        for watch in watches:
            try:
                watch.fire()
            except Exception:
                log.exception("%s: watch callback failed", self.label)
        self.ioloop.notify()

    @property
    def has_watches(self) -> bool:
        return bool(self._watches)

    # ------------------------------------------------------------------------------------
    # lifecycle (driven by the registry)

    def finalize(self) -> None:
        """Destroy: CLOSED to an attached frontend, release resources, detach (the host
        calls this; it does not unregister)."""
        if self.closed:
            return
        self.closing = True
        with self.write_lock:
            if self._sink is not None:
                self.release_sink(self._sink)  # what the frontend put goes out here
            deadline = time.monotonic() + 1.0
            while self._obuf and not self._flush_obuf_locked() and time.monotonic() < deadline:
                time.sleep(0.001)
            if self._obuf:
                log.warning("%s: closing with %d bytes of output undelivered", self.label,
                            len(self._obuf))
            if self.dropped_bytes:
                log.warning("%s: %d bytes of output were dropped (%s)", self.label,
                            self.dropped_bytes, self.output_error or "backend failed")
            self.closed = True
            self._watches.clear()
        if self._read_recheck is not None:
            self._read_recheck.cancel()
            self._read_recheck = None
        try:
            self.chr_close()
        except Exception:
            log.exception("%s: closing failed", self.label)
        if self.closed_on_finalize and self.be is not None:
            self.be_event(ChardevEvent.CLOSED)
        for fe in self.frontends():
            fe.backend_destroyed(self)
        if self.logfile is not None:
            self.logfile.close()
            self.logfile = None

    def info(self) -> dict[str, Any]:
        return {"label": self.label, "filename": self.filename,
                "frontend-open": self.frontend_open()}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r} {self.filename!r}>"
