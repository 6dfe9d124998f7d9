"""The `struct` form of a construct declaration, for code that must not import construct.

A layout is declared once, with construct (devices/layouts.py, e2kchar/machine/headers.py).
tools/gen_packed.py derives a `Packed` from each declaration into a generated module, and
tests/test_packed.py regenerates it and checks that both build and parse the same bytes.
Start-up (ELF, boot_info, device tree, PCI header) and the virtqueue hot path use the
generated form, so a plain run never imports construct (docs/architecture.md).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import Any

from e2kchar.errors import E2kcharError


class PackedError(E2kcharError, ValueError):
    """The bytes or values do not fit the layout (too short, a constant differs, an array
    or a byte string of the wrong size)."""


def _byte_fields(fmt: str, fields: tuple[tuple[str, int], ...]) -> Iterator[tuple[str, int]]:
    """(name, size) of each "Ns" field of a format whose items are `fields`."""
    items: list[int] = []  # per struct item: its size if it is bytes, else 0
    digits = ""
    for code in fmt.lstrip("<>!=@"):
        if code.isdigit():
            digits += code
            continue
        n, digits = int(digits or "1"), ""
        if code == "s":
            items.append(n)
        elif code != "x":
            items.extend([0] * n)
    at = 0
    for name, count in fields:
        if count == 1 and items[at]:
            yield name, items[at]
        at += count


class Fields(dict[str, Any]):
    """A parsed layout: field name -> value, also as attributes (as construct's Container)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Packed:
    """A fixed layout: one struct format, its fields in order, constants and strings.

    Field names are flat (a nested Struct's fields are "outer.inner"); an array field takes
    and gives a list of `count` items; padding has no name. Constants are filled in by
    `build` and checked by `parse`; a text field (PaddedString) is encoded and NUL-padded.
    """

    __slots__ = ("struct", "size", "fields", "consts", "texts", "_bytes")

    def __init__(self, fmt: str, fields: tuple[tuple[str, int], ...],
                 consts: Mapping[str, Any] | None = None,
                 texts: Mapping[str, str] | None = None) -> None:
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        #: (name, count): count 1 is a scalar, more is an array of that many items
        self.fields = fields
        self.consts: dict[str, Any] = dict(consts or {})
        #: field name -> encoding (a NUL-padded string)
        self.texts: dict[str, str] = dict(texts or {})
        #: bytes and text field -> its size: struct would pad or cut what construct refuses
        self._bytes = dict(_byte_fields(fmt, fields))

    def build(self, values: Mapping[str, Any]) -> bytes:
        """The bytes of `values` (constants may be left out)."""
        flat: list[Any] = []
        for name, count in self.fields:
            value = self.consts[name] if name in self.consts else values[name]
            if name in self.texts:
                value = value.encode(self.texts[name])
            if name in self._bytes:
                size = self._bytes[name]
                if name in self.texts and len(value) > size:
                    raise PackedError(f"{name}: at most {size} bytes, got {len(value)}")
                if name not in self.texts and len(value) != size:
                    raise PackedError(f"{name}: {size} bytes expected, got {len(value)}")
            if count == 1:
                flat.append(value)
            else:
                if len(value) != count:
                    raise PackedError(f"{name}: {count} items expected, got {len(value)}")
                flat.extend(value)
        return self.struct.pack(*flat)

    def parse(self, data: bytes | bytearray | memoryview, offset: int = 0) -> Fields:
        """The fields at `offset`. PackedError when the data is too short or a constant
        differs (a caller that must say what is wrong parses with the declaration)."""
        if len(data) - offset < self.size:
            raise PackedError(f"{self.size} bytes expected, {max(0, len(data) - offset)} found")
        items = self.struct.unpack_from(data, offset)
        out = Fields()
        i = 0
        for name, count in self.fields:
            value: Any = items[i] if count == 1 else list(items[i:i + count])
            i += count
            if name in self.consts and value != self.consts[name]:
                raise PackedError(f"{name}: {self.consts[name]!r} expected, {value!r} found")
            if name in self.texts:
                value = value.rstrip(b"\0").decode(self.texts[name])
            out[name] = value
        return out

    def __repr__(self) -> str:
        return f"Packed({self.struct.format!r}, {self.fields!r})"


def check_moved(owner: str, name: str, names: tuple[str, ...]) -> None:
    """For a module `__getattr__` that serves declarations moved to a module of their own
    (the old import path keeps working without importing construct before it is asked
    for): AttributeError unless `name` is one of them. Check before importing: the import
    system asks for `__path__` and the like."""
    if name not in names:
        raise AttributeError(f"module {owner!r} has no attribute {name!r}")
