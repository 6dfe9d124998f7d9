"""The human monitor (HMP): QEMU's `(qemu) ` prompt on a chardev, usually a mux slot.

``HmpInterpreter`` turns one command line into text (shared with QMP's
``human-monitor-command``); ``HumanMonitor`` is the frontend that edits lines, echoes and
prints with CRLF. Commands reuse the QMP handlers, so they check and fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..chardev.base import Chardev
from ..chardev.frontend import CharBackend
from ..chardev.outqueue import OutQueue
from ..chardev.types import ChardevError, ChardevEvent
from ..errors import E2kcharError
from ..options import ID_RE, parse_chardev, split_opts, to_qapi
from .commands import Arg, Command, Monitor, Outcome, QmpError, VmControl, plug_command

if TYPE_CHECKING:
    from ..chardev.registry import ChardevRegistry

log = logging.getLogger(__name__)

PROMPT = "(qemu) "
MAX_LINE = 4095          #: QEMU's readline buffer
MAX_OUTPUT = 1 << 20     #: unsent output kept while the backend is full


class HmpError(E2kcharError):
    """A command-line error printed as is (no "Error: " prefix)."""


def tokenize(line: str) -> list[str]:
    """Split like QEMU's get_str: whitespace-separated words or "quoted \\"strings\\"."""
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words
        if line[i] == '"':
            i += 1
            word: list[str] = []
            while i < n and line[i] != '"':
                c = line[i]
                if c == "\\" and i + 1 < n:
                    i += 1
                    esc = {"n": "\n", "r": "\r", "\\": "\\", "'": "'", '"': '"'}.get(line[i])
                    if esc is None:
                        raise HmpError(f"unsupported escape code: '\\{line[i]}'")
                    c = esc
                word.append(c)
                i += 1
            if i >= n:
                raise HmpError("unterminated string")
            i += 1
            words.append("".join(word))
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            words.append(line[start:i])


def crlf(text: str) -> str:
    """QEMU's monitor output: every LF becomes CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def escape_ringbuf(text: str) -> str:
    """HMP ringbuf_read: backslash and control characters (except \\n, \\t) escaped."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif (ord(c) < 0x20 and c not in "\n\t") or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


Runner = Callable[["HmpInterpreter", list[str]], Awaitable[Outcome | str]]


@dataclass(frozen=True)
class HmpCommand:
    names: tuple[str, ...]
    params: tuple[str, ...]        # argument names; a trailing '?' marks an optional one
    args_help: str
    help: str
    run: Runner


@dataclass(frozen=True)
class InfoItem:
    name: str
    help: str
    run: Callable[[HmpInterpreter], Awaitable[str]]


class HmpInterpreter:
    """Execute HMP command lines against a Monitor; returns CRLF text."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.commands = _COMMANDS
        self.by_name = {name: cmd for cmd in _COMMANDS for name in cmd.names}
        self.info_items = {item.name: item for item in _INFO}

    @classmethod
    def of(cls, monitor: Monitor) -> HmpInterpreter:
        """The monitor's one interpreter (HumanMonitors and QMP human-monitor-command)."""
        return monitor.service("hmp", cls)

    async def qmp(self, name: str, arguments: dict[str, Any] | None = None) -> Outcome:
        return await self.monitor.execute(name, arguments or {})

    async def execute(self, line: str) -> Outcome:
        """Run one line; the value is the printed text (CRLF), errors included."""
        try:
            words = tokenize(line)
        except HmpError as exc:
            return Outcome(crlf(f"{exc}\n"))
        if not words:
            return Outcome("")
        name, rest = words[0], words[1:]
        cmd = self.by_name.get(name)
        if cmd is None:
            return Outcome(crlf(f"unknown command: '{name}'\n"))
        required = [p for p in cmd.params if not p.endswith("?")]
        if len(rest) < len(required):
            missing = required[len(rest)]
            return Outcome(crlf(f"Parameter '{missing}' is missing\n"
                                f"Try \"help {cmd.names[0]}\" for more information\n"))
        if len(rest) > len(cmd.params):
            return Outcome(crlf(f"{cmd.names[0]}: extraneous characters at the end of line\n"))
        try:
            result = await cmd.run(self, rest)
        except QmpError as exc:
            return Outcome(crlf(f"Error: {exc.desc}\n"))
        except HmpError as exc:
            return Outcome(crlf(f"{exc}\n"))
        except ChardevError as exc:
            return Outcome(crlf(f"Error: {exc}\n"))
        if isinstance(result, Outcome):
            result.value = crlf(result.value)
            return result
        return Outcome(crlf(result))

    def help_text(self, topic: str | None = None) -> str:
        lines = []
        for cmd in self.commands:
            if topic is not None and topic not in cmd.names:
                continue
            if cmd.names[0] == "info" and topic == "info":
                lines += [f"info {i.name}  -- {i.help}" for i in self.info_items.values()]
                continue
            args = f" {cmd.args_help}" if cmd.args_help else ""
            lines.append(f"{'|'.join(cmd.names)}{args} -- {cmd.help}")
        if topic is not None and not lines:
            raise HmpError(f"unknown command: '{topic}'")
        return "".join(f"{line}\n" for line in lines)


# -- command implementations ---------------------------------------------------------------


async def _help(h: HmpInterpreter, args: list[str]) -> str:
    return h.help_text(args[0] if args else None)


async def _info(h: HmpInterpreter, args: list[str]) -> str:
    if not args:
        return "".join(f"info {i.name}  -- {i.help}\n" for i in h.info_items.values())
    item = h.info_items.get(args[0])
    if item is None:
        raise HmpError(f"unknown command: 'info {args[0]}'")
    return await item.run(h)


async def _info_chardev(h: HmpInterpreter) -> str:
    chardevs = (await h.qmp("query-chardev")).value
    return "".join(f"{c['label']}: filename={c['filename']}\n" for c in chardevs)


async def _info_status(h: HmpInterpreter) -> str:
    st = (await h.qmp("query-status")).value
    text = "VM status: " + ("running" if st["running"] else "paused")
    if not st["running"] and st["status"] != "paused":
        text += f" ({st['status']})"
    return text + "\n"


async def _info_version(h: HmpInterpreter) -> str:
    v = h.monitor.version()["qemu"]
    return f"{v['major']}.{v['minor']}.{v['micro']} (e2kchar {__version__})\n"


async def _info_chardev_backends(h: HmpInterpreter) -> str:
    backends = (await h.qmp("query-chardev-backends")).value
    return "".join(f"{b['name']}\n" for b in backends)


def _qmp_simple(name: str) -> Runner:
    async def run(h: HmpInterpreter, args: list[str]) -> Outcome:
        outcome = await h.qmp(name)
        return Outcome("", outcome.after)
    return run


async def _chardev_add(h: HmpInterpreter, args: list[str]) -> str:
    text = args[0]
    try:
        split_opts(text, implied="backend")
    except ChardevError as exc:
        return f"{exc}\nError: Parsing chardev args failed\n"
    spec = parse_chardev(text)
    # the -chardev path (mux=on, CLI defaults), as QEMU's HMP does
    pty = h.monitor.registry.create(spec).query_extra().get("pty")
    return f"char device redirected to {pty} (label {spec.id})\n" if pty else ""


async def _chardev_change(h: HmpInterpreter, args: list[str]) -> str:
    ident, text = args
    try:
        opts = split_opts(text, implied="backend")
    except ChardevError as exc:
        return f"{exc}\nError: Parsing chardev args failed\n"
    if "id" in opts:
        raise QmpError("Unexpected 'id' parameter")
    if not ID_RE.match(ident):
        raise QmpError(f"Chardev '{ident}' does not exist")
    spec = parse_chardev(f"{text},id={ident}")
    result = (await h.qmp("chardev-change",
                          {"id": ident, "backend": to_qapi(spec.backend)})).value
    return f"char device redirected to {result['pty']} (label {ident})\n" \
        if "pty" in result else ""


async def _chardev_remove(h: HmpInterpreter, args: list[str]) -> str:
    await h.qmp("chardev-remove", {"id": args[0]})
    return ""


async def _chardev_send_break(h: HmpInterpreter, args: list[str]) -> str:
    await h.qmp("chardev-send-break", {"id": args[0]})
    return ""


async def _ringbuf_write(h: HmpInterpreter, args: list[str]) -> str:
    await h.qmp("ringbuf-write", {"device": args[0], "data": args[1]})
    return ""


async def _ringbuf_read(h: HmpInterpreter, args: list[str]) -> str:
    try:
        size = int(args[1], 0)
    except ValueError:
        raise HmpError("Invalid parameter type for 'size', expected: integer") from None
    data = (await h.qmp("ringbuf-read", {"device": args[0], "size": size})).value
    return escape_ringbuf(data) + "\n"


_COMMANDS: tuple[HmpCommand, ...] = (
    HmpCommand(("help", "?"), ("name?",), "[cmd]", "show the help", _help),
    HmpCommand(("info",), ("item?",), "[subcommand]", "show various information about the "
               "system state", _info),
    HmpCommand(("chardev-add",), ("args",), "args", "add chardev", _chardev_add),
    HmpCommand(("chardev-change",), ("id", "args"), "id args", "change chardev",
               _chardev_change),
    HmpCommand(("chardev-remove",), ("id",), "id", "remove chardev", _chardev_remove),
    HmpCommand(("chardev-send-break",), ("id",), "id", "send a break on chardev",
               _chardev_send_break),
    HmpCommand(("ringbuf_write",), ("device", "data"), "device data",
               "Write to a ring buffer character device", _ringbuf_write),
    HmpCommand(("ringbuf_read",), ("device", "size"), "device size",
               "Read from a ring buffer character device", _ringbuf_read),
    HmpCommand(("stop", "s"), (), "", "stop emulation", _qmp_simple("stop")),
    HmpCommand(("cont", "c"), (), "", "resume emulation", _qmp_simple("cont")),
    HmpCommand(("system_reset",), (), "", "reset the system", _qmp_simple("system_reset")),
    HmpCommand(("quit", "q"), (), "", "quit the emulator", _qmp_simple("quit")),
)

_INFO: tuple[InfoItem, ...] = (
    InfoItem("chardev", "show the character devices", _info_chardev),
    InfoItem("chardev-backends", "show the available character device backends",
             _info_chardev_backends),
    InfoItem("status", "show the current VM status (running|paused)", _info_status),
    InfoItem("version", "show the version of QEMU", _info_version),
)


# ---------------------------------------------------------------------------------------
# the chardev frontend


class HumanMonitor:
    """A `(qemu) ` monitor on a chardev (typically a mux slot, as `-serial mon:stdio`).

    Input is read a line at a time; while a command runs no further input is taken (it
    waits in the chardev), so typed-ahead lines run in order. Output that the backend
    cannot take yet is kept (up to MAX_OUTPUT) and flushed from a write watch.
    """

    def __init__(self, registry: ChardevRegistry, vm: VmControl | None = None,
                 chardev: Chardev | str | None = None, *, monitor: Monitor | None = None,
                 banner: bool = True) -> None:
        self.registry = registry
        self._own_monitor = monitor is None
        self.monitor = monitor if monitor is not None else Monitor(registry, vm)
        self.interp = HmpInterpreter.of(self.monitor)
        self.banner = banner
        self.fe: CharBackend | None = None
        self._lock = threading.RLock()
        self._line = bytearray()
        self._pending = bytearray()
        #: output the backend cannot take yet waits here (QEMU's outbuf) for a write watch
        self._out = OutQueue(None, self._lock, "monitor", limit=MAX_OUTPUT)
        self._busy = False
        self._last_cr = False
        self._esc = 0            # 0: none, 1: after ESC, 2: in ESC [ sequence
        self._opened = False
        self._greeted = False
        self._closed = False
        self._hung_up = False  # a non-mux chardev's client left: output goes nowhere
        if chardev is not None:
            self.attach(chardev)

    # -- attachment -----------------------------------------------------------------------

    def attach(self, chardev: Chardev | str) -> None:
        """Become a frontend of chardev (object or id); raises ChardevError."""
        if isinstance(chardev, str):
            found = self.registry.find(chardev)
            if found is None:
                raise ChardevError(f"Device '{chardev}' not found")
            chardev = found
        if self.fe is not None:
            raise ChardevError("the monitor is already attached")
        self.fe = self._out.fe = CharBackend(chardev)
        self._install()

    def _install(self) -> None:
        fe = self.fe
        if fe is not None:
            # a monitor next to a guest console on a mux does not steal the focus:
            # Ctrl-A c switches to it
            chr_ = fe.chardev
            steal = chr_ is None or not chr_.is_mux or chr_.focused() is None
            fe.set_handlers(self._can_read, self._read, self._event, self._be_change,
                            focus=steal)

    def close(self) -> None:
        """Detach from the chardev (the chardev stays)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fe, self.fe = self.fe, None
            self._out.close()
        if fe is not None and not self.registry.ioloop.closed:
            try:
                fe.deinit()
            except ChardevError:
                pass
        if self._own_monitor:
            self.monitor.close()

    # -- chardev callbacks (I/O thread) ---------------------------------------------------

    def _be_change(self) -> int:
        self._install()
        self._out.after_swap()
        return 0

    def _focused(self) -> bool:
        """On a mux only the focused frontend talks; the guest console stays clean."""
        fe = self.fe
        chr_ = fe.chardev if fe is not None else None
        if chr_ is None or not chr_.is_mux:
            return True
        return chr_.focused() is fe

    def _greet(self) -> None:
        if self.banner and not self._greeted:
            self._greeted = True
            v = self.monitor.version()["qemu"]
            self._print(f"QEMU {v['major']}.{v['minor']}.{v['micro']} monitor - "
                        "type 'help' for more information\n")
        self._show_prompt()

    def _event(self, event: ChardevEvent) -> None:
        if event == ChardevEvent.OPENED:
            self._opened = True
            with self._lock:
                self._hung_up = False
            if self._focused():
                self._greet()
        elif event == ChardevEvent.MUX_IN and self._opened:
            self._greet()
        elif event == ChardevEvent.CLOSED:
            self._opened = False
            self._line.clear()
            fe = self.fe
            chr_ = fe.chardev if fe is not None else None
            if chr_ is not None and not chr_.is_mux:
                # the client hung up: what it was told (a reply, the prompt) is stale for
                # the next one, who is greeted afresh (banner and prompt), as in QEMU
                with self._lock:
                    self._hung_up = True
                    self._greeted = False
                chr_.forget_history()

    def _can_read(self) -> int:
        if self._busy or self._closed:
            return 0
        return max(0, 256 - len(self._pending))

    def _read(self, data: bytes) -> None:
        self._pending += data
        self._process()
        if not self._busy and not self._pending and self.fe is not None:
            # room again: a mux may be holding bytes for us until we say so
            self.fe.accept_input()

    def _process(self) -> None:
        """Line editing: printable bytes echo, BS/DEL erase, CR or LF (or CRLF) run."""
        i = 0
        pending = self._pending
        while i < len(pending) and not self._busy:
            b = pending[i]
            i += 1
            last_cr, self._last_cr = self._last_cr, False
            if self._esc == 1:
                self._esc = 2 if b == 0x5B else 0
                continue
            if self._esc == 2:
                if 0x40 <= b <= 0x7E:
                    self._esc = 0
                continue
            if b in (0x0D, 0x0A):
                if b == 0x0A and last_cr:
                    continue
                self._last_cr = b == 0x0D
                line = self._line.decode("utf-8", "replace")
                self._line.clear()
                self._print("\n")
                self._start(line)
            elif b in (0x08, 0x7F):
                if self._line:
                    # drop one whole UTF-8 character
                    del self._line[-1]
                    while self._line and (self._line[-1] & 0xC0) == 0x80:
                        del self._line[-1]
                    if self._line and self._line[-1] >= 0xC0:
                        del self._line[-1]
                    self._write(b"\b \b")
            elif b == 0x1B:
                self._esc = 1
            elif b >= 0x20:
                if len(self._line) < MAX_LINE:
                    self._line.append(b)
                    self._write(bytes((b,)))
            # other control characters are ignored
        del pending[:i]

    def _start(self, line: str) -> None:
        if not line.strip():
            self._show_prompt()
            return
        self._busy = True
        task = self.registry.ioloop.loop.create_task(self.interp.execute(line))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Outcome]) -> None:
        after: list[Callable[[], Any]] = []
        try:
            outcome = task.result()
            text, after = outcome.value, outcome.after
        except asyncio.CancelledError:
            text = ""
        except Exception as exc:
            log.exception("monitor command failed")
            text = crlf(f"Error: {exc}\n")
        self._busy = False
        if self._closed:
            return
        if text:
            self._write(text.encode("utf-8", "replace"))
        for action in after:
            try:
                action()
            except Exception:
                log.exception("monitor action failed")
        self._show_prompt()
        self._process()
        fe = self.fe
        if fe is not None:
            fe.accept_input()

    # -- output ---------------------------------------------------------------------------

    def _show_prompt(self) -> None:
        self._write(PROMPT.encode() + bytes(self._line))

    def _print(self, text: str) -> None:
        self._write(crlf(text).encode("utf-8", "replace"))

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._hung_up:
                return  # nobody to tell, and not kept for the next client
            self._out.put(data)


async def _human_monitor_command(mon: Monitor, args: dict[str, Any]) -> Outcome:
    return await HmpInterpreter.of(mon).execute(args["command-line"])


# QMP's way into the human monitor; registered from here so that the command table
# (commands.py) does not import this module
plug_command(Command("human-monitor-command", _human_monitor_command,
                     (Arg("command-line", "str"), Arg("cpu-index", "int", False)),
                     is_async=True))
