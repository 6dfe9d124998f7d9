"""Hypothesis fuzz targets for CLI option parsing, QMP commands and virtio rings (issue 15).

Each target states what must hold whatever the input: only the documented error types, no
"internal error", no exception into the emulator, bounded time. tests/test_fuzz_robust.py
runs them for a few seconds; tools/fuzz_robust.py runs them for longer.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import struct
import time
from typing import Any

from hypothesis import strategies as st

from e2kchar import ChardevError, ChardevRegistry
from e2kchar.chardev.spec import parse_chardev, parse_legacy
from e2kchar.cli import CliError, build_parser, parse_size
from e2kchar.monitor.commands import Monitor, QmpError

TEXT = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from(
    list(",=:.@\\") + ["\ud800"]), max_size=40)
OPTION_TEXT = st.one_of(TEXT, st.builds(
    lambda b, kv: b + "".join(f",{k}={v}" for k, v in kv),
    st.sampled_from(["socket", "file", "pipe", "null", "ringbuf", "udp", "pty", "stdio",
                     "serial", "mux", "memory", "testdev", "tcp:", "unix:", "mon:stdio"]),
    st.lists(st.tuples(st.sampled_from(["id", "path", "host", "port", "server", "wait",
                                        "size", "mux", "logfile", "fd", "to", "websocket",
                                        "telnet", "reconnect", "append", "ipv4"]), TEXT),
             max_size=5)))


def check_option(text: str) -> None:
    """-chardev / -serial / -m text: a ChardevError or CliError, nothing else."""
    for parse in (parse_chardev, parse_legacy):
        try:
            parse(text)
        except ChardevError:
            pass
    try:
        parse_size(text)
    except CliError:
        pass


def check_argv(argv: list[str]) -> None:
    """The argument parser: a value or argparse's usage error (SystemExit 2)."""
    ap = build_parser()
    ap.exit_on_error = False
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # argparse's usage text
            ap.parse_args(argv)
    except (argparse.ArgumentError, SystemExit):
        pass


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
                    | TEXT, lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(TEXT, c, max_size=3), max_leaves=8)
ARG_NAMES = st.sampled_from(["id", "device", "data", "format", "size", "backend", "type",
                             "out", "in", "path", "addr", "server", "wait", "logfile"])
QMP_ARGS = st.one_of(JSON, st.dictionaries(ARG_NAMES, JSON, max_size=4))


def check_qmp(mon: Monitor, name: str, args: Any) -> None:
    """Any command with any arguments: a QmpError that is not an internal error."""
    try:
        mon.execute_sync(name, args, timeout=10)
    except QmpError as exc:
        assert "internal error" not in str(exc), (name, args, exc)


def check_virtqueue(descs: list[tuple[int, int, int, int]], heads: list[int]) -> float:
    """A hostile transmit queue: any descriptors, any heads; the notify never raises and
    returns within a bounded time. Returns the notify's duration."""
    from e2kchar.devices import BytearrayMemory, IrqLine, VirtioConsole, VirtioMmio
    from virtio_guest import RAM_BASE, RAM_SIZE, ConsoleGuest

    with ChardevRegistry() as reg:
        mem = BytearrayMemory(RAM_SIZE, RAM_BASE)
        con = VirtioConsole(max_ports=1)
        con.add_port(chardev=reg.new("c", "null"), console=True)
        g = ConsoleGuest(VirtioMmio(device=con, memory=mem, irq=IrqLine()), mem)
        g.start(1, multiport=False)
        q = g.queues[1]
        for i, (addr, n, flags, nxt) in enumerate(descs[:q.num]):
            q.write_desc(q.desc, i, RAM_BASE + addr % (RAM_SIZE * 2) - RAM_SIZE // 2, n,
                         flags, nxt)
        for h in heads:
            mem.write(q.avail + 4 + 2 * (q.avail_idx % q.num), struct.pack("<H", h))
            q.avail_idx = (q.avail_idx + 1) & 0xFFFF
        mem.write(q.avail + 2, struct.pack("<H", q.avail_idx))
        t0 = time.monotonic()
        q.kick()
        return time.monotonic() - t0


DESCS = st.lists(st.tuples(st.integers(0, 2**32), st.sampled_from([0, 1, 16, 4096, 2**32 - 1])
                           | st.integers(0, 2**32 - 1), st.integers(0, 7),
                           st.integers(0, 300)), max_size=12)
HEADS = st.lists(st.integers(0, 300), max_size=200)
