"""The struct forms the start-up path and the virtqueue hot path use are the construct
declarations' own: the generated modules are what tools/gen_packed.py writes today, and
each form builds and parses the same bytes as its declaration (docs/architecture.md)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from construct import Container, ListContainer
from e2kchar.devices.packedform import Packed, PackedError
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> Any:
    if "gen_packed" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gen_packed", ROOT / "tools" / "gen_packed.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules["gen_packed"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["gen_packed"]


@pytest.mark.parametrize("module", ["e2kchar.devices.layouts", "e2kchar.machine.headers"])
def test_the_generated_module_is_what_the_declarations_give(module: str) -> None:
    path, _import = _tool().TARGETS[module]
    assert path.read_text() == _tool().render(module), \
        f"{path.name} is out of date: run tools/gen_packed.py"


def _pairs() -> list[tuple[str, Any, Packed]]:
    out = []
    for module in _tool().TARGETS:
        decl = importlib.import_module(module)
        generated = importlib.import_module(module + "_packed")
        for decl_name, packed_name in decl.PACKED.items():
            out.append((decl_name, getattr(decl, decl_name), getattr(generated, packed_name)))
    return out


PAIRS = _pairs()


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """construct's parse result with flat, dotted names (as Packed gives it)."""
    if not isinstance(value, Container):
        return {"value": value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key.startswith("_"):
            continue
        if isinstance(item, Container):
            out.update(_flat(item, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(item) if isinstance(item, ListContainer) else item
    return out


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *outer, last = key.split(".")
        at = out
        for part in outer:
            at = at.setdefault(part, {})
        at[last] = value
    return out


@pytest.mark.parametrize("name,decl,form", PAIRS, ids=[p[0] for p in PAIRS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_each_form_builds_and_parses_as_its_declaration(name: str, decl: Any, form: Packed,
                                                        data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=form.size, max_size=form.size))
    items = list(form.struct.unpack(raw))
    values: dict[str, Any] = {}
    for field, count in form.fields:
        values[field] = items[0] if count == 1 else items[:count]
        del items[:count]
        if field in form.texts:
            values[field] = data.draw(st.text(st.characters(min_codepoint=1, max_codepoint=0x7F),
                                              max_size=32))
    for field in form.consts:
        del values[field]
    built = form.build(values)
    assert built == decl.build(values["value"] if list(values) == ["value"] else _nested(values))
    assert form.parse(built) == _flat(decl.parse(built))
    assert form.size == decl.sizeof()


def test_a_form_refuses_what_its_declaration_refuses() -> None:
    from construct import ConstructError

    from e2kchar.machine import headers
    from e2kchar.machine.headers_packed import BOOT_INFO, ELF64_HEADER, PCI_TYPE0

    with pytest.raises(PackedError, match="64 bytes expected, 14 found"):
        ELF64_HEADER.parse(b"\x7fELF" + bytes(10))
    with pytest.raises(PackedError, match=re.escape(r"ident.magic: b'\x7fELF' expected, b'\x7fELG'")):
        ELF64_HEADER.parse(b"\x7fELG" + bytes(ELF64_HEADER.size))
    with pytest.raises(PackedError, match="signature: 32902 expected, 0 found"):
        BOOT_INFO.parse(bytes(BOOT_INFO.size))
    assert ELF64_HEADER.parse(bytes(2) + ELF64_HEADER.build(
        {name: 0 if name != "ident.pad" else bytes(9) for name, _ in ELF64_HEADER.fields}),
        2)["e_entry"] == 0
    values: dict[str, Any] = {name: 0 if n == 1 else [0] * n for name, n in PCI_TYPE0.fields}
    values["bars"] = [0] * 5
    with pytest.raises(PackedError, match="bars: 6 items expected, got 5"):
        PCI_TYPE0.build(values)
    # what struct would pad or cut silently, construct refuses: so does the struct form
    values = {name: 0 for name, _ in BOOT_INFO.fields if name not in BOOT_INFO.consts}
    values["cmdline"] = "x" * 257
    with pytest.raises(PackedError, match="cmdline: at most 256 bytes, got 257"):
        BOOT_INFO.build(values)
    with pytest.raises(ConstructError):
        headers.BootInfo.build(values)
    for n in (256, 3):  # a text that fits is NUL-padded, as PaddedString does
        values["cmdline"] = "x" * n
        assert BOOT_INFO.build(values) == headers.BootInfo.build(values)
    values = {name: 0 for name, _ in ELF64_HEADER.fields if name not in ELF64_HEADER.consts}
    values["ident.pad"] = bytes(8)
    with pytest.raises(PackedError, match="ident.pad: 9 bytes expected, got 8"):
        ELF64_HEADER.build(values)
    with pytest.raises(ConstructError):
        headers.Elf64Header.build(_nested(values))


def test_a_bad_elf_is_reported_in_constructs_words() -> None:
    from construct import ConstructError

    from e2kchar.machine.elf import ElfError, parse_elf
    from e2kchar.machine.headers import Elf64Header

    for data in (b"\x7fELF\x02\x01", b"\x7fELX" + bytes(100)):
        with pytest.raises(ConstructError) as want:
            Elf64Header.parse(data)
        with pytest.raises(ElfError) as got:
            parse_elf(data, name="x.elf")
        assert str(got.value) == f"x.elf: not a valid ELF file ({want.value})"


def test_the_old_names_of_the_declarations_still_import() -> None:
    from e2kchar.devices import layouts, virtqueue

    from e2kchar.machine import elf, fdt, headers, layout, pci

    assert elf.Elf64Header is headers.Elf64Header and elf.Elf64Phdr is headers.Elf64Phdr
    assert layout.BootInfo is headers.BootInfo and fdt.FdtHeader is headers.FdtHeader
    assert pci.Type0Header is headers.Type0Header and virtqueue.packed is layouts.packed
    assert virtqueue.VringDesc is layouts.VringDesc and virtqueue.U16 is layouts.U16
    assert layout.CMDLINE_SIZE == headers.CMDLINE_SIZE and fdt.FDT_MAGIC == headers.FDT_MAGIC
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = elf.Nope


def test_struct_form_refuses_what_struct_cannot_say() -> None:
    from construct import Array, Int16ub, Int16ul, PascalString, Struct, this
    from e2kchar.devices.layouts import struct_form

    with pytest.raises(TypeError, match="no fixed struct form"):
        struct_form(Struct("s" / PascalString(Int16ul, "ascii")))
    with pytest.raises(TypeError, match="no fixed struct form"):
        struct_form(Struct("n" / Int16ul, "a" / Array(this.n, Int16ul)))
    with pytest.raises(TypeError, match="mixed byte order"):
        struct_form(Struct("a" / Int16ul, "b" / Int16ub))
