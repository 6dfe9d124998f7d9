"""The devices' binary layouts, declared once with construct: virtqueue rings (virtio 1.x
section 2.7) and virtio-console's config space and control messages.

Nothing imports this module on the way to the first guest byte: the hot path and start-up
use the `struct` forms tools/gen_packed.py derives from these declarations into
devices/layouts_packed.py (`struct_form`, checked by tests/test_packed.py).
"""

from __future__ import annotations

import struct
from typing import Any

from construct import (
    Array,
    Bytes,
    Const,
    Construct,
    FixedSized,
    FormatField,
    Int16ul,
    Int32ul,
    Int64ul,
    Padded,
    Pass,
    Renamed,
    StringEncoded,
    Struct,
    this,
)

# ---- virtqueue -------------------------------------------------------------------------

#: one descriptor table entry
VringDesc = Struct("addr" / Int64ul, "len" / Int32ul, "flags" / Int16ul, "next" / Int16ul)
#: driver area: flags, idx, ring[num], used_event (EVENT_IDX); parse with num=N
VringAvail = Struct("flags" / Int16ul, "idx" / Int16ul, "ring" / Array(this._params.num, Int16ul),
                    "used_event" / Int16ul)
VringUsedElem = Struct("id" / Int32ul, "len" / Int32ul)
#: device area: flags, idx, ring[num] of {id, len}, avail_event (EVENT_IDX); parse with num=N
VringUsed = Struct("flags" / Int16ul, "idx" / Int16ul,
                   "ring" / Array(this._params.num, VringUsedElem), "avail_event" / Int16ul)
RingHeader = Struct("flags" / Int16ul, "idx" / Int16ul)
U16 = Int16ul

# ---- virtio-console ----------------------------------------------------------------------

ConsoleConfig = Struct("cols" / Int16ul, "rows" / Int16ul, "max_nr_ports" / Int32ul,
                       "emerg_wr" / Int32ul)
ControlMsg = Struct("id" / Int32ul, "event" / Int16ul, "value" / Int16ul)
ConsoleResize = Struct("cols" / Int16ul, "rows" / Int16ul)

#: declaration name -> name of its struct form in devices/layouts_packed.py
PACKED = {"VringDesc": "VRING_DESC", "VringUsedElem": "VRING_USED_ELEM", "U16": "U16",
          "RingHeader": "RING_HEADER", "ConsoleConfig": "CONSOLE_CONFIG",
          "ControlMsg": "CONTROL_MSG", "ConsoleResize": "CONSOLE_RESIZE"}


def packed(layout: Construct) -> struct.Struct:
    """The struct form of a fixed layout of plain fields (a FormatField, or a Struct of
    them): the hot path unpacks with it, the construct declaration stays the only one."""
    fields = layout.subcons if isinstance(layout, Struct) else [layout]
    order, codes = "", ""
    for sub in fields:
        sub = sub.subcon if isinstance(sub, Renamed) else sub
        if not isinstance(sub, FormatField):
            raise TypeError(f"{sub!r} is not a fixed-size plain field")
        if order and sub.fmtstr[0] != order:
            raise TypeError("fields of mixed byte order")
        order, codes = sub.fmtstr[0], codes + sub.fmtstr[1:]
    return struct.Struct(order + codes)


class _Form:
    """What struct_form collects while it walks a declaration."""

    def __init__(self) -> None:
        self.order = ""
        self.codes = ""
        self.fields: list[tuple[str, int]] = []
        self.consts: dict[str, Any] = {}
        self.texts: dict[str, str] = {}

    def code(self, fmtstr: str) -> str:
        if self.order and fmtstr[0] != self.order:
            raise TypeError("fields of mixed byte order")
        self.order = fmtstr[0]
        return fmtstr[1:]

    def add(self, name: str | None, sub: Any) -> None:
        if isinstance(sub, Renamed):
            self.add(sub.name, sub.subcon)
        elif isinstance(sub, Struct):
            prefix = f"{name}." if name else ""
            for inner in sub.subcons:
                named = isinstance(inner, Renamed)
                self.add(prefix + inner.name if named else None,
                         inner.subcon if named else inner)
        elif isinstance(sub, Padded) and sub.subcon is Pass and \
                isinstance(sub.length, int):
            self.codes += f"{sub.length}x"
        elif name is None:
            raise TypeError(f"{sub!r}: a field without a name")
        elif isinstance(sub, Const):
            self.consts[name] = sub.value
            self.add(name, sub.subcon)
        elif isinstance(sub, FormatField):
            self.codes += self.code(sub.fmtstr)
            self.fields.append((name, 1))
        elif isinstance(sub, Bytes) and isinstance(sub.length, int):
            self.codes += f"{sub.length}s"
            self.fields.append((name, 1))
        elif isinstance(sub, StringEncoded) and isinstance(sub.subcon, FixedSized) and \
                isinstance(sub.subcon.length, int):
            self.codes += f"{sub.subcon.length}s"
            self.fields.append((name, 1))
            self.texts[name] = sub.encoding
        elif isinstance(sub, Array) and isinstance(sub.count, int) and \
                isinstance(sub.subcon, FormatField):
            self.codes += f"{sub.count}{self.code(sub.subcon.fmtstr)}"
            self.fields.append((name, sub.count))
        else:
            raise TypeError(f"{name}: {sub!r} has no fixed struct form")


def struct_form(layout: Construct) -> tuple[str, tuple[tuple[str, int], ...],
                                              dict[str, Any], dict[str, str]]:
    """(format, fields, constants, texts) of a fixed layout: the arguments of a `Packed`.

    Plain fields, constants, padding, fixed bytes, fixed strings, arrays of a fixed count
    and nested structs; anything else (a size taken from the context) raises TypeError."""
    form = _Form()
    form.add(None, layout) if isinstance(layout, Struct) else form.add("value", layout)
    return (form.order or "<") + form.codes, tuple(form.fields), form.consts, form.texts
