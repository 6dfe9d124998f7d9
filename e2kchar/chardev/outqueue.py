"""OutQueue: a frontend's output path that never drops bytes because the backend is slow.

Every frontend that writes to a CharBackend needs the same three steps: write what the
backend takes now, keep the rest, retry from a "backend writable" watch. The serial ports
(devices/device.py), the virtio-console ports (devices/virtio_console.py) and the human
monitor (e2kchar/monitor/hmp.py) share this one implementation. It uses only the public
CharBackend API (write, add_watch); see docs/embedding.md for the threads.

Two ways to use it:

* buffered: ``put(data)`` appends to the queue and writes what the backend takes; the rest
  goes out from the watch, in order, each byte once (the human monitor);
* unbuffered: the caller keeps its own bytes (a UART's transmitter, a virtqueue chain), makes
  one attempt with ``write(data)`` and calls ``wait_writable(callback)`` when the backend is
  full, so a device's "transmitter busy" state stays the device's own.

Threads: ``put``/``write``/``wait_writable`` run on any thread, normally with ``lock`` held
(the device's lock); the watch fires on the registry's I/O thread and runs the callback with
``lock`` held. A hotswap calls ``after_swap()`` from the frontend's be_change handler: a watch
on the old backend would never fire, so it moves to the new one.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .ratelog import log_limited

if TYPE_CHECKING:
    from .base import Watch
    from .frontend import CharBackend

log = logging.getLogger(__name__)

_RETRY = (0, -errno.EAGAIN, -errno.EWOULDBLOCK)


class OutQueue:
    """Output to one CharBackend (or to none yet: ``fe`` may be set later, or cleared).

    ``limit`` bounds the buffered bytes (put() refuses beyond it, logged); ``drop_when_gone``
    makes bytes for no backend, or for one destroyed under the frontend, count as written
    (a serial line with nothing attached), where by default they wait for a new backend.
    A backend that fails for good (an errno other than EAGAIN) has its bytes dropped, logged,
    as QEMU's monitor and serial models do.
    """

    def __init__(self, fe: CharBackend | None, lock: threading.RLock | None = None,
                 name: str = "chardev output", *, limit: int | None = None,
                 drop_when_gone: bool = False) -> None:
        self.fe = fe
        self.lock = lock if lock is not None else threading.RLock()
        self.name = name
        self.limit = limit
        self.drop_when_gone = drop_when_gone
        self._buf = bytearray()
        self._watch: Watch | None = None
        self._on_writable: Callable[[], None] | None = None
        #: bytes dropped because the backend failed for good (a caller that must stop
        #: what it was writing compares this before and after a write)
        self.dropped = 0

    # ------------------------------------------------------------------------------------
    # one attempt (unbuffered use)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """One write attempt: the bytes consumed, 0 when the backend cannot take any now.

        Consumed includes bytes dropped because the backend failed for good (logged) and,
        with drop_when_gone, bytes for no backend.
        """
        fe = self.fe
        if fe is None:
            return len(data) if self.drop_when_gone else 0
        # empty data: 0, then 0 again below
        n = fe.write(data)  # type: ignore[arg-type]
        if n > 0:
            return n
        return self._refused(fe, n, len(data))

    def writev(self, bufs: list[memoryview]) -> int:
        """write() of several buffers in order, in one backend call (CharBackend.writev);
        the same results."""
        fe = self.fe
        total = 0
        for buf in bufs:
            total += len(buf)
        if fe is None:
            return total if self.drop_when_gone else 0
        n = fe.writev(bufs)
        if n > 0:
            return n
        return self._refused(fe, n, total)

    def _refused(self, fe: CharBackend, n: int, total: int) -> int:
        """write()'s result for a backend that took nothing (n <= 0) of total bytes."""
        if n in _RETRY:
            if self.drop_when_gone and not fe.backend_connected:
                return total
            return 0
        self.dropped += total
        log_limited(log, logging.WARNING, ("outqueue", self.name, n),
                    "%s: backend write failed (%s); %d byte(s) dropped so far", self.name,
                    errno.errorcode.get(-n, n), self.dropped)
        return total

    # ------------------------------------------------------------------------------------
    # the writable watch

    def wait_writable(self, callback: Callable[[], None]) -> bool:
        """Call callback once (I/O thread, ``lock`` held) when the backend can take more.

        One watch at a time: a second call before it fires only replaces the callback.
        False when there is no backend to watch; the callback is kept, and after_swap()
        arms it on the next backend.
        """
        with self.lock:
            self._on_writable = callback
            if self._watch is not None:
                return True
            return self._arm()

    def _arm(self) -> bool:
        fe = self.fe
        if fe is None:
            return False
        token: list[Watch | None] = []

        def fired() -> None:
            with self.lock:
                if not token or self._watch is not token[0]:
                    return  # cancelled, or moved by a hotswap, after it started to fire
                self._watch = None
                callback, self._on_writable = self._on_writable, None
                if callback is not None:
                    callback()

        watch = fe.add_watch(fired)
        token.append(watch)
        self._watch = watch
        return watch is not None

    def cancel_wait(self) -> None:
        """Forget the pending callback and drop the watch (a reset, a close)."""
        with self.lock:
            watch, self._watch = self._watch, None
            self._on_writable = None
        if watch is not None:
            watch.cancel()

    @property
    def waiting(self) -> bool:
        """True while output waits for the backend (a callback is pending)."""
        return self._on_writable is not None

    def after_swap(self) -> None:
        """Hotswap: the pending callback's watch moves to the (new) backend."""
        with self.lock:
            callback = self._on_writable
            old, self._watch = self._watch, None
            if old is not None:
                old.cancel()
            if callback is not None:
                self.wait_writable(callback)

    # ------------------------------------------------------------------------------------
    # the queue (buffered use)

    def put(self, data: bytes | bytearray) -> bool:
        """Queue data behind what waits and write what the backend takes; False (logged)
        when that would pass ``limit``, and nothing is queued."""
        with self.lock:
            if self.limit is not None and len(self._buf) + len(data) > self.limit:
                log_limited(log, logging.WARNING, ("outqueue", self.name, "limit"),
                            "%s: output dropped: the chardev is not draining", self.name)
                return False
            self._buf += data
            self.flush()
            return True

    def flush(self) -> None:
        """Write what is queued; the rest waits for the watch."""
        with self.lock:
            buf = self._buf
            if not buf:
                return
            n = self.write(bytes(buf))
            if n > 0:
                del buf[:n]
            if buf:
                self.wait_writable(self.flush)

    @property
    def pending(self) -> int:
        """Bytes queued by put() and not yet taken by the backend."""
        return len(self._buf)

    def close(self) -> None:
        """Drop the watch and forget the backend; queued bytes are discarded."""
        self.cancel_wait()
        with self.lock:
            self.fe = None
            self._buf.clear()
