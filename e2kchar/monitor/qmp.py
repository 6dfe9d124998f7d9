"""QMP server: QEMU's machine protocol over unix or loopback TCP sockets, on the registry loop.

Each client gets the greeting, must negotiate with ``qmp_capabilities`` and then sends
commands as consecutive JSON objects (no separator needed: ``qemu.qmp`` sends none). Replies
and events go out one JSON object per line, CRLF-terminated, ASCII only. A misbehaving client
(garbage, oversized messages, never reading its replies, vanishing mid-command) gets an error
or loses its connection; the machine and the other clients carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import stat
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from ..chardev.backends.socket import SocketConfig
from ..chardev.configbase import InetAddress, UnixAddress
from ..chardev.ownedpath import OwnedPath
from ..chardev.ratelog import log_limited
from ..chardev.types import ChardevError
from ..errors import E2kcharError
from ..options import parse_spec
from .commands import COMMAND_NOT_FOUND, Monitor, QmpError, VmControl, check_args

if TYPE_CHECKING:
    from ..chardev.registry import ChardevRegistry

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20      #: bytes in one JSON message before the client is dropped
MAX_DEPTH = 1024           #: nesting of arrays/objects (QEMU's MAX_NESTING)
MAX_OUTPUT = 1 << 20       #: unsent bytes queued for one client before it is dropped
MAX_CLIENTS = 64
_READ_CHUNK = 65536

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class MessageTooLarge(E2kcharError):
    """A client's message exceeded the size limit."""


# ---------------------------------------------------------------------------------------
# framing: a byte stream of consecutive JSON values

_DQ_SPECIAL = re.compile(rb'[\\"\x00-\x1f\xfe\xff]')
_SQ_SPECIAL = re.compile(rb"[\\'\"\x00-\x1f\xfe\xff]")
_OUT_SPECIAL = re.compile(rb"[{}\[\]\"'\x00-\x20\x7f-\xff]")
_WHITESPACE = b" \t\r\n"


class JsonStreamSplitter:
    """Cut a byte stream into complete top-level JSON texts, as QEMU's json-streamer does.

    Objects and arrays end at their closing bracket, so no newline is needed. Single-quoted
    strings (a QEMU extension) are rewritten to standard JSON. A lexical error (a control
    character, 0xFE/0xFF) discards what was collected and yields a QmpError, so a client can
    resynchronise the way the QMP spec describes. Raises MessageTooLarge past ``max_size``.
    """

    def __init__(self, max_size: int = MAX_MESSAGE, max_depth: int = MAX_DEPTH) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self._reset()

    def _reset(self) -> None:
        self.buf = bytearray()
        self.depth = 0
        self.quote = 0
        self.escape = False
        self.scalar = False

    @property
    def pending(self) -> int:
        return len(self.buf)

    def _emit(self, out: list[bytes | QmpError]) -> None:
        out.append(bytes(self.buf))
        self._reset()

    def _error(self, out: list[bytes | QmpError], text: str) -> None:
        out.append(QmpError(f"JSON parse error, {text}"))
        self._reset()

    def feed(self, data: bytes) -> list[bytes | QmpError]:
        out: list[bytes | QmpError] = []
        i, n = 0, len(data)
        while i < n:
            if len(self.buf) > self.max_size:
                raise MessageTooLarge(len(self.buf))
            if self.quote:
                if self.escape:
                    self.escape = False
                    b = data[i]
                    i += 1
                    if b == 0x27:
                        self.buf.append(0x27)  # \' is valid in QEMU's JSON, not in Python's
                    else:
                        self.buf += b"\\" + bytes((b,))
                    continue
                m = (_SQ_SPECIAL if self.quote == 0x27 else _DQ_SPECIAL).search(data, i)
                end = m.start() if m else n
                self.buf += data[i:end]
                i = end
                if m is None:
                    break
                b = data[i]
                i += 1
                if b == 0x5C:
                    self.escape = True
                elif b == self.quote:
                    self.buf.append(0x22)
                    self.quote = 0
                    if self.depth == 0:
                        self._emit(out)
                elif b == 0x22:  # a double quote inside a single-quoted string
                    self.buf += b'\\"'
                else:
                    self._error(out, f"invalid character 0x{b:02x} in string")
                continue
            m = _OUT_SPECIAL.search(data, i)
            end = m.start() if m else n
            if end > i:
                if self.depth == 0:
                    self.scalar = True
                self.buf += data[i:end]
                i = end
            if m is None:
                break
            b = data[i]
            i += 1
            if b in _WHITESPACE:
                if self.scalar and self.depth == 0:
                    self._emit(out)
                elif self.depth:
                    self.buf.append(0x20)
                continue
            if self.scalar and self.depth == 0:
                self._emit(out)
            if b in b"{[":
                self.depth += 1
                if self.depth > self.max_depth:
                    raise MessageTooLarge(f"nesting deeper than {self.max_depth}")
                self.buf.append(b)
            elif b in b"}]":
                if self.depth == 0:
                    self._error(out, f"stray '{chr(b)}'")
                    continue
                self.depth -= 1
                self.buf.append(b)
                if self.depth == 0:
                    self._emit(out)
            elif b in b"\"'":
                self.quote = b
                self.buf.append(0x22)
            else:
                self._error(out, f"invalid character 0x{b:02x}")
        if len(self.buf) > self.max_size:
            raise MessageTooLarge(len(self.buf))
        return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key '{key}'")
        obj[key] = value
    return obj


def _bad_constant(name: str) -> Any:
    raise ValueError(f"invalid keyword '{name}'")


def decode_message(raw: bytes) -> Any:
    """One JSON text -> Python value; QmpError("JSON parse error, ...") when it is not."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise QmpError("JSON parse error, invalid UTF-8 sequence") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_bad_constant)
    except json.JSONDecodeError as exc:
        msg = exc.msg[:1].lower() + exc.msg[1:]
        raise QmpError(f"JSON parse error, {msg}") from None
    except (ValueError, RecursionError) as exc:
        raise QmpError(f"JSON parse error, {exc}") from None


def encode_message(msg: dict[str, Any]) -> bytes:
    """One reply line: ASCII JSON (non-ASCII as \\uXXXX), CRLF-terminated."""
    return json.dumps(msg, ensure_ascii=True).encode("ascii") + b"\r\n"


# ---------------------------------------------------------------------------------------
# one client


class QmpSession:
    """One connected client: greeting, negotiation, then commands in order."""

    def __init__(self, server: QmpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.negotiated = False
        self.closed = False
        #: a request is being handled: its reply is still to come (the server's close waits)
        self.busy = False
        self.splitter = JsonStreamSplitter(server.max_message)
        peer = writer.get_extra_info("peername")
        self.peer = peer if peer else "unix client"

    def send(self, msg: dict[str, Any]) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        try:
            self.writer.write(encode_message(msg))
        except (ConnectionError, RuntimeError, OSError):
            self.drop("write failed")
            return
        if transport.get_write_buffer_size() > self.server.max_output:
            self.drop(f"output backlog over {self.server.max_output} bytes (client not reading)")

    def drop(self, why: str, level: int = logging.WARNING) -> None:
        if not self.closed:
            log.log(level, "QMP client %s dropped: %s", self.peer, why)
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    async def run(self) -> None:
        self.send({"QMP": {"version": self.server.monitor.version(), "capabilities": []}})
        try:
            while not self.closed:
                data = await self.reader.read(_READ_CHUNK)
                if not data:
                    break
                try:
                    items = self.splitter.feed(data)
                except MessageTooLarge as exc:
                    self.send({"error": QmpError(
                        f"JSON message exceeds the limit of {self.server.max_message} bytes"
                        f" or {MAX_DEPTH} levels").to_qmp()})
                    self._close_gracefully()
                    log.warning("QMP client %s closed: message too large (%s)", self.peer, exc)
                    break
                for item in items:
                    if self.closed:
                        break
                    if isinstance(item, QmpError):
                        self.send({"error": item.to_qmp()})
                        continue
                    self.busy = True
                    try:
                        await self.handle(item)
                    finally:
                        self.busy = False
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

    def _close_gracefully(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    async def handle(self, raw: bytes) -> None:
        """Parse, check and run one request; every failure becomes an error reply."""
        try:
            obj = decode_message(raw)
        except QmpError as exc:
            self.send({"error": exc.to_qmp()})
            return
        if not isinstance(obj, dict):
            self.send({"error": QmpError("QMP input must be a JSON object").to_qmp()})
            return
        has_id = "id" in obj
        ident = obj.get("id")
        after: list[Any] = []
        try:
            name, arguments = self._check_request(obj)
            if not self.negotiated:
                value = self._negotiate(name, arguments)
            else:
                outcome = await self.server.monitor.execute(name, arguments)
                value, after = outcome.value, outcome.after
            reply: dict[str, Any] = {"return": value}
        except QmpError as exc:
            reply = {"error": exc.to_qmp()}
        if has_id:
            reply["id"] = ident
        self.send(reply)
        if after:
            await self._drain()
            for action in after:
                try:
                    action()
                except Exception:
                    log.exception("post-reply action failed")

    async def _drain(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.drain(), 1.0)

    @staticmethod
    def _check_request(obj: dict[str, Any]) -> tuple[str, Any]:
        for key, value in obj.items():
            if key in ("execute", "exec-oob"):
                if not isinstance(value, str):
                    raise QmpError(f"QMP input member '{key}' must be a string")
            elif key == "arguments":
                if not isinstance(value, dict):
                    raise QmpError("QMP input member 'arguments' must be an object")
            elif key != "id":
                raise QmpError(f"QMP input member '{key}' is unexpected")
        if "exec-oob" in obj:
            if "execute" in obj:
                raise QmpError("QMP input must have either 'execute' or 'exec-oob'")
            raise QmpError(f"The command {obj['exec-oob']} does not support OOB")
        if "execute" not in obj:
            raise QmpError("QMP input lacks member 'execute'")
        return obj["execute"], obj.get("arguments")

    def _negotiate(self, name: str, arguments: Any) -> dict[str, Any]:
        if name != "qmp_capabilities":
            raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           COMMAND_NOT_FOUND)
        cmd = self.server.monitor.lookup("qmp_capabilities")
        args = check_args(cmd.args, arguments)
        for cap in args.get("enable", []):
            raise QmpError(f"Capability '{cap}' not available")
        self.negotiated = True
        return {}


# ---------------------------------------------------------------------------------------
# the server


def _bind_unix(path: str) -> tuple[socket.socket, OwnedPath]:
    """A listening unix socket at path, mode 0600 from the start (bound elsewhere, renamed).

    An existing socket file at path is replaced, as QEMU does; anything else is refused.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ChardevError(f"Failed to bind socket to {path}: {exc.strerror}") from None
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ChardevError(f"Failed to bind socket to {path}: File exists")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        tmpdir = tempfile.mkdtemp(prefix=".q", dir=os.path.dirname(path) or ".")
        tmp = os.path.join(tmpdir, "s")
        try:
            try:
                sock.bind(tmp)
            except OSError:  # temp path too long for sun_path: bind in place, then chmod
                os.rmdir(tmpdir)
                tmpdir = ""
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                sock.bind(path)
                os.chmod(path, 0o600)
                sock.listen(16)
            else:
                os.chmod(tmp, 0o600)
                sock.listen(16)  # listening before it appears: no client is ever refused
                os.rename(tmp, path)
        finally:
            if tmpdir:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                with contextlib.suppress(OSError):
                    os.rmdir(tmpdir)
        sock.setblocking(False)
        return sock, OwnedPath.of(path)
    except OSError as exc:
        sock.close()
        raise ChardevError(f"Failed to bind socket to {path}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise


class QmpServer:
    """QMP monitor server; runs on the registry's asyncio loop.

    ``listen()`` may be called several times (several ``-qmp`` options). ``monitor`` can be
    shared with a HumanMonitor so both run the same commands and QMP clients see the events
    of HMP-issued commands.
    """

    def __init__(self, registry: ChardevRegistry, vm: VmControl | None = None, *,
                 monitor: Monitor | None = None, max_message: int = MAX_MESSAGE,
                 max_output: int = MAX_OUTPUT, max_clients: int = MAX_CLIENTS) -> None:
        self.registry = registry
        self._own_monitor = monitor is None
        self.monitor = monitor if monitor is not None else Monitor(registry, vm)
        self.max_message = max_message
        self.max_output = max_output
        self.max_clients = max_clients
        self.address: str | tuple[str, int] | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._unix_paths: list[OwnedPath] = []
        self._sessions: set[QmpSession] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client_seen = threading.Event()
        self._closed = False
        self.monitor.add_listener(self._on_event)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.registry.ioloop.loop

    @property
    def clients(self) -> int:
        """Connected clients (negotiated or not)."""
        return len(self._sessions)

    # -- listening ------------------------------------------------------------------------

    @staticmethod
    def parse_address(spec: str) -> SocketConfig:
        """'unix:PATH,server=on,wait=off' or 'tcp:HOST:PORT,server=on,wait=off' -> config."""
        parsed = parse_spec(spec, "qmp")
        config = parsed.backend
        if not isinstance(config, SocketConfig) or parsed.mux:
            raise ChardevError(f"'{spec}': QMP needs a unix: or tcp: socket address")
        if not isinstance(config.addr, InetAddress | UnixAddress):
            raise ChardevError(f"'{spec}': QMP needs a unix: or tcp: socket address")
        if config.telnet or config.tn3270 or config.websocket or config.tls_creds:
            raise ChardevError(f"'{spec}': telnet, websocket and TLS are not supported for QMP")
        return config

    async def alisten(self, spec: str) -> str | tuple[str, int]:
        """Start listening (or connect out when server=off); returns the bound address."""
        if self._closed:
            raise ChardevError("QMP server is closed")
        config = self.parse_address(spec)
        addr = config.addr
        assert isinstance(addr, (InetAddress, UnixAddress))  # parse_address refused the rest
        if not config.server:
            await self._connect_out(addr)
            self.address = addr.path if isinstance(addr, UnixAddress) else (addr.host, int(addr.port))
            return self.address
        if isinstance(addr, UnixAddress):
            if addr.abstract:
                raise ChardevError("abstract unix sockets are not supported for QMP")
            sock, owned = _bind_unix(addr.path)
            try:
                server = await asyncio.start_unix_server(self._accept, sock=sock,
                                                         limit=_READ_CHUNK)
            except BaseException:
                sock.close()
                raise
            self._unix_paths.append(owned)
            address: str | tuple[str, int] = addr.path
        else:
            host = addr.host or "127.0.0.1"  # nobody named an address: loopback only
            if host not in _LOOPBACK:
                log.warning("QMP listening on non-loopback address %s (as requested)", host)
            try:
                port = int(addr.port)
            except ValueError:
                raise ChardevError(f"Invalid port '{addr.port}'") from None
            if not 0 <= port <= 65535:
                raise ChardevError(f"Port '{addr.port}' out of range (0-65535)")
            family = socket.AF_INET6 if addr.ipv6 else socket.AF_INET if addr.ipv4 else 0
            try:
                server = await asyncio.start_server(self._accept, host, port, family=family,
                                                    reuse_address=True, limit=_READ_CHUNK)
            except OSError as exc:
                raise ChardevError(
                    f"Failed to bind socket to {host}:{port}: {exc.strerror or exc}") from None
            sockname = server.sockets[0].getsockname()
            address = (sockname[0], sockname[1])
        self._servers.append(server)
        self.address = address
        log.info("QMP listening on %s", address)
        return address

    def listen(self, spec: str, timeout: float | None = None) -> str | tuple[str, int]:
        """Blocking listen() for other threads; with wait=on also waits for a first client."""
        ioloop = self.registry.ioloop
        if ioloop.in_loop_thread():
            raise ChardevError("use 'await alisten()' on the I/O thread")
        if ioloop.closed:
            raise ChardevError("character device registry is closed")
        config = self.parse_address(spec)
        address = asyncio.run_coroutine_threadsafe(self.alisten(spec), self.loop).result(10)
        if config.server and config.wait:
            log.info("QMP: waiting for a connection on %s", address)
            if not self._client_seen.wait(timeout):
                raise ChardevError(f"no QMP client connected to {address}")
        return address

    async def _connect_out(self, addr: InetAddress | UnixAddress) -> None:
        try:
            if isinstance(addr, UnixAddress):
                reader, writer = await asyncio.open_unix_connection(addr.path, limit=_READ_CHUNK)
            else:
                reader, writer = await asyncio.open_connection(addr.host or "127.0.0.1",
                                                               int(addr.port),
                                                               limit=_READ_CHUNK)
        except (OSError, ValueError, OverflowError) as exc:
            raise ChardevError(f"Failed to connect to QMP client: {exc}") from None
        task = self.loop.create_task(self._accept(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed or len(self._sessions) >= self.max_clients:
            log_limited(log, logging.WARNING, ("qmp", str(self.address), "refuse"),
                        "QMP: refusing a client (%d connected)", len(self._sessions))
            writer.transport.abort()
            return
        session = QmpSession(self, reader, writer)
        self._sessions.add(session)
        self._client_seen.set()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        except asyncio.CancelledError:
            # only close() cancels sessions; ending quietly keeps asyncio's stream
            # callback from logging the cancellation as an error
            session.drop("server closing", logging.INFO)
        except Exception:
            log.exception("QMP session failed")
            session.drop("internal error")
        finally:
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    # -- events ---------------------------------------------------------------------------

    def emit_event(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Send an event (timestamped) to every negotiated client; safe from any thread."""
        self.monitor.emit_event(name, data)

    def _on_event(self, msg: dict[str, Any]) -> None:
        if self._closed:
            return
        if self.registry.ioloop.in_loop_thread():
            self._broadcast(msg)
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._broadcast, msg)

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for session in list(self._sessions):
            if session.negotiated:
                session.send(msg)

    # -- shutdown -------------------------------------------------------------------------

    async def aclose(self, linger: float = 2.0) -> None:
        """Close: a command already running finishes and its reply, like the replies and
        events already queued, still goes out to clients that read them (for up to
        ``linger`` seconds); then every connection is cut.

        The wait matters when the machine ends while a command is in flight: a guest that
        exits right after ``cont`` resumed it closes the server before the worker's result
        has become the reply, which must not be lost (QEMU answers a command before its main
        loop acts on the shutdown). Nothing is waited for when nothing is pending.
        """
        if not self._closed and self._sessions and linger > 0:
            for server in self._servers:
                server.close()
            self._unlink_paths()

            def pending() -> bool:
                for session in self._sessions:
                    with contextlib.suppress(Exception):
                        transport = session.writer.transport
                        if transport.is_closing():
                            continue
                        if session.busy or transport.get_write_buffer_size():
                            return True
                return False

            deadline = self.loop.time() + linger
            while pending() and self.loop.time() < deadline:
                await asyncio.sleep(0.005)
        self._shutdown_now()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()

    def _shutdown_now(self) -> None:
        self._closed = True
        self.monitor.remove_listener(self._on_event)
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            session.drop("server closing", logging.INFO)
        current = asyncio.current_task() if self.loop.is_running() else None
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._unlink_paths()

    def _unlink_paths(self) -> None:
        """Remove our unix socket files (not a file someone else has put there since)."""
        for owned in self._unix_paths:
            owned.remove()
        self._unix_paths.clear()

    def close(self) -> None:
        """Stop listening, disconnect every client, remove the unix socket file."""
        if self._closed:
            return
        ioloop = self.registry.ioloop
        try:
            if ioloop.in_loop_thread():
                self._shutdown_now()
            elif ioloop.closed or not self.loop.is_running():
                self._closed = True
                self.monitor.remove_listener(self._on_event)
                self._unlink_paths()
            else:
                asyncio.run_coroutine_threadsafe(self.aclose(), self.loop).result(5)
        finally:
            self._closed = True
            if self._own_monitor:
                self.monitor.close()

    def __enter__(self) -> QmpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
