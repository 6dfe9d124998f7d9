"""Test API for guest consoles: wait for lines, prompts and bytes; fail fast on bad strings.

A Console taps the output of a chardev (by label, so it follows hotswaps) and can type into
its frontend, like Renode's terminal tester but importable from plain Python and pytest:

    con = Console(registry, "serial0", guest_clock=machine.guest_time)
    con.fail_on("Kernel panic")
    m = con.wait_for_line(r"U-Boot (\\S+)", timeout=5)
    con.write_line("version")
    con.wait_for_prompt("=> ")

Timeouts count guest time when a guest clock is given (a slow host does not fail a test),
with a host-time safety cap so a stopped guest cannot hang the test run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chardev.registry import ChardevRegistry
from .chardev.types import ChardevError
from .errors import E2kcharError
from .options import parse_chardev, parse_legacy

__all__ = ["Console", "LineMatch", "ConsoleTimeout", "FailingStringFound", "RunningMachine",
           "boot"]


class ConsoleTimeout(E2kcharError, AssertionError):
    """The awaited output did not appear in time; carries the console's recent output."""


class FailingStringFound(E2kcharError, AssertionError):
    """A registered failing string appeared on the console."""


@dataclass
class LineMatch:
    """One matched line (or prompt / byte sequence) with its timestamps and regex groups."""

    line: str
    #: time.time() when the line's (or prompt's) last byte arrived; for wait_for_bytes,
    #: when the output chunk that completed the match arrived (at most the next LF's time)
    host_time: float
    guest_time: float | None  # the same moment in guest seconds since reset, if known
    groups: tuple[str | None, ...] = ()
    named: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Line:
    text: str
    host_time: float
    guest_time: float | None
    end: int  # offset in the raw output just after the line's LF
    term: int  # offset where its terminator (LF or CR LF) starts


class Console:
    """Observe and drive one chardev's frontend."""

    def __init__(self, registry: ChardevRegistry, label: str, *,
                 guest_clock: Callable[[], float] | None = None,
                 default_timeout: float = 8.0, encoding: str = "utf-8") -> None:
        self.registry = registry
        self.label = label
        self.guest_clock = guest_clock or registry.guest_clock
        self.default_timeout = default_timeout
        self.encoding = encoding
        self._cond = threading.Condition()
        self._raw = bytearray()  # everything seen
        self._lines: list[_Line] = []  # completed lines (CR dropped, LF ends a line)
        self._partial = bytearray()
        self._cursor = 0  # index of the first line not yet consumed by a wait
        self._byte_cursor = 0  # raw offset after the last match (wait_for_bytes starts here)
        self._fail_cursor = 0  # index of the first line not yet checked for failing strings
        self._last_host = 0.0  # when the latest output arrived (the partial line's end)
        self._last_guest: float | None = None
        self._failing: list[re.Pattern[str]] = []
        self._input = bytearray()
        self._input_scheduled = False
        chr_ = registry.find(label)
        if chr_ is None:
            raise ChardevError(f"Device '{label}' not found")
        chr_.add_tap(self._on_output)

    # -- output side ---------------------------------------------------------------------

    def _now_guest(self) -> float | None:
        if self.guest_clock is None:
            return None
        try:
            return float(self.guest_clock())
        except Exception:
            return None

    def _on_output(self, data: bytes) -> None:
        now = time.time()
        guest = self._now_guest()
        with self._cond:
            start = len(self._raw)
            self._raw += data
            pos = 0
            while (nl := data.find(b"\n", pos)) >= 0:
                self._partial += data[pos:nl]
                text = self._partial.replace(b"\r", b"").replace(b"\0", b"")
                at = start + nl
                term = at - 1 if at and self._raw[at - 1] == 0x0D else at
                self._lines.append(_Line(text.decode(self.encoding, "replace"), now, guest,
                                         at + 1, term))
                self._partial.clear()
                pos = nl + 1
            self._partial += data[pos:]
            self._last_host, self._last_guest = now, guest
            self._cond.notify_all()

    def _partial_text(self) -> str:
        return self._partial.replace(b"\r", b"").replace(b"\0", b"").decode(
            self.encoding, "replace")

    @property
    def output(self) -> bytes:
        with self._cond:
            return bytes(self._raw)

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return [ln.text for ln in self._lines]

    def fail_on(self, pattern: str) -> None:
        """Any later wait fails at once when pattern (a regex) appears in a line."""
        self._failing.append(re.compile(pattern))

    register_failing_string = fail_on

    def unregister_failing_string(self, pattern: str) -> None:
        self._failing = [p for p in self._failing if p.pattern != pattern]

    def _check_failing(self, text: str) -> None:
        for pat in self._failing:
            if pat.search(text):
                raise FailingStringFound(
                    f"failing string {pat.pattern!r} on {self.label}: {text!r}")

    def _check_failing_lines(self, upto: int) -> None:
        """Check the completed lines before index upto (each line once)."""
        while self._fail_cursor < upto:
            line = self._lines[self._fail_cursor]
            self._fail_cursor += 1
            self._check_failing(line.text)

    def _consume_lines(self, upto: int) -> None:
        """Lines before index upto are used up: later waits start after them."""
        self._check_failing_lines(upto)
        self._cursor = max(self._cursor, upto)
        if upto:  # a later byte wait may still match from the line's terminator on
            self._byte_cursor = max(self._byte_cursor, self._lines[upto - 1].term)

    def _wait(self, check: Callable[[], LineMatch | None], timeout: float | None,
              what: str) -> LineMatch:
        timeout = self.default_timeout if timeout is None else timeout
        host_start = time.monotonic()
        host_cap = host_start + max(10.0 * timeout, timeout + 5.0)
        guest_start = self._now_guest()
        with self._cond:
            while True:
                found = check()
                if found is not None:
                    return found
                now = time.monotonic()
                guest_now = self._now_guest()
                if guest_start is not None and guest_now is not None:
                    expired = guest_now - guest_start >= timeout or now >= host_cap
                else:
                    expired = now - host_start >= timeout
                if expired:
                    tail = bytes(self._raw[-400:]).decode(self.encoding, "replace")
                    raise ConsoleTimeout(
                        f"timed out after {timeout} s waiting for {what} on {self.label}; "
                        f"last output: {tail!r}")
                self._cond.wait(0.01)

    def wait_for_line(self, pattern: str, timeout: float | None = None, *,
                      regex: bool = True) -> LineMatch:
        """The next completed line matching pattern (a regex unless regex=False)."""
        pat = re.compile(pattern if regex else re.escape(pattern))

        def check() -> LineMatch | None:
            while self._cursor < len(self._lines):
                ln = self._lines[self._cursor]
                self._consume_lines(self._cursor + 1)
                m = pat.search(ln.text)
                if m:
                    return LineMatch(ln.text, ln.host_time, ln.guest_time, m.groups(),
                                     m.groupdict())
            return None

        return self._wait(check, timeout, f"a line matching {pattern!r}")

    def wait_for_prompt(self, prompt: str, timeout: float | None = None, *,
                        regex: bool = False) -> LineMatch:
        """An unfinished line (no newline yet) that matches prompt."""
        pat = re.compile(prompt if regex else re.escape(prompt))

        def check() -> LineMatch | None:
            self._consume_lines(len(self._lines))  # completed lines are not prompts
            text = self._partial_text()
            m = pat.search(text)
            if m:
                self._byte_cursor = len(self._raw)
                return LineMatch(text, self._last_host, self._last_guest, m.groups(),
                                 m.groupdict())
            return None

        return self._wait(check, timeout, f"the prompt {prompt!r}")

    def wait_for_bytes(self, data: bytes, timeout: float | None = None) -> LineMatch:
        """An exact byte sequence anywhere in the output after the last match. Failing
        strings are checked in the lines completed before the sequence ends."""
        if not data:
            raise ValueError("wait_for_bytes needs at least one byte")

        def check() -> LineMatch | None:
            idx = self._raw.find(data, self._byte_cursor)
            if idx < 0:
                self._check_failing_lines(len(self._lines))
                return None
            end = idx + len(data)
            done = self._cursor  # lines that ended at or before the match's end are used up
            while done < len(self._lines) and self._lines[done].end <= end:
                done += 1
            self._consume_lines(done)
            self._byte_cursor = end
            if end == len(self._raw):  # the match is the latest output: exact times
                host, guest = self._last_host, self._last_guest
            else:  # no later than the next line's end; and it has arrived by now
                later = self._lines[done] if done < len(self._lines) else None
                host = later.host_time if later else self._last_host
                guest = later.guest_time if later else self._last_guest
            return LineMatch(data.decode(self.encoding, "replace"), host, guest)

        return self._wait(check, timeout, f"the bytes {data!r}")

    # -- input side ----------------------------------------------------------------------

    def write(self, data: bytes | str) -> None:
        """Type into the guest: delivered to the frontend as fast as it can take it."""
        if isinstance(data, str):
            data = data.encode(self.encoding)
        with self._cond:
            self._input += data
        self.registry.ioloop.call_soon(self._pump)

    def write_line(self, text: str, eol: str = "\r") -> None:
        self.write(text + eol)

    def _pump(self) -> None:
        chr_ = self.registry.find(self.label)
        if chr_ is None or not self._input:
            return
        n = chr_.be_can_write()
        if n > 0:
            with self._cond:
                chunk = bytes(self._input[:n])
                del self._input[:n]
            chr_.be_write(chunk)
        if self._input:
            self.registry.ioloop.call_later(0.001, self._pump)

    @property
    def input_pending(self) -> int:
        return len(self._input)

    def close(self) -> None:
        chr_ = self.registry.find(self.label)
        if chr_ is not None:
            chr_.remove_tap(self._on_output)


# ---------------------------------------------------------------------------------------
# starting a machine from Python


class RunningMachine:
    """A machine running on a background thread, with consoles to wait on."""

    def __init__(self, machine: Any, timeout: float | None, own_registry: bool,
                 consoles: Sequence[str] = ()) -> None:
        self.machine = machine
        self.registry: ChardevRegistry = machine.registry
        self._own_registry = own_registry
        self._consoles: dict[str, Console] = {}
        for label in consoles:  # watching before the first instruction runs
            self.console(label)
        self.result: Any = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(timeout,),
                                        name="e2kchar-guest", daemon=True)
        self._thread.start()

    def _run(self, timeout: float | None) -> None:
        try:
            self.result = self.machine.run(timeout=timeout)
        except Exception as exc:  # reported by wait()
            self.result = exc
        finally:
            self._done.set()
            self.registry.ioloop.notify()

    def console(self, label: str = "serial0") -> Console:
        """The Console for a chardev label (created on first use; sees output from then on,
        so ask for it before the output you wait for can appear, or right after boot())."""
        con = self._consoles.get(label)
        if con is None:
            con = self._consoles[label] = Console(self.registry, label,
                                                  guest_clock=self.machine.guest_time)
        return con

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float | None = 30.0) -> Any:
        """Wait for the guest to finish; returns the machine's RunResult."""
        if not self._done.wait(timeout):
            raise ConsoleTimeout(f"the guest still runs after {timeout} s")
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def stop(self) -> Any:
        self.machine.stop()
        self._done.wait(10)
        return self.result

    def close(self) -> None:
        if self.running:
            self.stop()
        for con in self._consoles.values():
            con.close()
        self.machine.close()
        if self._own_registry:
            self.registry.close()

    def __enter__(self) -> RunningMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def boot(firmware: str | Path | None = None, *, serial: Sequence[str | None] = ("ringbuf",),
         chardevs: Sequence[str] = (), virtio: Sequence[tuple[str, str | None, bool]] = (),
         ram_size: int = 128 << 20, append: str = "", timeout: float | None = 60.0,
         clock: str = "virtual", registry: ChardevRegistry | None = None) -> RunningMachine:
    """Start firmware (default: the bundled demo) with consoles attached before it runs.

    serial: -serial specs in order Am85C30 A, B, COM1 ("ringbuf" = captured in memory,
    any legacy spec such as "file:/tmp/x" or "chardev:ID", None = unconnected); their
    chardevs are labelled serial0.. as on the command line. chardevs: -chardev specs.
    virtio: (chardev id, name, console) ports of the virtio-console.
    """
    from .machine import Machine

    own = registry is None
    reg = registry if registry is not None else ChardevRegistry()
    machine = None
    try:
        for chardev_spec in chardevs:
            reg.create(parse_chardev(chardev_spec))
        bound: list[Any] = []
        for n, spec in enumerate(serial):
            if spec is None:
                bound.append(None)
            elif spec.startswith("chardev:"):
                bound.append(reg.new(None, spec))
            elif spec.split(",", 1)[0] in ("ringbuf", "memory", "null", "testdev", "pty"):
                bound.append(reg.new(f"serial{n}", spec))
            else:
                bound.append(reg.create(parse_legacy(spec, f"serial{n}")))
        machine = Machine(registry=reg, ram_size=ram_size, append=append, serial=bound,
                          clock=clock)
        labels = [c.label for c in bound if c is not None and c.label is not None]
        for chr_id, name, console in virtio:
            chr_ = reg.find(chr_id)
            if chr_ is None:
                raise ChardevError(f"Device '{chr_id}' not found")
            machine.add_virtio_port(chr_, name=name, console=console)
            labels.append(chr_id)
        if firmware is None:
            from .cli import bundled_firmware

            firmware = bundled_firmware()
        machine.load(firmware)
    except BaseException:
        if machine is not None:
            machine.close()
        if own:
            reg.close()
        raise
    return RunningMachine(machine, timeout, own, consoles=labels)
