"""QEMU option syntax for character devices: one driver over the backends' option tables.

Three spellings map to one typed config:
- `-chardev` strings: ``backend,id=x,key=value`` (QemuOpts rules: bare ``key`` = on,
  bare ``nokey`` = off, ``,,`` is a literal comma, the last key wins);
- the legacy ``-serial`` grammar (``mon:stdio``, ``file:PATH``, ``tcp:H:P,server``, ...);
- the QAPI dict ``{"type": ..., "data": {...}}`` used by QMP chardev-add / chardev-change.

What a backend accepts, and how each spelling maps to its config, is in the backend's
module (its ``OPTIONS``, a qemuopts.BackendOptions); this module only walks the table.
Every failure is a ChardevError; nothing here has side effects. e2kchar.options is the
public face of this module.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .configbase import BackendConfig, FdAddress, InetAddress, UnixAddress
from .qemuopts import (
    BOOL,
    NUM,
    SIZE,
    STR,
    BackendOptions,
    NotLegacySyntax,
    Opts,
    QapiReader,
    addr_to_qapi,
    opt_bool,
    typecheck,
)
from .qemuopts import split_opts as _split_known
from .types import ChardevError

#: every built-in backend by QAPI type name -> (module under e2kchar.chardev.backends, the
#: name of its option table there), in the order query-chardev-backends lists them and the
#: legacy -serial hooks are tried. Naming the module instead of importing it keeps start-up
#: from loading every backend (socket pulls in construct, pyserial, email ...): a backend's
#: module is imported the first time its table is looked up.
_BACKEND_MODULES: dict[str, tuple[str, str]] = {
    "null": ("null", "OPTIONS"),
    "file": ("file", "OPTIONS"),
    "pipe": ("pipe", "OPTIONS"),
    "stdio": ("stdio", "OPTIONS"),
    "ringbuf": ("ringbuf", "OPTIONS"),
    "memory": ("ringbuf", "MEMORY_OPTIONS"),
    "mux": ("mux", "OPTIONS"),
    "testdev": ("testdev", "OPTIONS"),
    "socket": ("socket", "OPTIONS"),
    "udp": ("udp", "OPTIONS"),
    "pty": ("pty", "OPTIONS"),
    "serial": ("serial", "OPTIONS"),
    "rfc2217": ("rfc2217", "OPTIONS"),
    "hub": ("hub", "OPTIONS"),
}


class _Backends(Mapping[str, BackendOptions]):
    """The built-in backends' option tables, each module imported on its first lookup."""

    def __init__(self, modules: Mapping[str, tuple[str, str]]) -> None:
        self._modules = modules
        self._loaded: dict[str, BackendOptions] = {}

    def __getitem__(self, name: str) -> BackendOptions:
        found = self._loaded.get(name)
        if found is None:
            module, attr = self._modules[name]
            try:
                found = getattr(importlib.import_module(f"{__package__}.backends.{module}"),
                                attr)
            except OSError as exc:  # e.g. out of fds while loading the module's source
                raise ChardevError(f"chardev backend '{name}' could not be loaded: "
                                   f"{exc.strerror or exc}") from None
            self._loaded[name] = found
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


#: every built-in backend by QAPI type name (a read-only mapping; values load lazily)
BACKENDS: Mapping[str, BackendOptions] = _Backends(_BACKEND_MODULES)

#: CLI aliases for backend names (QEMU: tty -> serial).
ALIASES = {"tty": "serial"}

#: what a QEMU id may look like: a letter, then letters, digits, '_', '.', '-'
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*\Z")

#: keys every backend takes (read by this module, not by the backends' tables)
_COMMON_KEYS = ("backend", "id", "mux", "logfile", "logappend", "logtimestamp")
#: keys QEMU accepts for backends e2kchar does not have (vc, spice, braille, tls)
_FOREIGN_KEYS = ("tls-authz", "width", "height", "cols", "rows", "name", "debug")


class _Keys(dict[str, str]):
    """The -chardev keys, plus a hub's numbered members (chardevs.0, chardevs.1, ...)."""

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        if not isinstance(key, str) or not key.startswith("chardevs."):
            return False
        BACKENDS["hub"]  # noqa: B018 (only a hub takes these keys: load it, or ChardevError)
        from .backends import hub

        return hub.MEMBER_KEY.match(key) is not None


#: every -chardev key and its kind, in the order of QEMU's one -chardev key list (with
#: several bad values, the first one in this order is the one reported). QEMU checks keys
#: against this union of all backends' keys; declaring it here keeps parsing from loading
#: every backend. Each backend's own table lists its subset (check_tables() compares them).
KEYS: dict[str, str] = _Keys({
    "backend": STR, "id": STR, "path": STR, "input-path": STR, "host": STR, "port": STR,
    "localaddr": STR, "localport": STR, "to": NUM, "ipv4": BOOL, "ipv6": BOOL,
    "numeric": BOOL, "wait": BOOL, "server": BOOL, "delay": BOOL, "nodelay": BOOL,
    "reconnect": NUM, "reconnect-ms": NUM, "telnet": BOOL, "tn3270": BOOL,
    "websocket": BOOL, "tls-creds": STR, "tls-authz": STR, "width": NUM, "height": NUM,
    "cols": NUM, "rows": NUM, "mux": BOOL, "signal": BOOL, "name": STR, "debug": NUM,
    "size": SIZE, "chardev": STR, "append": BOOL, "logfile": STR, "logappend": BOOL,
    "logtimestamp": BOOL, "fd": STR, "abstract": BOOL, "tight": BOOL, "history": SIZE,
})


def check_tables() -> None:
    """Assert that KEYS is exactly the common, foreign and every backend's keys, each of
    one kind (imports every backend: for tests, not for start-up)."""
    declared: dict[str, str] = {}
    for opts in BACKENDS.values():
        for key, kind in opts.keys.items():
            if declared.setdefault(key, kind) != kind:
                raise AssertionError(f"-chardev key {key!r} declared with two kinds")
            if KEYS.get(key) != kind:
                raise AssertionError(f"-chardev key {key!r} ({kind}) is not in spec.KEYS")
    extra = set(KEYS) - set(declared) - set(_COMMON_KEYS) - set(_FOREIGN_KEYS)
    if extra:
        raise AssertionError(f"spec.KEYS has keys no backend takes: {sorted(extra)}")
    for name, opts in BACKENDS.items():
        if opts.name != name:
            raise AssertionError(f"backend table {name!r} opens {opts.name!r}")


@dataclass
class ChardevSpec:
    """A parsed chardev: its id (None if not given), typed backend config and mux flag."""

    id: str | None
    backend: BackendConfig
    mux: bool = False


# ---------------------------------------------------------------------------------------
# -chardev


def check_id(ident: str) -> str:
    if not isinstance(ident, str) or not ID_RE.match(ident):
        raise ChardevError("Parameter 'id' expects an identifier")
    return ident


def split_opts(text: str, implied: str | None = None,
               keys: dict[str, str] | None = None) -> Opts:
    """QemuOpts: 'a,k=v,flag,noflag' -> dict; ',,' escapes a comma; last key wins.

    keys lists the accepted keys and their kinds (default: the -chardev keys).
    """
    return _split_known(text, implied, KEYS if keys is None else keys)


def _common(opts: Opts) -> dict[str, Any]:
    return {
        "logfile": opts.get("logfile"),
        "logappend": opt_bool(opts, "logappend"),
        "logtimestamp": opt_bool(opts, "logtimestamp"),
    }


def _config_from_opts(backend: str, opts: Opts) -> BackendConfig:
    backend = ALIASES.get(backend, backend)
    common = _common(opts)
    found = BACKENDS.get(backend)
    if found is None:
        raise ChardevError(f"'{backend}' is not a valid char driver name")
    return found.from_opts(opts, common)


def parse_chardev(text: str) -> ChardevSpec:
    """Parse a -chardev argument ('backend,id=x,...')."""
    opts = split_opts(text, implied="backend")
    typecheck(opts, KEYS)
    backend = opts.get("backend")
    ident = opts.get("id")
    if ident is None:
        raise ChardevError("chardev: no id specified")
    check_id(ident)
    if not backend:
        raise ChardevError(f'chardev: "{ident}" missing backend')
    config = _config_from_opts(backend, opts)
    return ChardevSpec(ident, config, bool(opt_bool(opts, "mux")))


# ---------------------------------------------------------------------------------------
# Legacy -serial grammar (qemu_chr_parse_compat)


_UNSUPPORTED_EXACT = ("msmouse", "wctablet", "braille")
_UNSUPPORTED_PREFIX = ("vc", "con:", "COM", "/dev/parport", "/dev/ppi")


def _split_all(text: str, implied: str | None) -> Opts:
    return split_opts(text, implied)


def parse_legacy(text: str, label: str | None = None) -> ChardevSpec:
    """Parse the -serial / -monitor shorthand; label becomes the chardev id."""
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    if label is not None:
        check_id(label)
    orig = text
    mon = text.startswith("mon:")
    if mon:
        text = text[4:]
    mux = mon
    # each backend's hook knows only its own prefixes; the ones QEMU has and we do not
    # (a parallel port under /dev/ among them) are turned away first
    if text in _UNSUPPORTED_EXACT or text.startswith(_UNSUPPORTED_PREFIX):
        raise ChardevError(f"'{orig}' is not a valid char driver")
    opts: Opts | None = None
    for backend in BACKENDS.values():
        if backend.legacy is None:
            continue
        try:
            opts = backend.legacy(text, mon, _split_all)
        except NotLegacySyntax:
            raise ChardevError(f"'{orig}' is not a valid char driver") from None
        if opts is not None:
            break
    if opts is None:
        raise ChardevError(f"'{orig}' is not a valid char driver")
    if "id" in opts:
        raise ChardevError("Unexpected 'id' parameter")
    if "mux" in opts:
        mux = mux or bool(opt_bool(opts, "mux"))
    typecheck(opts, KEYS)
    config = _config_from_opts(opts["backend"], opts)
    return ChardevSpec(label, config, mux)


def parse_spec(text: str, label: str | None = None) -> ChardevSpec:
    """A -chardev string when its first token names a backend, else the legacy grammar."""
    if not isinstance(text, str):
        raise ChardevError("option string expected")
    first = text.split(",", 1)[0]
    if first in BACKENDS or first in ALIASES or first == "help":
        opts = split_opts(text, implied="backend")
        if label is not None:
            if "id" in opts and opts["id"] != label:
                raise ChardevError("Unexpected 'id' parameter")
            opts["id"] = label
        typecheck(opts, KEYS)
        ident = opts.get("id")
        if ident is None:
            raise ChardevError("chardev: no id specified")
        check_id(ident)
        config = _config_from_opts(opts["backend"], opts)
        return ChardevSpec(ident, config, bool(opt_bool(opts, "mux")))
    return parse_legacy(text, label)


# ---------------------------------------------------------------------------------------
# QAPI dicts


def from_qapi(backend: Any, where: str = "backend") -> BackendConfig:
    """QAPI ChardevBackend {"type": ..., "data": {...}} -> typed config (strict)."""
    q = QapiReader(backend, where)
    kind = q.take("type", "string", True)
    data_obj = q.take("data", "object")
    q.done()
    found = BACKENDS.get(kind)
    if found is None:
        raise ChardevError(f"'{kind}' is not a valid char driver name")
    d = QapiReader(data_obj if data_obj is not None else {}, f"{where}.data", data_obj is None)
    common = {
        "logfile": d.take("logfile", "string"),
        "logappend": d.take("logappend", "boolean"),
        "logtimestamp": d.take("logtimestamp", "boolean"),
    }
    config = found.from_qapi(d, common, where)
    d.done()
    return config


def to_qapi(config: BackendConfig) -> dict[str, Any]:
    """Typed config -> QAPI ChardevBackend dict (only the fields that were given)."""
    data: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        if isinstance(value, InetAddress | UnixAddress | FdAddress):
            value = addr_to_qapi(value)
        # in_ -> in, reconnect_ms -> reconnect-ms, tls_creds -> tls-creds
        data[f.name.rstrip("_").replace("_", "-")] = value
    return {"type": config.type, "data": data}


def _esc(value: str) -> str:
    return value.replace(",", ",,")


def to_chardev_string(spec: ChardevSpec) -> str:
    """Typed config -> a -chardev string that parse_chardev() reads back identically."""
    c = spec.backend
    if spec.id is None:
        raise ChardevError("chardev: no id specified")
    parts = [c.type, f"id={_esc(spec.id)}"]
    found = BACKENDS.get(c.type)
    pairs = found.to_opts(c) if found is not None else []
    pairs += [("logfile", c.logfile), ("logappend", c.logappend),
              ("logtimestamp", c.logtimestamp)]
    for key, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"{key}={'on' if value else 'off'}")
        elif isinstance(value, int):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}={_esc(value)}")
    if spec.mux:
        parts.append("mux=on")
    return ",".join(parts)
