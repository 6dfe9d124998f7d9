"""The registry's I/O thread: one asyncio loop that every backend registers its fds with.

Frontend callbacks (can_read, read, event, be_change) only ever run on this thread, so a
device model needs one lock between its CPU-thread register accesses and these callbacks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .ratelog import log_limited
from .types import ChardevError

log = logging.getLogger(__name__)

T = TypeVar("T")


class TimerHandle:
    """A cancellable delayed call; cancel() is safe from any thread."""

    def __init__(self, ioloop: IOLoop) -> None:
        self._ioloop = ioloop
        #: the asyncio timer, set by IOLoop.call_later on the I/O thread
        self.timer: asyncio.TimerHandle | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        handle = self.timer
        if handle is not None:
            self._ioloop.call_soon(handle.cancel)


class FdWatch:
    """One fd's readable (or writable) interest on the I/O loop, registered at most once.

    A backend keeps one per fd and direction instead of a flag and paired add/remove calls;
    ``disarm`` removes the fd that was armed even if the backend has moved on to another.
    Call on the I/O thread.
    """

    def __init__(self, ioloop: IOLoop, callback: Callable[[], None], *,
                 write: bool = False) -> None:
        self._ioloop = ioloop
        self._callback = callback
        self._write = write
        self._fd = -1

    @property
    def armed(self) -> bool:
        return self._fd >= 0

    def arm(self, fd: int) -> bool:
        """Watch fd (again: no-op); False when it cannot be polled (a regular file)."""
        if fd < 0:
            return False
        if self._fd == fd:
            return True
        self.disarm()
        add = self._ioloop.add_writer if self._write else self._ioloop.add_reader
        if not add(fd, self._callback):
            return False
        self._fd = fd
        return True

    def disarm(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            if self._write:
                self._ioloop.remove_writer(fd)
            else:
                self._ioloop.remove_reader(fd)


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own error reports (an accept out of fds, every retry) rate-limited per
    message and exception type: one line with its traceback, then a count."""
    message = context.get("message", "asyncio error")
    exc = context.get("exception")
    log_limited(log, logging.ERROR, ("asyncio", message, type(exc)), "%s: %s", message,
                exc if exc is not None else "", exc_info=exc)


class IOLoop:
    """An asyncio event loop running on a dedicated daemon thread."""

    def __init__(self, name: str = "e2kchar-io") -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_report)
        self._activity = threading.Condition()
        self._listeners: tuple[Callable[[], None], ...] = ()
        self._closed = False
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.notify()

    # -- thread plumbing -------------------------------------------------------------------

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    @property
    def closed(self) -> bool:
        return self._closed

    def notify(self) -> None:
        """Wake run_until() waiters and the listeners: something observable happened."""
        with self._activity:
            self._activity.notify_all()
        for listener in self._listeners:
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (on whichever thread notifies, quickly, never raising) after
        every I/O callback and every delivery of input: the machine's idle back-off wakes
        a polling guest with it (docs/idle.md)."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a callback bug must never kill the I/O thread
            log.exception("unhandled exception in I/O callback %r", fn)
        finally:
            self.notify()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run fn on the I/O thread soon (thread-safe; inline order is preserved)."""
        if self._closed:
            return
        if self.in_loop_thread():
            self.loop.call_soon(self._guard, fn, *args)
        else:
            try:
                self.loop.call_soon_threadsafe(self._guard, fn, *args)
            except RuntimeError:  # loop closed in between
                pass

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(self)

        def arm() -> None:
            if not handle.cancelled:
                handle.timer = self.loop.call_later(delay, fire)

        def fire() -> None:
            if not handle.cancelled:
                self._guard(fn, *args)

        if self.in_loop_thread():
            arm()
        else:
            self.call_soon(arm)
        return handle

    def run_sync(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run fn on the I/O thread and return its result (or raise its exception)."""
        if self.in_loop_thread():
            return fn(*args)
        if self._closed:
            raise ChardevError("character device registry is closed")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # noqa: B036 - handed to the caller
                fut.set_exception(exc)
            finally:
                self.notify()

        try:
            self.loop.call_soon_threadsafe(runner)
        except RuntimeError as exc:
            raise ChardevError("character device registry is closed") from exc
        return fut.result(timeout)

    # -- fds -----------------------------------------------------------------------------
    # These must be called on the I/O thread (backends call them from their callbacks).

    def add_reader(self, fd: int, cb: Callable[[], None]) -> bool:
        """Watch fd for input; False when the fd cannot be polled (a regular file)."""
        try:
            self.loop.add_reader(fd, self._guard, cb)
            return True
        except (PermissionError, OSError, ValueError):
            return False

    def remove_reader(self, fd: int) -> None:
        try:
            self.loop.remove_reader(fd)
        except (OSError, ValueError):
            pass

    def add_writer(self, fd: int, cb: Callable[[], None]) -> bool:
        try:
            self.loop.add_writer(fd, self._guard, cb)
            return True
        except (PermissionError, OSError, ValueError):
            return False

    def remove_writer(self, fd: int) -> None:
        try:
            self.loop.remove_writer(fd)
        except (OSError, ValueError):
            pass

    # -- waiting and shutdown ---------------------------------------------------------------

    def run_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block the calling thread until predicate() is true or timeout seconds pass."""
        if self.in_loop_thread():
            raise ChardevError("run_until() cannot be called on the I/O thread")
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bool(predicate())
            with self._activity:
                self._activity.wait(min(remaining, 0.005))

    def close(self) -> None:
        if self._closed:
            return
        if self.in_loop_thread():
            raise ChardevError("the registry cannot be closed from its own I/O thread")
        self._closed = True

        async def drain() -> None:
            # give transports scheduled for closing one pass to release their sockets
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(2.0)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            except Exception:
                pass
            self.loop.close()
