"""ChardevRegistry: creation, hotswap, removal and queries, with QEMU's error texts.

The registry owns the I/O thread. Management operations run on it (callers on other
threads block until done), so frontend callbacks such as be_change never race the loop.
"""

from __future__ import annotations

import binascii
import importlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import hotswap
from .base import Chardev
from .configbase import BackendConfig
from .frontend import CharBackend
from .ioloop import IOLoop
from .logfile import LogFile
from .spec import ALIASES, BACKENDS, ChardevSpec, check_id, from_qapi, parse_spec
from .types import ChardevError, ChardevEvent

if TYPE_CHECKING:
    from .backends.ringbuf import RingbufChardev

log = logging.getLogger(__name__)


class _BuiltinClasses(Mapping[str, type[Chardev]]):
    """Type name -> Chardev class of the built-in backends, each imported on first use."""

    def __getitem__(self, name: str) -> type[Chardev]:
        return BACKENDS[name].chardev

    def __iter__(self) -> Iterator[str]:
        return iter(BACKENDS)

    def __len__(self) -> int:
        return len(BACKENDS)


#: type name -> Chardev class of every built-in backend (a user's may be added per registry)
BUILTIN_BACKENDS: Mapping[str, type[Chardev]] = _BuiltinClasses()

#: what ringbuf-write format=base64 accepts (compiled by re's cache on first use)
_B64_OK = r"[A-Za-z0-9+/=\n]*\Z"


class ChardevRegistry:
    """All chardevs of one machine (or test), keyed by id, and their I/O thread."""

    def __init__(self, *, guest_clock: Callable[[], float] | None = None,
                 coalesce_output: bool = False) -> None:
        self.ioloop = IOLoop()
        self._chardevs: dict[str, Chardev] = {}
        #: user-registered backends (a built-in is looked up in BUILTIN_BACKENDS)
        self._backends: dict[str, str | type[Chardev]] = {}
        #: seconds of guest time since reset, for logtimestamp=on (set by a machine)
        self.guest_clock = guest_clock
        self._exit_handlers: list[Callable[[int], Any]] = []
        self.exit_status: int | None = None
        self.stdio_in_use = False
        #: let fd backends buffer output bursts and write them from the I/O thread (one
        #: syscall per burst); write_all() still returns only once the bytes are written
        self.coalesce_output = coalesce_output
        self._closed = False

    # ------------------------------------------------------------------------------------
    # context manager / shutdown

    def __enter__(self) -> ChardevRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Destroy every chardev, then stop the I/O thread (no fd or thread survives)."""
        if self._closed:
            return
        self._closed = True

        def destroy_all() -> None:
            # muxes first: they are frontends of their bases
            for chr_ in sorted(self._chardevs.values(), key=lambda c: not c.is_mux):
                self.destroy(chr_)

        try:
            self.ioloop.run_sync(destroy_all, timeout=10)
        finally:
            self.ioloop.close()

    def run_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (on any thread but the I/O thread) until predicate() is true."""
        return self.ioloop.run_until(predicate, timeout)

    # ------------------------------------------------------------------------------------
    # exit requests (mux Ctrl-A x, testdev 'q')

    def on_exit(self, callback: Callable[[int], Any]) -> None:
        """Register who ends the emulation when a chardev asks to exit."""
        self._exit_handlers.append(callback)

    def request_exit(self, status: int) -> None:
        self.exit_status = status
        if not self._exit_handlers:
            log.warning("exit(%d) requested by a chardev; nobody is registered to act on it",
                        status)
        for cb in list(self._exit_handlers):
            try:
                cb(status)
            except Exception:
                log.exception("exit handler failed")
        self.ioloop.notify()

    def claim_stdio(self) -> bool:
        """One chardev at a time may use the process's stdin/stdout."""
        if self.stdio_in_use:
            return False
        self.stdio_in_use = True
        return True

    def release_stdio(self) -> None:
        self.stdio_in_use = False

    # ------------------------------------------------------------------------------------
    # backend classes

    def register_backend(self, type_name: str, cls: type[Chardev] | str) -> None:
        """Make a user-written backend class creatable by type name (QAPI dicts); a
        "module:Class" string is imported on first use (an unavailable one is then a
        clear error, not an import failure at start-up)."""
        self._backends[type_name] = cls


    def backend_class(self, type_name: str) -> type[Chardev]:
        """The class opening type_name (an alias resolved); ChardevError if unknown."""
        type_name = ALIASES.get(type_name, type_name)
        entry = self._backends.get(type_name)
        if entry is None:
            if type_name not in BUILTIN_BACKENDS:
                raise ChardevError(f"'{type_name}' is not a valid char driver name")
            entry = BUILTIN_BACKENDS[type_name]
        if isinstance(entry, str):
            module, _, name = entry.partition(":")
            try:
                cls: type[Chardev] = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                raise ChardevError(
                    f"chardev backend '{type_name}' is not available yet") from None
            except OSError as exc:  # e.g. out of fds while loading the module
                raise ChardevError(f"chardev backend '{type_name}' could not be loaded: "
                                   f"{exc.strerror or exc}") from None
            self._backends[type_name] = cls
            return cls
        return entry

    def backend_names(self) -> list[str]:
        names = []
        for name in [*BUILTIN_BACKENDS, *(n for n in self._backends
                                           if n not in BUILTIN_BACKENDS)]:
            try:
                self.backend_class(name)
            except ChardevError:
                continue
            names.append(name)
        if "serial" in names:
            names.append("tty")
        return names

    # ------------------------------------------------------------------------------------
    # creation

    def open_chardev(self, label: str | None, config: BackendConfig, reopen: bool = False,
              log_from: Chardev | None = None) -> Chardev:
        """qemu_chardev_new without registration: build and open, or raise (no residue)."""
        cls = self.backend_class(config.type)
        chr_ = cls(self, label, config)
        chr_.reopen = reopen
        if config.logfile:
            if log_from is not None and log_from.logfile is not None \
                    and log_from.logfile.path == config.logfile:
                chr_.logfile = log_from.logfile  # a swap never truncates the log
            else:
                chr_.logfile = LogFile(config.logfile, bool(config.logappend) or reopen,
                                       bool(config.logtimestamp), lambda: self.guest_clock)
        try:
            be_opened = chr_.open()
        except BaseException as exc:
            chr_.closed = True
            try:
                chr_.chr_close()
            except Exception:
                log.exception("cleanup after failed open")
            if chr_.logfile is not None and chr_.logfile is not getattr(log_from, "logfile", None):
                chr_.logfile.discard()
            chr_.logfile = None
            if isinstance(exc, ChardevError) or not isinstance(exc, Exception):
                raise
            # a backend bug or an unforeseen host error must not escape as anything else
            log.debug("opening %s failed", config.type, exc_info=True)
            raise ChardevError(f"{config.type}: {exc}") from None
        if not chr_.filename:
            chr_.filename = config.type
        if chr_.logfile is not None:
            chr_.logfile.commit()
        if be_opened:
            chr_.be_event(ChardevEvent.OPENED)
        return chr_

    def register_chardev(self, label: str, chr_: Chardev) -> None:
        """Enter an opened chardev under label (creation, hotswap)."""
        chr_.label = label
        self._chardevs[label] = chr_
        chr_.chr_registered()

    def unregister_chardev(self, label: str) -> None:
        """Forget label without finalizing its chardev (hotswap)."""
        del self._chardevs[label]

    def destroy(self, chr_: Chardev) -> None:
        """Unregister and finalize chr_ (no busy check: the caller decided)."""
        if chr_.label is not None and self._chardevs.get(chr_.label) is chr_:
            del self._chardevs[chr_.label]
        chr_.finalize()

    def _check_new_id(self, ident: str, qmp: bool) -> None:
        check_id(ident)
        if ident in self._chardevs:
            if qmp:
                raise ChardevError(
                    f"attempt to add duplicate property '{ident}' to object (type 'container')")
            raise ChardevError(f"Duplicate ID '{ident}' for chardev")

    def _create_spec(self, spec: ChardevSpec, qmp: bool) -> Chardev:
        ident = spec.id
        if ident is None:
            raise ChardevError("chardev: no id specified")
        self._check_new_id(ident, qmp)
        if not spec.mux:
            chr_ = self.open_chardev(ident, spec.backend)
            self.register_chardev(ident, chr_)
            return chr_
        base_id = f"{ident}-base"
        self._check_new_id(base_id, qmp)
        base = self.open_chardev(base_id, spec.backend)
        self.register_chardev(base_id, base)
        try:
            # the mux module loads with the first mux (not at start-up); a failed load (out
            # of fds) is a ChardevError and takes the base down with it
            BACKENDS["mux"]  # noqa: B018 (loads the module, or raises ChardevError)
            from .backends.mux import MuxConfig

            mux = self.open_chardev(ident, MuxConfig(chardev=base_id))
        except BaseException:
            self.destroy(base)
            raise
        self.register_chardev(ident, mux)
        return mux

    def create(self, spec: ChardevSpec) -> Chardev:
        """Create and register a parsed chardev (the -chardev / -serial path)."""
        chr_ = self.ioloop.run_sync(self._create_spec, spec, False)
        if not self.ioloop.in_loop_thread():
            # a socket server with wait=on blocks here, as QEMU blocks in accept()
            base = getattr(chr_, "base", None)
            (base if base is not None else chr_).chr_wait_connected(None)
        return chr_

    def new(self, label: str | None, spec: str) -> Chardev:
        """Create from a -chardev string ('ringbuf,size=128') or the legacy -serial syntax.

        ``chardev:ID`` returns the existing chardev ID, as QEMU does.
        """
        if isinstance(spec, str) and spec.startswith("chardev:"):
            found = self.find(spec[8:])
            if found is None:
                raise ChardevError(f"chardev '{spec[8:]}' not found")
            return found
        return self.create(parse_spec(spec, label))

    def find(self, label: str) -> Chardev | None:
        return self._chardevs.get(label)

    def __contains__(self, label: str) -> bool:
        return label in self._chardevs

    # ------------------------------------------------------------------------------------
    # QMP commands

    def add(self, id: str, backend: dict[str, Any]) -> dict[str, Any]:
        """chardev-add; returns {} or {"pty": "/dev/pts/N"}."""
        config = from_qapi(backend)

        def run() -> dict[str, Any]:
            chr_ = self._create_spec(ChardevSpec(id, config, False), True)
            return chr_.query_extra()

        return self.ioloop.run_sync(run)

    def change(self, id: str, backend: dict[str, Any]) -> dict[str, Any]:
        """chardev-change: hotswap the backend under a frontend, with rollback on veto
        (the algorithm is e2kchar.chardev.hotswap)."""
        if not isinstance(id, str):
            raise ChardevError("Invalid parameter type for 'id', expected: string")
        config = from_qapi(backend)
        return self.ioloop.run_sync(hotswap.change, self, id, config)

    def remove(self, id: str) -> None:
        """chardev-remove."""

        def run() -> None:
            chr_ = self._chardevs.get(id)
            if chr_ is None:
                raise ChardevError(f"Chardev '{id}' not found")
            if chr_.busy:
                raise ChardevError(f"Chardev '{id}' is busy")
            self.destroy(chr_)

        self.ioloop.run_sync(run)

    def query(self) -> list[dict[str, Any]]:
        """query-chardev: [{label, filename, frontend-open}]."""
        return self.ioloop.run_sync(lambda: [c.info() for c in self._chardevs.values()])

    def query_backends(self) -> list[dict[str, str]]:
        """query-chardev-backends."""
        return [{"name": name} for name in self.backend_names()]

    def send_break(self, id: str) -> None:
        """chardev-send-break: a BREAK event to the chardev's frontend."""

        def run() -> None:
            chr_ = self._chardevs.get(id)
            if chr_ is None:
                raise ChardevError(f"Chardev '{id}' not found")
            chr_.be_event(ChardevEvent.BREAK)

        self.ioloop.run_sync(run)

    def _ringbuf(self, device: str) -> RingbufChardev:
        BACKENDS["ringbuf"]  # loads backends/ringbuf.py on first use (a ChardevError if not)
        from .backends.ringbuf import RingbufChardev

        chr_ = self._chardevs.get(device)
        if chr_ is None:
            raise ChardevError(f"Device '{device}' not found")
        if not isinstance(chr_, RingbufChardev):
            raise ChardevError(f"{device} is not a ringbuf device")
        return chr_

    def ringbuf_write(self, device: str, data: str, format: str = "utf8") -> None:
        """ringbuf-write: straight into the ring (not logged, not sent to a frontend)."""
        if format not in ("utf8", "base64"):
            raise ChardevError(f"Parameter 'format' does not accept value '{format}'")
        if not isinstance(data, str):
            raise ChardevError("Invalid parameter type for 'data', expected: string")

        def run() -> None:
            ring = self._ringbuf(device)
            if format == "base64":
                import base64  # the monitor's ringbuf commands only: off the start-up path

                if not re.match(_B64_OK, data):
                    raise ChardevError("Base64 data contains invalid characters")
                try:
                    raw = base64.b64decode(data.replace("\n", ""), validate=False)
                except (binascii.Error, ValueError):
                    raise ChardevError("Base64 data contains invalid characters") from None
            else:
                try:
                    raw = data.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:  # a lone surrogate JSON let through
                    raise ChardevError("Invalid parameter 'data': not a valid UTF-8 "
                                       "string") from None
            ring.ring_put(raw)

        self.ioloop.run_sync(run)

    def ringbuf_read(self, device: str, size: int, format: str = "utf8") -> str:
        """ringbuf-read: consumes min(size, count) of the oldest bytes."""
        if format not in ("utf8", "base64"):
            raise ChardevError(f"Parameter 'format' does not accept value '{format}'")
        if not isinstance(size, int) or isinstance(size, bool):
            raise ChardevError("Invalid parameter type for 'size', expected: integer")

        def run() -> str:
            ring = self._ringbuf(device)
            if size <= 0:
                raise ChardevError("size must be greater than zero")
            raw = ring.ring_get(size)
            if format == "base64":
                import base64

                return base64.b64encode(raw).decode("ascii")
            # QEMU hands back a C string: an embedded NUL ends it
            raw = raw.split(b"\0", 1)[0]
            return raw.decode("utf-8", "replace")

        return self.ioloop.run_sync(run)

    # ------------------------------------------------------------------------------------
    # convenience for frontends written in plain Python

    def attach(self, label: str) -> CharBackend:
        """CharBackend on the chardev `label` (raises if missing or in use)."""
        chr_ = self.find(label)
        if chr_ is None:
            raise ChardevError(f"Device '{label}' not found")
        return CharBackend(chr_)

    def labels(self) -> list[str]:
        return list(self._chardevs)
