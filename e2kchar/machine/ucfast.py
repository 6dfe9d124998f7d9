"""unicorn registrations that bypass the Python binding's wrappers (ctypes callbacks
registered directly): its two wrapper layers cost about a third of each MMIO access.

This is the one module that touches the binding's internals (`uc._uch`, the engine
handle); each helper falls back to the public API if the binding differs. The ctypes
callback objects must live as long as the engine: they are kept here, per Uc.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from typing import Any

from unicorn import UC_HOOK_INTR, UC_HOOK_TLB_FILL
from unicorn.unicorn_py3.unicorn import Uc, UcError

#: Uc -> the ctypes callbacks registered on it (dropped with the Uc)
_keep: weakref.WeakKeyDictionary[Uc, list[Any]] = weakref.WeakKeyDictionary()


def _keep_alive(uc: Uc, *objs: Any) -> None:
    _keep.setdefault(uc, []).extend(objs)


#: the MMIO callbacks' C types as ucfast declares them: unicorn's uc_cb_mmio_read_t and
#: uc_cb_mmio_write_t without the trailing user_data (in the C calling conventions of
#: unicorn's hosts the caller passes the arguments in registers and cleans up, so a callee
#: that declares fewer ignores the last), and the engine handle as its low byte: ctypes
#: makes every declared argument a Python object on every access, a pointer a new int
#: each time, a byte a cached one (BENCHMARKS.md, "Second round")
_MMIO_READ_T = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_uint64, ctypes.c_uint)
_MMIO_WRITE_T = ctypes.CFUNCTYPE(None, ctypes.c_ubyte, ctypes.c_uint64, ctypes.c_uint,
                                 ctypes.c_uint64)


def mmio_map(uc: Uc, base: int, size: int, rd: Callable[[int, int, int], int],
             wr: Callable[[int, int, int, int], None]) -> None:
    """mmio_map with callbacks called as (handle, offset, size[, value]); `handle` means
    nothing (a byte of the engine pointer, or 0). They must never raise."""
    try:
        from unicorn.unicorn_py3 import unicorn as ucmod
        rd_ptr, wr_ptr = _MMIO_READ_T(rd), _MMIO_WRITE_T(wr)
        status = ucmod.uclib.uc_mmio_map(uc._uch, base, size, rd_ptr, None, wr_ptr, None)
    except (ImportError, AttributeError, TypeError):
        uc.mmio_map(base, size, lambda u, o, s, d: rd(0, o, s), None,
                    lambda u, o, s, v, d: wr(0, o, s, v), None)
        return
    if status != 0:
        raise UcError(status)
    _keep_alive(uc, rd_ptr, wr_ptr)


def hook_tlb_fill(uc: Uc, raw: Callable[..., bool], slow: Callable[..., bool]) -> None:
    """UC_HOOK_TLB_FILL over the whole address space, `raw` called as (handle, vaddr,
    access, entry pointer, ud); `slow` is the public API's callback for the fallback."""
    _hook_raw(uc, UC_HOOK_TLB_FILL, "HOOK_TLB_FILL_CFUNC", raw, slow)


def hook_intr(uc: Uc, raw: Callable[[Any, int, Any], None]) -> None:
    """UC_HOOK_INTR with `raw` called as (handle, intno, ud): an idle Linux takes this hook
    for every `rdtime` (docs/idle.md). It must never raise."""
    _hook_raw(uc, UC_HOOK_INTR, "HOOK_INTR_CFUNC", raw, raw)


def _hook_raw(uc: Uc, kind: int, cfunc: str, raw: Callable[..., Any],
              slow: Callable[..., Any]) -> None:
    try:
        from unicorn.unicorn_py3 import unicorn as ucmod
        fptr = getattr(ucmod, cfunc)(raw)
        handle = ctypes.c_size_t()  # uc_hook_h
        status = ucmod.uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind, fptr,
                                         ctypes.c_void_p(0), ctypes.c_uint64(1),
                                         ctypes.c_uint64(0))
    except (ImportError, AttributeError, TypeError):
        uc.hook_add(kind, slow)
        return
    if status != 0:
        raise UcError(status)
    _keep_alive(uc, fptr)


def reg_access(uc: Uc) -> tuple[Callable[[int], int], Callable[[int, int], None]]:
    """(read, write) of a 64-bit register by id, calling the engine directly: the binding's
    reg_read/reg_write pick a register class and wrap every call (about half their cost),
    and the run loop makes a dozen of them per emu_start (docs/idle.md)."""
    try:
        from unicorn.unicorn_py3 import unicorn as ucmod
        read_fn, write_fn = ucmod.uclib.uc_reg_read, ucmod.uclib.uc_reg_write
        handle = uc._uch
    except (ImportError, AttributeError):
        return uc.reg_read, uc.reg_write
    u64, byref = ctypes.c_uint64, ctypes.byref

    def read(reg: int) -> int:
        buf = u64()  # one per call: another thread may read a register meanwhile
        status = read_fn(handle, reg, byref(buf))
        if status:
            raise UcError(status)
        return buf.value

    def write(reg: int, value: int) -> None:
        status = write_fn(handle, reg, byref(u64(value)))
        if status:
            raise UcError(status)

    return read, write


def vmem_reader(uc: Uc) -> Callable[[int, int], bytes | None] | None:
    """read(vaddr, size) as an instruction fetch (size <= 8, within one page) through
    unicorn's own MMU at the hart's current privilege (its TLB, or a walk in C that cannot
    fault), None where nothing executable is mapped. Only meaningful once unicorn's MMU is
    in use (UC_TLB_CPU); None if the engine lacks uc_vmem_read (unicorn < 2.1)."""
    try:
        from unicorn import UC_PROT_EXEC
        from unicorn.unicorn_py3 import unicorn as ucmod
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int,
                                 ctypes.c_void_p, ctypes.c_size_t)
        fn = proto(("uc_vmem_read", ucmod.uclib))
        handle = uc._uch
    except (ImportError, AttributeError, TypeError):
        return None
    buf_t = ctypes.c_char * 8

    def read(vaddr: int, size: int) -> bytes | None:
        buf = buf_t()  # one per call: another thread may read meanwhile
        if fn(handle, vaddr, UC_PROT_EXEC, buf, size):
            return None
        return buf.raw[:size]

    _keep_alive(uc, fn)
    return read
