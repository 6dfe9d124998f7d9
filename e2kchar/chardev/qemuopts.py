"""The option machinery every backend's option table uses: QemuOpts values, QAPI objects.

A backend module describes its options with a ``BackendOptions`` (keys, -chardev and QAPI
conversion, legacy -serial syntax) next to its Chardev class; e2kchar.chardev.spec drives
all of them. Every failure is a ChardevError worded as QEMU words it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .configbase import BackendConfig, FdAddress, InetAddress, SocketAddress, UnixAddress
from .types import ChardevError

if TYPE_CHECKING:
    from .base import Chardev

BOOL = "bool"
NUM = "number"
SIZE = "size"
STR = "string"

_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")
_SIZE_SUFFIX = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
                "p": 1 << 50, "e": 1 << 60}

Opts = dict[str, str]
#: split_opts(text, implied) with every -chardev key known (for legacy syntax hooks)
Split = Callable[[str, str | None], Opts]


class NotLegacySyntax(Exception):
    """Raised by a legacy hook for text it owns but cannot parse ("'X' is not a valid
    char driver", worded by the driver with the whole original text)."""


@dataclass(frozen=True)
class BackendOptions:
    """One backend type as the option layer sees it (pyserial's one module per URL
    handler: everything about the backend's syntax sits next to the backend)."""

    #: the config dataclass (its TYPE is the backend's QAPI name)
    config: type[BackendConfig]
    #: the Chardev class that opens it
    chardev: type[Chardev[Any]]
    #: its -chardev keys and kinds (QEMU checks every key against the union of all)
    keys: Mapping[str, str]
    #: -chardev options -> config; common holds logfile/logappend/logtimestamp
    from_opts: Callable[[Opts, dict[str, Any]], BackendConfig]
    #: QAPI data (a reader of {"type": ..., "data": {...}}'s data) -> config
    from_qapi: Callable[[QapiReader, dict[str, Any], str], BackendConfig]
    #: config -> (key, value) pairs of a -chardev string (None values are left out)
    to_opts: Callable[[Any], list[tuple[str, Any]]]
    #: legacy -serial syntax: (text after any "mon:", mon, split) -> options or None
    legacy: Callable[[str, bool, Split], Opts | None] | None = None

    @property
    def name(self) -> str:
        return self.config.TYPE


# ---------------------------------------------------------------------------------------
# QemuOpts


def split_opts(text: str, implied: str | None, known: Mapping[str, str]) -> Opts:
    """QemuOpts: 'a,k=v,flag,noflag' -> dict; ',,' escapes a comma; last key wins."""
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    result: Opts = {}
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


def opt_bool(opts: Opts, key: str) -> bool | None:
    if key not in opts:
        return None
    v = opts[key]
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ChardevError(f"Parameter '{key}' expects 'on' or 'off'")


def opt_num(opts: Opts, key: str) -> int | None:
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


def opt_size(opts: Opts, key: str) -> int | None:
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


def typecheck(opts: Opts, known: Mapping[str, str]) -> None:
    """Check every given value against its key's kind (QEMU does, used or not)."""
    for key, kind in known.items():
        if key in opts:
            if kind == BOOL:
                opt_bool(opts, key)
            elif kind == NUM:
                opt_num(opts, key)
            elif kind == SIZE:
                opt_size(opts, key)


# ---------------------------------------------------------------------------------------
# QAPI objects


class QapiReader:
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
            "array": isinstance(value, list),
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


def qapi_addr(obj: Any, where: str) -> SocketAddress:
    """A QAPI SocketAddressLegacy {"type": inet|unix|fd, "data": {...}}."""
    q = QapiReader(obj, where)
    kind = q.take("type", "string", True)
    data = QapiReader(q.take("data", "object", True), f"{where}.data")
    q.done()
    addr: SocketAddress
    if kind == "inet":
        addr = InetAddress(host=data.take("host", "string", True),
                           port=data.take("port", "string", True),
                           numeric=data.take("numeric", "boolean"), to=data.take("to", "integer"),
                           ipv4=data.take("ipv4", "boolean"), ipv6=data.take("ipv6", "boolean"))
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


def addr_to_qapi(addr: SocketAddress) -> dict[str, Any]:
    data: dict[str, Any]
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
