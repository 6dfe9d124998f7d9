"""QEMU option syntax for character devices.

Three spellings map to one typed config (e2kchar.chardev.config):
- `-chardev` strings: ``backend,id=x,key=value`` (QemuOpts rules: bare ``key`` = on,
  bare ``nokey`` = off, ``,,`` is a literal comma, the last key wins);
- the legacy ``-serial`` grammar (``mon:stdio``, ``file:PATH``, ``tcp:H:P,server``, ...),
  checked in QEMU's order;
- the QAPI dict ``{"type": ..., "data": {...}}`` used by QMP chardev-add / chardev-change.
Every failure is a ChardevError; nothing here has side effects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from .chardev.config import (
    ALIASES,
    CONFIG_TYPES,
    BackendConfig,
    FdAddress,
    FileConfig,
    InetAddress,
    MemoryConfig,
    MuxConfig,
    NullConfig,
    PipeConfig,
    PtyConfig,
    RingbufConfig,
    SerialConfig,
    SocketAddress,
    SocketConfig,
    StdioConfig,
    TestdevConfig,
    UdpConfig,
    UnixAddress,
)
from .chardev.types import ChardevError

__all__ = [
    "ChardevSpec",
    "parse_chardev",
    "parse_legacy",
    "parse_spec",
    "from_qapi",
    "to_qapi",
    "to_chardev_string",
    "check_id",
    "ID_RE",
    "split_opts",
]

#: what QEMU accepts as an id: a letter, then letters, digits, '_', '.', '-'
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")

_BOOL = "bool"
_NUM = "number"
_SIZE = "size"
_STR = "string"

#: Every -chardev key (QEMU shares one list across backends; irrelevant keys are ignored).
KEYS: dict[str, str] = {
    "backend": _STR,
    "id": _STR,
    "path": _STR,
    "input-path": _STR,
    "host": _STR,
    "port": _STR,
    "localaddr": _STR,
    "localport": _STR,
    "to": _NUM,
    "ipv4": _BOOL,
    "ipv6": _BOOL,
    "numeric": _BOOL,
    "wait": _BOOL,
    "server": _BOOL,
    "delay": _BOOL,
    "nodelay": _BOOL,
    "reconnect": _NUM,
    "reconnect-ms": _NUM,
    "telnet": _BOOL,
    "tn3270": _BOOL,
    "websocket": _BOOL,
    "tls-creds": _STR,
    "tls-authz": _STR,
    "width": _NUM,
    "height": _NUM,
    "cols": _NUM,
    "rows": _NUM,
    "mux": _BOOL,
    "signal": _BOOL,
    "name": _STR,
    "debug": _NUM,
    "size": _SIZE,
    "chardev": _STR,
    "append": _BOOL,
    "logfile": _STR,
    "logappend": _BOOL,
    "logtimestamp": _BOOL,
    "fd": _STR,
    "abstract": _BOOL,
    "tight": _BOOL,
    "history": _SIZE,
}

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")
_SIZE_SUFFIX = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
                "p": 1 << 50, "e": 1 << 60}


@dataclass
class ChardevSpec:
    """A parsed chardev: its id (None if not given), typed backend config and mux flag."""

    id: str | None
    backend: BackendConfig
    mux: bool = False


# ---------------------------------------------------------------------------------------
# QemuOpts


def check_id(ident: str) -> str:
    if not isinstance(ident, str) or not ID_RE.match(ident):
        raise ChardevError("Parameter 'id' expects an identifier")
    return ident


def split_opts(text: str, implied: str | None = None,
               keys: dict[str, str] | None = None) -> dict[str, str]:
    """QemuOpts: 'a,k=v,flag,noflag' -> dict; ',,' escapes a comma; last key wins.

    keys lists the accepted keys and their kinds (default: the -chardev keys).
    """
    known = KEYS if keys is None else keys
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    result: dict[str, str] = {}
    elems: list[str] = []
    cur: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == ",":
            if i + 1 < n and text[i + 1] == ",":
                cur.append(",")
                i += 2
                continue
            elems.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    elems.append("".join(cur))
    for idx, elem in enumerate(elems):
        if idx == 0 and implied is not None and "=" not in elem:
            result[implied] = elem
            continue
        if "=" in elem:
            key, value = elem.split("=", 1)
        elif elem.startswith("no") and elem not in known:
            key, value = elem[2:], "off"  # QemuOpts: any bare 'noX' is X=off
        else:
            key, value = elem, "on"
        if key not in known:
            raise ChardevError(f"Invalid parameter '{key}'")
        result[key] = value
    return result


def _bool(opts: dict[str, str], key: str) -> bool | None:
    if key not in opts:
        return None
    v = opts[key]
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ChardevError(f"Parameter '{key}' expects 'on' or 'off'")


def _num(opts: dict[str, str], key: str) -> int | None:
    if key not in opts:
        return None
    v = opts[key]
    try:
        if not re.fullmatch(r"(0[xX][0-9a-fA-F]+|[0-9]+)", v):
            raise ValueError
        value = int(v, 0) if not re.fullmatch(r"0[0-9]+", v) else int(v, 8)
    except ValueError:
        raise ChardevError(f"Parameter '{key}' expects a number") from None
    if value >= 1 << 64:
        raise ChardevError(f"Parameter '{key}' expects a number")
    return value


def _size(opts: dict[str, str], key: str) -> int | None:
    if key not in opts:
        return None
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([bkmgtpeBKMGTPE]?)", opts[key])
    if not m:
        raise ChardevError(f"Parameter '{key}' expects a non-negative number below 2^64")
    mult = _SIZE_SUFFIX[m.group(2).lower()]
    number = m.group(1)
    if "." in number and mult == 1:
        raise ChardevError(f"Parameter '{key}' expects a non-negative number below 2^64")
    try:
        value = int(float(number) * mult) if "." in number else int(number) * mult
    except OverflowError:  # '9999...9.5k': the float is infinite
        value = 1 << 64
    if value >= 1 << 64:
        raise ChardevError(f"Parameter '{key}' expects a non-negative number below 2^64")
    return value


def _typecheck(opts: dict[str, str]) -> None:
    for key, kind in KEYS.items():
        if key in opts:
            if kind == _BOOL:
                _bool(opts, key)
            elif kind == _NUM:
                _num(opts, key)
            elif kind == _SIZE:
                _size(opts, key)


def _common(opts: dict[str, str]) -> dict[str, Any]:
    return {
        "logfile": opts.get("logfile"),
        "logappend": _bool(opts, "logappend"),
        "logtimestamp": _bool(opts, "logtimestamp"),
    }


def _socket_from_opts(opts: dict[str, str], backend: str = "socket") -> SocketConfig:
    path, host, fd = opts.get("path"), opts.get("host"), opts.get("fd")
    given = [x for x in (path, host, fd) if x is not None]
    if len(given) > 1:
        raise ChardevError("Exactly one of 'path', 'fd' or 'host' required")
    addr: SocketAddress
    if path is not None:
        addr = UnixAddress(path=path, abstract=_bool(opts, "abstract"),
                           tight=_bool(opts, "tight"))
    elif fd is not None:
        addr = FdAddress(str=fd)
    else:
        if host is None:
            raise ChardevError("chardev: socket: no host given")
        if opts.get("port") is None:
            raise ChardevError("chardev: socket: no port given")
        addr = InetAddress(host=host, port=opts["port"], numeric=_bool(opts, "numeric"),
                           to=_num(opts, "to"), ipv4=_bool(opts, "ipv4"),
                           ipv6=_bool(opts, "ipv6"))
    server = _bool(opts, "server") or False
    wait = _bool(opts, "wait")
    if wait is None:
        wait = server  # CLI: servers wait for a client unless told otherwise
    if not server:
        wait = False
    nodelay = _bool(opts, "nodelay")
    delay = _bool(opts, "delay")
    if delay is not None:
        nodelay = not delay
    if opts.get("tls-creds") is not None and not isinstance(addr, InetAddress):
        raise ChardevError("TLS can only be used over TCP socket")
    return SocketConfig(
        addr=addr, server=server, wait=wait, nodelay=nodelay,
        telnet=_bool(opts, "telnet"), tn3270=_bool(opts, "tn3270"),
        websocket=_bool(opts, "websocket"), reconnect=_num(opts, "reconnect"),
        reconnect_ms=_num(opts, "reconnect-ms"), tls_creds=opts.get("tls-creds"),
        history=_size(opts, "history"), **_common(opts),
    )


def _udp_from_opts(opts: dict[str, str]) -> UdpConfig:
    port = opts.get("port")
    if port is None or port == "":
        raise ChardevError("chardev: udp: remote port not specified")
    host = opts.get("host") or "localhost"
    remote = InetAddress(host=host, port=port, ipv4=_bool(opts, "ipv4"),
                         ipv6=_bool(opts, "ipv6"))
    local = None
    if opts.get("localaddr") is not None or opts.get("localport") is not None:
        local = InetAddress(host=opts.get("localaddr") or "", port=opts.get("localport") or "0",
                            ipv4=_bool(opts, "ipv4"), ipv6=_bool(opts, "ipv6"))
    return UdpConfig(remote=remote, local=local, **_common(opts))


def _config_from_opts(backend: str, opts: dict[str, str]) -> BackendConfig:
    backend = ALIASES.get(backend, backend)
    common = _common(opts)
    if backend == "null":
        return NullConfig(**common)
    if backend == "testdev":
        return TestdevConfig(**common)
    if backend == "pty":
        return PtyConfig(history=_size(opts, "history"), **common)
    if backend == "file":
        if opts.get("path") is None:
            raise ChardevError("chardev: file: no filename given")
        return FileConfig(out=opts["path"], in_=opts.get("input-path"),
                          append=_bool(opts, "append"), **common)
    if backend == "pipe":
        if opts.get("path") is None:
            raise ChardevError("chardev: pipe: no device path given")
        return PipeConfig(device=opts["path"], **common)
    if backend == "serial":
        if opts.get("path") is None:
            raise ChardevError("chardev: serial/tty: no device path given")
        return SerialConfig(device=opts["path"], **common)
    if backend == "stdio":
        signal = _bool(opts, "signal")
        return StdioConfig(signal=True if signal is None else signal, **common)
    if backend in ("ringbuf", "memory"):
        size = _size(opts, "size")
        cls = RingbufConfig if backend == "ringbuf" else MemoryConfig
        return cls(size=size, **common)
    if backend == "mux":
        if opts.get("chardev") is None:
            raise ChardevError("chardev: mux: no chardev given")
        return MuxConfig(chardev=opts["chardev"], **common)
    if backend == "socket":
        return _socket_from_opts(opts)
    if backend == "udp":
        return _udp_from_opts(opts)
    raise ChardevError(f"'{backend}' is not a valid char driver name")


def parse_chardev(text: str) -> ChardevSpec:
    """Parse a -chardev argument ('backend,id=x,...')."""
    opts = split_opts(text, implied="backend")
    _typecheck(opts)
    backend = opts.get("backend")
    ident = opts.get("id")
    if ident is None:
        raise ChardevError("chardev: no id specified")
    check_id(ident)
    if not backend:
        raise ChardevError(f'chardev: "{ident}" missing backend')
    config = _config_from_opts(backend, opts)
    return ChardevSpec(ident, config, bool(_bool(opts, "mux")))


# ---------------------------------------------------------------------------------------
# Legacy -serial grammar (qemu_chr_parse_compat), in QEMU's order


_EXACT = ("null", "pty", "testdev", "stdio")
_UNSUPPORTED_EXACT = ("msmouse", "wctablet", "braille")


def parse_legacy(text: str, label: str | None = None) -> ChardevSpec:
    """Parse the -serial / -monitor shorthand; label becomes the chardev id."""
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    if label is not None:
        check_id(label)
    orig = text
    mux = False
    signal_off = False
    if text.startswith("mon:"):
        text = text[4:]
        mux = True
        if text == "stdio":
            signal_off = True
    opts: dict[str, str]
    if text in _EXACT:
        opts = {"backend": text}
        if signal_off:
            opts["signal"] = "off"
    elif text in _UNSUPPORTED_EXACT or text.startswith("vc") or text.startswith("con:") \
            or text.startswith("COM") or text.startswith("/dev/parport") \
            or text.startswith("/dev/ppi"):
        raise ChardevError(f"'{orig}' is not a valid char driver")
    elif text.startswith("file:"):
        opts = {"backend": "file", "path": text[5:]}
    elif text.startswith("pipe:"):
        opts = {"backend": "pipe", "path": text[5:]}
    elif text.startswith(("tcp:", "telnet:", "tn3270:", "websocket:")):
        prefix, rest = text.split(":", 1)
        m = re.match(r"([^:]{0,64}):([^,]{1,32})(?:,(.*))?\Z", rest, re.S)
        if not m:
            raise ChardevError(f"'{orig}' is not a valid char driver")
        # QEMU sets host and port first, then parses the options (which may override
        # them), then the prefix's telnet/tn3270/websocket flag
        opts = {"backend": "socket", "host": m.group(1), "port": m.group(2)}
        if m.group(3) is not None:
            opts.update(split_opts(m.group(3)))
        if prefix != "tcp":
            opts[prefix] = "on"
    elif text.startswith("udp:"):
        rest = text[4:]
        m = re.match(r"([^:@]*):([^@]+?)(?:@([^:]*):(.+))?\Z", rest)
        if not m:
            raise ChardevError(f"'{orig}' is not a valid char driver")
        opts = {"backend": "udp", "host": m.group(1), "port": m.group(2)}
        if m.group(4) is not None:
            opts["localaddr"] = m.group(3)
            opts["localport"] = m.group(4)
    elif text.startswith("unix:"):
        opts = split_opts(text[5:], implied="path")
        opts["backend"] = "socket"
    elif text.startswith("/dev/"):
        opts = {"backend": "serial", "path": text}
    else:
        raise ChardevError(f"'{orig}' is not a valid char driver")
    if "id" in opts:
        raise ChardevError("Unexpected 'id' parameter")
    if "mux" in opts:
        mux = mux or bool(_bool(opts, "mux"))
    _typecheck(opts)
    config = _config_from_opts(opts["backend"], opts)
    return ChardevSpec(label, config, mux)


def parse_spec(text: str, label: str | None = None) -> ChardevSpec:
    """A -chardev string when its first token names a backend, else the legacy grammar."""
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    first = text.split(",", 1)[0]
    if first in CONFIG_TYPES or first in ALIASES or first == "help":
        opts = split_opts(text, implied="backend")
        if label is not None:
            if "id" in opts and opts["id"] != label:
                raise ChardevError("Unexpected 'id' parameter")
            opts["id"] = label
        _typecheck(opts)
        ident = opts.get("id")
        if ident is None:
            raise ChardevError("chardev: no id specified")
        check_id(ident)
        config = _config_from_opts(opts["backend"], opts)
        return ChardevSpec(ident, config, bool(_bool(opts, "mux")))
    return parse_legacy(text, label)


# ---------------------------------------------------------------------------------------
# QAPI dicts


class _Q:
    """Strict QAPI object reader producing QEMU's parameter errors."""

    def __init__(self, obj: Any, where: str, absent: bool = False) -> None:
        if not isinstance(obj, dict):
            raise ChardevError(f"Invalid parameter type for '{where}', expected: object")
        self.obj = dict(obj)
        self.where = where
        #: the object itself was not given (lenient for backends with no required member)
        self.absent = absent

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def take(self, key: str, kind: str, required: bool = False) -> Any:
        if key not in self.obj:
            if required:
                missing = self.where if self.absent else self._name(key)
                raise ChardevError(f"Parameter '{missing}' is missing")
            return None
        value = self.obj.pop(key)
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "object": isinstance(value, dict),
        }[kind]
        if not ok:
            raise ChardevError(
                f"Invalid parameter type for '{self._name(key)}', expected: {kind}")
        if kind == "integer" and not (-(1 << 63) <= value < (1 << 64)):
            raise ChardevError(
                f"Parameter '{self._name(key)}' expects a value in range")
        return value

    def done(self) -> None:
        for key in self.obj:
            raise ChardevError(f"Parameter '{self._name(key)}' is unexpected")


def _qapi_inet(q: _Q) -> InetAddress:
    return InetAddress(host=q.take("host", "string", True), port=q.take("port", "string", True),
                       numeric=q.take("numeric", "boolean"), to=q.take("to", "integer"),
                       ipv4=q.take("ipv4", "boolean"), ipv6=q.take("ipv6", "boolean"))


def _qapi_addr(obj: Any, where: str) -> SocketAddress:
    q = _Q(obj, where)
    kind = q.take("type", "string", True)
    data = _Q(q.take("data", "object", True), f"{where}.data")
    q.done()
    addr: SocketAddress
    if kind == "inet":
        addr = _qapi_inet(data)
    elif kind == "unix":
        addr = UnixAddress(path=data.take("path", "string", True),
                           abstract=data.take("abstract", "boolean"),
                           tight=data.take("tight", "boolean"))
    elif kind == "fd":
        addr = FdAddress(str=data.take("str", "string", True))
    else:
        raise ChardevError(f"Parameter '{where}.type' does not accept value '{kind}'")
    data.done()
    return addr


def from_qapi(backend: Any, where: str = "backend") -> BackendConfig:
    """QAPI ChardevBackend {"type": ..., "data": {...}} -> typed config (strict)."""
    q = _Q(backend, where)
    kind = q.take("type", "string", True)
    data_obj = q.take("data", "object")
    q.done()
    if kind not in CONFIG_TYPES:
        raise ChardevError(f"'{kind}' is not a valid char driver name")
    d = _Q(data_obj if data_obj is not None else {}, f"{where}.data", data_obj is None)
    common = {
        "logfile": d.take("logfile", "string"),
        "logappend": d.take("logappend", "boolean"),
        "logtimestamp": d.take("logtimestamp", "boolean"),
    }
    config: BackendConfig
    if kind == "null":
        config = NullConfig(**common)
    elif kind == "testdev":
        config = TestdevConfig(**common)
    elif kind == "pty":
        config = PtyConfig(history=d.take("history", "integer"), **common)
    elif kind == "file":
        config = FileConfig(out=d.take("out", "string", True), in_=d.take("in", "string"),
                            append=d.take("append", "boolean"), **common)
    elif kind == "pipe":
        config = PipeConfig(device=d.take("device", "string", True), **common)
    elif kind == "serial":
        config = SerialConfig(device=d.take("device", "string", True), **common)
    elif kind == "stdio":
        signal = d.take("signal", "boolean")
        config = StdioConfig(signal=True if signal is None else signal, **common)
    elif kind in ("ringbuf", "memory"):
        cls = RingbufConfig if kind == "ringbuf" else MemoryConfig
        config = cls(size=d.take("size", "integer"), **common)
    elif kind == "mux":
        config = MuxConfig(chardev=d.take("chardev", "string", True), **common)
    elif kind == "socket":
        addr = _qapi_addr(d.take("addr", "object", True), f"{where}.data.addr")
        server = d.take("server", "boolean")
        wait = d.take("wait", "boolean")
        server = True if server is None else server
        config = SocketConfig(
            addr=addr, server=server, wait=bool(wait) if server else False,
            nodelay=d.take("nodelay", "boolean"), telnet=d.take("telnet", "boolean"),
            tn3270=d.take("tn3270", "boolean"), websocket=d.take("websocket", "boolean"),
            reconnect=d.take("reconnect", "integer"),
            reconnect_ms=d.take("reconnect-ms", "integer"),
            tls_creds=d.take("tls-creds", "string"), history=d.take("history", "integer"),
            **common)
    else:  # udp
        remote = _qapi_addr(d.take("remote", "object", True), f"{where}.data.remote")
        local_obj = d.take("local", "object")
        local = _qapi_addr(local_obj, f"{where}.data.local") if local_obj is not None else None
        if not isinstance(remote, InetAddress) or not (local is None or
                                                       isinstance(local, InetAddress)):
            raise ChardevError("udp addresses must be of type 'inet'")
        config = UdpConfig(remote=remote, local=local, **common)
    d.done()
    return config


def _addr_to_qapi(addr: SocketAddress) -> dict[str, Any]:
    if isinstance(addr, InetAddress):
        data = {"host": addr.host, "port": addr.port}
        for key in ("numeric", "to", "ipv4", "ipv6"):
            if getattr(addr, key) is not None:
                data[key] = getattr(addr, key)
        return {"type": "inet", "data": data}
    if isinstance(addr, UnixAddress):
        data = {"path": addr.path}
        for key in ("abstract", "tight"):
            if getattr(addr, key) is not None:
                data[key] = getattr(addr, key)
        return {"type": "unix", "data": data}
    return {"type": "fd", "data": {"str": addr.str}}


_QAPI_NAMES = {"in_": "in", "reconnect_ms": "reconnect-ms", "tls_creds": "tls-creds"}


def to_qapi(config: BackendConfig) -> dict[str, Any]:
    """Typed config -> QAPI ChardevBackend dict (only the fields that were given)."""
    data: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        if isinstance(value, InetAddress | UnixAddress | FdAddress):
            value = _addr_to_qapi(value)
        data[_QAPI_NAMES.get(f.name, f.name)] = value
    return {"type": config.type, "data": data}


def _esc(value: str) -> str:
    return value.replace(",", ",,")


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def to_chardev_string(spec: ChardevSpec) -> str:
    """Typed config -> a -chardev string that parse_chardev() reads back identically."""
    c = spec.backend
    if spec.id is None:
        raise ChardevError("chardev: no id specified")
    parts = [c.type, f"id={_esc(spec.id)}"]

    def add(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            parts.append(f"{key}={_onoff(value)}")
        elif isinstance(value, int):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={_esc(value)}")

    if isinstance(c, FileConfig):
        add("path", c.out)
        add("input-path", c.in_)
        add("append", c.append)
    elif isinstance(c, PipeConfig | SerialConfig):
        add("path", c.device)
    elif isinstance(c, StdioConfig):
        add("signal", c.signal)
    elif isinstance(c, RingbufConfig):
        add("size", c.size)
    elif isinstance(c, MuxConfig):
        add("chardev", c.chardev)
    elif isinstance(c, PtyConfig):
        add("history", c.history)
    elif isinstance(c, SocketConfig):
        a = c.addr
        if isinstance(a, InetAddress):
            add("host", a.host)
            add("port", a.port)
            add("numeric", a.numeric)
            add("to", a.to)
            add("ipv4", a.ipv4)
            add("ipv6", a.ipv6)
        elif isinstance(a, UnixAddress):
            add("path", a.path)
            add("abstract", a.abstract)
            add("tight", a.tight)
        else:
            add("fd", a.str)
        add("server", c.server)
        add("wait", c.wait)
        add("nodelay", c.nodelay)
        add("telnet", c.telnet)
        add("tn3270", c.tn3270)
        add("websocket", c.websocket)
        add("reconnect", c.reconnect)
        add("reconnect-ms", c.reconnect_ms)
        add("tls-creds", c.tls_creds)
        add("history", c.history)
    elif isinstance(c, UdpConfig):
        add("host", c.remote.host)
        add("port", c.remote.port)
        add("ipv4", c.remote.ipv4)
        add("ipv6", c.remote.ipv6)
        if c.local is not None:
            add("localaddr", c.local.host)
            add("localport", c.local.port)
    add("logfile", c.logfile)
    add("logappend", c.logappend)
    add("logtimestamp", c.logtimestamp)
    if spec.mux:
        parts.append("mux=on")
    return ",".join(parts)
