"""The monitor's command table: argument schemas, strict checking and the handlers.

QMP and the human monitor share one ``Monitor`` so that a command means the same thing
(and emits the same events) whichever way it arrives. Arguments are checked completely
against the schema before a handler runs, so a bad request never has a side effect.
Handlers that touch the machine run on one worker thread (never on the registry's I/O
thread, which a paused CPU thread may be waiting on); chardev handlers run inline on the
I/O thread, where the registry does its work anyway.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .. import __version__
from ..chardev.types import ChardevError
from ..errors import E2kcharError
from ..options import from_qapi

if TYPE_CHECKING:
    from ..chardev.registry import ChardevRegistry

T = TypeVar("T")

log = logging.getLogger(__name__)

#: the QEMU version the monitor reports (the QMP dialect it speaks)
QEMU_VERSION = {"major": 10, "minor": 1, "micro": 0}

GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"


@runtime_checkable
class VmControl(Protocol):
    """What the monitor needs from a machine; implemented by the machine or the CLI.

    The monitor emits STOP/RESUME/RESET/SHUTDOWN for the commands it runs; the machine emits
    events only for changes the guest causes (``Monitor.emit_event`` / ``QmpServer.emit_event``).
    Methods are called on the monitor's worker thread, one at a time. An exception's text
    becomes the command's error.
    """

    def status(self) -> str:
        """QEMU run state: "running", "paused", "shutdown", "prelaunch", ..."""
        ...

    def stop(self) -> None:
        """Pause the guest CPU; return only once it no longer executes."""
        ...

    def cont(self) -> None: ...

    def system_reset(self) -> None: ...

    def quit(self) -> None:
        """End the emulation (called after the reply has been sent)."""
        ...


class QmpError(E2kcharError):
    """A command failure as QMP reports it: {"class": error_class, "desc": desc}."""

    def __init__(self, desc: str, error_class: str = GENERIC_ERROR) -> None:
        super().__init__(desc)
        self.desc = desc
        self.error_class = error_class

    def to_qmp(self) -> dict[str, str]:
        return {"class": self.error_class, "desc": self.desc}


# ---------------------------------------------------------------------------------------
# argument schemas

_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "object": "object",
               "enum": "string", "str-list": "array"}


@dataclass(frozen=True)
class Arg:
    """One QAPI argument: name, kind (str int bool object enum str-list), optional-ness."""

    name: str
    kind: str
    required: bool = True
    choices: tuple[str, ...] = ()


def _type_ok(kind: str, value: Any) -> bool:
    if kind in ("str", "enum"):
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "str-list":
        return isinstance(value, list)
    raise AssertionError(kind)


def check_args(schema: tuple[Arg, ...], arguments: Any) -> dict[str, Any]:
    """Strict QAPI-style checking, in QEMU's order: members in schema order, then extras."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise QmpError("QMP input member 'arguments' must be an object")
    out: dict[str, Any] = {}
    for arg in schema:
        if arg.name not in arguments:
            if arg.required:
                raise QmpError(f"Parameter '{arg.name}' is missing")
            continue
        value = arguments[arg.name]
        if not _type_ok(arg.kind, value):
            raise QmpError(
                f"Invalid parameter type for '{arg.name}', expected: {_TYPE_NAMES[arg.kind]}")
        if arg.kind == "int" and not -(1 << 63) <= value < (1 << 63):
            raise QmpError(f"Parameter '{arg.name}' expects a value in range")
        if arg.kind == "enum" and value not in arg.choices:
            raise QmpError(f"Parameter '{arg.name}' does not accept value '{value}'")
        if arg.kind == "str-list":
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise QmpError(f"Invalid parameter type for '{arg.name}[{i}]', "
                                   "expected: string")
                if arg.choices and item not in arg.choices:
                    raise QmpError(
                        f"Parameter '{arg.name}[{i}]' does not accept value '{item}'")
        out[arg.name] = value
    for key in arguments:
        if key not in out and not any(a.name == key for a in schema):
            raise QmpError(f"Parameter '{key}' is unexpected")
    return out


Handler = Callable[["Monitor", dict[str, Any]], Any]


@dataclass(frozen=True)
class Command:
    """A table entry: schema, handler and where the handler runs."""

    name: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    #: run on the monitor's worker thread (the handler talks to the machine)
    vm: bool = False
    #: a coroutine handler, awaited on the I/O thread
    is_async: bool = False


@dataclass
class Outcome:
    """A command's result and what must happen once the reply is out (quit)."""

    value: Any
    after: list[Callable[[], Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# handlers


def _no_vm(mon: Monitor) -> VmControl:
    if mon.vm is None:
        raise QmpError("No machine is attached to this monitor")
    return mon.vm


def _vm_call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except QmpError:
        raise
    except Exception as exc:
        log.exception("machine control failed")
        raise QmpError(str(exc) or type(exc).__name__) from None


def _query_status(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    vm = _no_vm(mon)
    status = str(_vm_call(vm.status))
    return {"running": status == "running", "status": status}


_NEEDS_RESET = ("shutdown", "guest-panicked", "internal-error")


def _stop(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    vm = _no_vm(mon)
    status = _vm_call(vm.status)
    if status == "paused":
        return {}  # as QEMU: stopping a stopped machine does nothing, sends no event
    _vm_call(vm.stop)
    if status == "running":
        mon.emit_event("STOP")
    return {}


def _cont(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    vm = _no_vm(mon)
    status = _vm_call(vm.status)
    if status in _NEEDS_RESET:
        raise QmpError("Resetting the Virtual Machine is required")
    if status == "running":
        return {}
    _vm_call(vm.cont)
    mon.emit_event("RESUME")
    return {}


def _system_reset(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    vm = _no_vm(mon)
    _vm_call(vm.system_reset)
    mon.emit_event("RESET", {"guest": False, "reason": "host-qmp-system-reset"})
    return {}


def _quit(mon: Monitor, args: dict[str, Any]) -> Outcome:
    vm = _no_vm(mon)

    def after() -> None:
        mon.emit_event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        mon.submit(vm.quit)

    return Outcome({}, [after])


def _qmp_capabilities(mon: Monitor, args: dict[str, Any]) -> None:
    # reached only after negotiation (a session handles the first call itself)
    raise QmpError("Capabilities negotiation is already complete, command ignored",
                   COMMAND_NOT_FOUND)


def _chardev_error(exc: ChardevError, prefix: str = "") -> QmpError:
    return QmpError(prefix + str(exc))


def _is_schema_error(text: str) -> bool:
    return text.startswith(("Parameter '", "Invalid parameter type"))


def _chardev_add(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    ident, backend = args["id"], args["backend"]
    prefix = f"Failed to add chardev '{ident}': "
    try:
        from_qapi(backend)  # the QAPI visitor's checks come before anything is created
    except ChardevError as exc:
        raise _chardev_error(exc, "" if _is_schema_error(str(exc)) else prefix) from None
    try:
        return mon.registry.add(ident, backend)
    except ChardevError as exc:
        raise _chardev_error(exc, prefix) from None


def _chardev_change(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    try:
        from_qapi(args["backend"])
        return mon.registry.change(args["id"], args["backend"])
    except ChardevError as exc:
        raise _chardev_error(exc) from None


def _chardev_remove(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    try:
        mon.registry.remove(args["id"])
    except ChardevError as exc:
        raise _chardev_error(exc) from None
    return {}


def _chardev_send_break(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    try:
        mon.registry.send_break(args["id"])
    except ChardevError as exc:
        raise _chardev_error(exc) from None
    return {}


def _ringbuf_write(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    try:
        mon.registry.ringbuf_write(args["device"], args["data"], args.get("format", "utf8"))
    except ChardevError as exc:
        raise _chardev_error(exc) from None
    return {}


def _ringbuf_read(mon: Monitor, args: dict[str, Any]) -> str:
    try:
        return mon.registry.ringbuf_read(args["device"], args["size"],
                                         args.get("format", "utf8"))
    except ChardevError as exc:
        raise _chardev_error(exc) from None


def _ringbuf_peek(mon: Monitor, args: dict[str, Any]) -> str:
    """Extension: the ring's content without consuming it (a reader keeps its place)."""
    from ..chardev.backends.ringbuf import RingbufChardev

    device = args["device"]
    chr_ = mon.registry.find(device)
    if chr_ is None:
        raise QmpError(f"Device '{device}' not found")
    if not isinstance(chr_, RingbufChardev):
        raise QmpError(f"{device} is not a ringbuf device")
    raw = chr_.peek()
    size = args.get("size")
    if size is not None:
        if size <= 0:
            raise QmpError("size must be greater than zero")
        raw = raw[:size]
    if args.get("format", "utf8") == "base64":
        return base64.b64encode(raw).decode("ascii")
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _query_chardev(mon: Monitor, args: dict[str, Any]) -> list[dict[str, Any]]:
    return mon.registry.query()


def _query_chardev_backends(mon: Monitor, args: dict[str, Any]) -> list[dict[str, str]]:
    return mon.registry.query_backends()


def _query_version(mon: Monitor, args: dict[str, Any]) -> dict[str, Any]:
    return mon.version()


def _query_commands(mon: Monitor, args: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": name} for name in mon.commands]


_FORMAT = Arg("format", "enum", False, ("utf8", "base64"))

COMMANDS: tuple[Command, ...] = (
    Command("qmp_capabilities", _qmp_capabilities,
            (Arg("enable", "str-list", False, ("oob",)),)),
    Command("query-version", _query_version),
    Command("query-commands", _query_commands),
    Command("query-status", _query_status, vm=True),
    Command("stop", _stop, vm=True),
    Command("cont", _cont, vm=True),
    Command("system_reset", _system_reset, vm=True),
    Command("quit", _quit),
    Command("chardev-add", _chardev_add, (Arg("id", "str"), Arg("backend", "object"))),
    Command("chardev-change", _chardev_change, (Arg("id", "str"), Arg("backend", "object"))),
    Command("chardev-remove", _chardev_remove, (Arg("id", "str"),)),
    Command("chardev-send-break", _chardev_send_break, (Arg("id", "str"),)),
    Command("query-chardev", _query_chardev),
    Command("query-chardev-backends", _query_chardev_backends),
    Command("ringbuf-write", _ringbuf_write,
            (Arg("device", "str"), Arg("data", "str"), _FORMAT)),
    Command("ringbuf-read", _ringbuf_read,
            (Arg("device", "str"), Arg("size", "int"), _FORMAT)),
    Command("__e2kchar-ringbuf-peek", _ringbuf_peek,
            (Arg("device", "str"), Arg("size", "int", False), _FORMAT)),
)

#: commands other monitor modules add to every Monitor (hmp.py: human-monitor-command),
#: so that this table needs to know none of them
_plugged: list[Command] = []


def plug_command(command: Command) -> None:
    """Offer command on every Monitor made from now on (after the built-in ones)."""
    _plugged[:] = [c for c in _plugged if c.name != command.name] + [command]


# ---------------------------------------------------------------------------------------
# the shared monitor


class Monitor:
    """Commands and events shared by every QMP client and human monitor of one machine."""

    def __init__(self, registry: ChardevRegistry, vm: VmControl | None = None) -> None:
        self.registry = registry
        self.vm = vm
        self.commands: dict[str, Command] = {c.name: c for c in (*COMMANDS, *_plugged)}
        self._listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._lock = threading.Lock()
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="e2kchar-monitor")
        self._services: dict[str, Any] = {}
        #: rate-limited events: (name, key) -> [time of the last send, data held back]
        self._throttled: dict[tuple[str, str], list[Any]] = {}
        self.closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.registry.ioloop.loop

    def service(self, key: str, factory: Callable[[Monitor], T]) -> T:
        """The per-monitor helper stored under key, made by factory(self) on first use
        (the HMP interpreter that HumanMonitor and human-monitor-command share)."""
        with self._lock:
            if key not in self._services:
                self._services[key] = factory(self)
            service: T = self._services[key]
            return service

    def version(self) -> dict[str, Any]:
        return {"qemu": dict(QEMU_VERSION), "package": f" (e2kchar {__version__})"}

    # -- events ---------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """callback(event_message) for every event; it must be thread-safe and quick."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def emit_event(self, name: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send an event to every listener (any thread); the timestamp is added here."""
        now = time.time()
        seconds = int(now)
        msg: dict[str, Any] = {"event": str(name)}
        if data is not None:
            msg["data"] = data
        msg["timestamp"] = {"seconds": seconds, "microseconds": int((now - seconds) * 1e6)}
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            try:
                cb(msg)
            except Exception:
                log.exception("event listener failed")
        return msg

    #: QEMU rate-limits these events per key (VSERPORT_CHANGE per port id): one per second
    THROTTLE_S = 1.0

    def emit_throttled(self, name: str, key: str, data: dict[str, Any]) -> None:
        """emit_event, at most once per THROTTLE_S for (name, key), as QEMU does for
        VSERPORT_CHANGE: inside the window only the newest data is kept, and it is sent
        when the window ends (a guest flapping a port cannot flood the clients)."""
        now = time.monotonic()
        with self._lock:
            slot = self._throttled.get((name, key))
            if slot is None or now - slot[0] >= self.THROTTLE_S and slot[1] is None:
                self._throttled[(name, key)] = [now, None]
                send = True
            else:
                pending = slot[1] is not None
                slot[1] = data
                send = False
                if not pending:
                    delay = max(0.0, slot[0] + self.THROTTLE_S - now)
                    self.registry.ioloop.call_later(delay, self._release, name, key)
        if send:
            self.emit_event(name, data)

    def _release(self, name: str, key: str) -> None:
        with self._lock:
            slot = self._throttled.get((name, key))
            if slot is None or slot[1] is None:
                return
            data, slot[1] = slot[1], None
            slot[0] = time.monotonic()
        if not self.closed:
            self.emit_event(name, data)

    # -- execution ------------------------------------------------------------------------

    def lookup(self, name: str) -> Command:
        cmd = self.commands.get(name)
        if cmd is None:
            raise QmpError(f"The command {name} has not been found", COMMAND_NOT_FOUND)
        return cmd

    def run_on_worker(self, fn: Callable[[], Any]) -> Awaitable[Any]:
        """Run fn on the worker thread (machine calls are serialised there)."""
        if self.closed:
            raise QmpError("The monitor is closed")
        return asyncio.wrap_future(self._worker.submit(fn), loop=self.loop)

    def submit(self, fn: Callable[[], Any]) -> None:
        """Fire and forget on the worker thread; a failure is logged."""

        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("monitor action %r failed", fn)

        if not self.closed:
            self._worker.submit(run)

    async def execute(self, name: str, arguments: Any = None) -> Outcome:
        """Look up, check and run a command (on the I/O thread); raises QmpError."""
        cmd = self.lookup(name)
        args = check_args(cmd.args, arguments)
        try:
            if cmd.is_async:
                value = await cmd.handler(self, args)
            elif cmd.vm:
                value = await self.run_on_worker(lambda: cmd.handler(self, args))
            else:
                value = cmd.handler(self, args)
        except QmpError:
            raise
        except ChardevError as exc:
            raise QmpError(str(exc)) from None
        except Exception as exc:
            log.exception("command %s failed", name)
            raise QmpError(f"{name}: internal error: {exc}") from None
        return value if isinstance(value, Outcome) else Outcome(value)

    def execute_sync(self, name: str, arguments: Any = None,
                     timeout: float | None = 30.0) -> Any:
        """Run a command from a thread other than the I/O thread; returns its value."""
        if self.registry.ioloop.in_loop_thread():
            raise QmpError("execute_sync() cannot be called on the I/O thread")

        async def run() -> Any:
            outcome = await self.execute(name, arguments)
            for action in outcome.after:
                action()
            return outcome.value

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def close(self) -> None:
        """Stop the worker thread (without waiting: quit may be running on it)."""
        self.closed = True
        self._worker.shutdown(wait=False, cancel_futures=True)
