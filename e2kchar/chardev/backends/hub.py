"""hub: one frontend on several backends (QEMU 10.0): output to every member, input from any.

Each member is attached through its own CharBackend, as a mux attaches its base, so a
member can be hotswapped with chardev-change on its own id: the registry swaps it under the
hub's handle and output the old member had not taken goes on to the new one, while the
other members see every byte once. Unlike QEMU there is no four-member cap. The hub opens
when its first member opens and closes when its last one closes, as QEMU's does.

A stalled member never stalls the others or the guest (docs/architecture.md,
"Robustness"). QEMU 10's hub writes at the pace of its slowest open member: it returns the
least any member took and EAGAIN while one is full, so a peer that stops reading stops the
guest's output to every member. Here each member has its own output queue
(``OutQueue``) bounded by ``MEMBER_BACKLOG`` bytes: what a member cannot take now waits
there and goes out from its writable watch; output that would pass the bound is dropped
for that member only, counted (``member_stats``) and logged, rate-limited. The hub itself
always takes everything at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig
from ..frontend import CharBackend
from ..outqueue import OutQueue
from ..qemuopts import BackendOptions, Opts, QapiReader
from ..types import ChardevError, ChardevEvent

log = logging.getLogger(__name__)

#: the -chardev keys naming members: chardevs.0, chardevs.1, ... (any count)
MEMBER_KEY = re.compile(r"chardevs\.(\d+)\Z")


@dataclass(kw_only=True)
class HubConfig(BackendConfig):
    TYPE: ClassVar[str] = "hub"
    chardevs: list[str] = field(default_factory=list)


class _Member:
    """One member's handle and whether it has said OPENED."""

    def __init__(self, hub: HubChardev, fe: CharBackend) -> None:
        self.hub = hub
        self.fe = fe
        self.open = False
        name = f"hub {hub.label}: member {fe.chardev.label if fe.chardev else '?'}"
        self.out = OutQueue(fe, name=name, limit=hub.MEMBER_BACKLOG, drop_when_gone=True)
        self.dropped = 0  # bytes this member missed because its backlog was full

    def put(self, data: bytes) -> None:
        """Output for this member: what it cannot take now waits, up to the bound."""
        if not self.out.put(data):
            self.dropped += len(data)

    def can_read(self) -> int:
        return self.hub.member_can_read()

    def read(self, data: bytes) -> None:
        self.hub.be_write(data)

    def event(self, event: ChardevEvent) -> None:
        self.hub.member_event(self, event)

    def changed(self) -> int:
        """A chardev-change swapped this member: take its new chardev's input and events."""
        self.open = False
        self.attach_handlers()
        self.out.after_swap()
        chr_ = self.fe.chardev
        if chr_ is not None and chr_.be_open:
            self.hub.member_event(self, ChardevEvent.OPENED)
        return 0

    def attach_handlers(self) -> None:
        self.fe.set_handlers(self.can_read, self.read, self.event, self.changed, set_open=True)


class HubChardev(Chardev[HubConfig]):
    TYPE = "hub"
    #: output bytes a member that does not keep up may have waiting before it misses some
    MEMBER_BACKLOG: ClassVar[int] = 65536

    def open(self) -> bool:
        names = self.config.chardevs
        if not names:
            raise ChardevError("hub: 'chardevs' list is not defined")
        chardevs: list[Chardev] = []
        for name in names:
            chr_ = self.host.find(name)
            if chr_ is None:
                raise ChardevError(f"hub: chardev can't be found by id '{name}'")
            if chr_.is_mux or isinstance(chr_, HubChardev):
                raise ChardevError(
                    "hub: multiplexers and hub devices can't be stacked, check chardev "
                    f"'{name}', chardev should not be a hub device or have 'mux=on' enabled")
            chardevs.append(chr_)
        self.members: list[_Member] = []
        try:
            for chr_ in chardevs:
                self.members.append(_Member(self, CharBackend(chr_)))  # "is in use"
        except ChardevError:
            self.chr_close()
            raise
        self._opened = 0
        for member in self.members:
            member.attach_handlers()
        # closed until a member says it is open, as QEMU's hub
        for member in self.members:
            chr_ = member.fe.chardev
            if chr_ is not None and chr_.be_open:
                member.open = True
                self._opened += 1
        if self._opened:
            self.ioloop.call_soon(self._initially_open)
        return False

    def _initially_open(self) -> None:
        if self._opened and not self.be_open and not self.closed:
            self.be_event(ChardevEvent.OPENED)

    # -- input from any member -----------------------------------------------------------

    def member_can_read(self) -> int:
        return self.be_can_write()

    def member_event(self, member: _Member, event: ChardevEvent) -> None:
        if event == ChardevEvent.OPENED:
            if member.open:
                return
            member.open = True
            self._opened += 1
            if self._opened > 1 or self.be_open:
                return
        elif event == ChardevEvent.CLOSED:
            if not member.open:
                return
            member.open = False
            self._opened -= 1
            if self._opened:
                return
        elif event in (ChardevEvent.MUX_IN, ChardevEvent.MUX_OUT):
            return
        self.be_event(event)

    def chr_accept_input(self) -> None:
        for member in self.members:
            member.fe.accept_input()

    def chr_update_read_handler(self) -> None:
        for member in self.members:
            chr_ = member.fe.chardev
            if chr_ is not None and not chr_.closed:
                chr_.chr_update_read_handler()

    # -- output to every member ----------------------------------------------------------

    def chr_write(self, data: memoryview) -> int:
        raw = bytes(data)
        for member in self.members:
            if member.fe.chardev is not None:
                member.put(raw)
        return len(raw)

    def chr_close(self) -> None:
        for member in getattr(self, "members", []):
            member.out.close()
            if member.fe.chardev is not None:
                member.fe.deinit()

    def member_stats(self) -> dict[str, dict[str, int]]:
        """Per member id: bytes waiting for it ("backlog") and bytes it missed ("dropped")."""
        return {(m.fe.chardev.label or ""): {"backlog": m.out.pending, "dropped": m.dropped}
                for m in self.members if m.fe.chardev is not None}

    def member_labels(self) -> list[str]:
        """The members' ids, in order."""
        return [m.fe.chardev.label or "" for m in self.members if m.fe.chardev is not None]


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> HubConfig:
    numbered = sorted((int(m.group(1)), value) for key, value in opts.items()
                      if (m := MEMBER_KEY.match(key)) is not None)
    names = []
    for expect, (index, value) in enumerate(numbered):
        if index != expect:
            break  # QEMU reads chardevs.0, .1, ... up to the first gap
        names.append(value)
    return HubConfig(chardevs=names, **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> HubConfig:
    names = d.take("chardevs", "array", True)
    if not all(isinstance(n, str) for n in names):
        raise ChardevError(f"Invalid parameter type for '{where}.data.chardevs[0]', "
                           "expected: string")
    return HubConfig(chardevs=list(names), **common)


def _to_opts(c: HubConfig) -> list[tuple[str, Any]]:
    return [(f"chardevs.{i}", name) for i, name in enumerate(c.chardevs)]


OPTIONS = BackendOptions(config=HubConfig, chardev=HubChardev, keys={},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts)
