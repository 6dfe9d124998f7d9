"""SIGTERM, SIGHUP and SIGINT end a run of ``e2kchar run`` with clean-up, within a second,
whatever the guest does (QEMU treats SIGHUP like SIGTERM).

A Python signal handler runs only on the main thread between bytecodes: never while the
guest computes inside unicorn's emu_start, and inside an MMIO callback an exception it
raised would be swallowed by ctypes ("Exception ignored"). So the handlers raise nothing
once the machine runs; the signal number also goes to a wakeup fd whose watcher thread
asks the machine to stop (a thread-safe request that ends the current emu_start slice).
They are installed before any chardev, socket or pty link exists; until the machine runs
they raise HostSignal, so a start-up that waits (a server with wait=on) is interrupted too.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class HostSignal(BaseException):
    """A signal arrived during start-up (not an Exception: nothing may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class HostSignals:
    """The run's signal handling; ``on_signal(signum)`` is called once per signal (on the
    watcher thread) after ``running()``."""

    def __init__(self, on_signal: Callable[[int], None] | None = None) -> None:
        #: called on the watcher thread once per signal after running(); settable later
        self.on_signal: Callable[[int], None] = on_signal or (lambda signum: None)
        self.received: list[int] = []
        self._running = False
        self._old: dict[int, Any] = {}
        self._old_fd = -1
        self._r = self._w = -1
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> HostSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # (embedded in a thread: signals are the host program's business)
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        os.set_blocking(self._r, True)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for signum in SIGNALS:
            self._old[signum] = signal.signal(signum, self._handler)
        self._watcher = threading.Thread(target=self._watch, name="e2k-signals", daemon=True)
        self._watcher.start()
        return self

    def running(self) -> None:
        """The machine runs: from now on signals stop it instead of raising."""
        self._running = True

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if not self._running:
            self.received.append(signum)
            raise HostSignal(signum)

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._r, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if self._running and signum in SIGNALS:
                    self.received.append(signum)
                    self.on_signal(signum)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._watcher is None:
            return
        for signum, old in self._old.items():
            signal.signal(signum, old)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._w)  # the watcher reads EOF and ends
        self._watcher.join(timeout=1)
        os.close(self._r)
