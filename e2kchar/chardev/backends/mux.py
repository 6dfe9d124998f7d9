"""mux: up to four frontends share one base chardev; Ctrl-A commands switch focus.

Output from every frontend goes to the base. Input goes to the focused frontend through a
32-byte per-frontend buffer. The escape character (Ctrl-A) introduces: h/? help, x exit,
s (no disks: nothing), b break, c next frontend, t toggle timestamps; Ctrl-A Ctrl-A sends
one Ctrl-A. Unlike QEMU, the base of a mux can be hotswapped (the registry swaps the base
under the mux's own CharBackend, so the frontends keep their slots and focus).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev, Frontend
from ..configbase import BackendConfig
from ..frontend import CharBackend
from ..qemuopts import STR, BackendOptions, Opts, QapiReader
from ..types import ChardevError, ChardevEvent

log = logging.getLogger("e2kchar.chardev.mux")  # its name before the move to backends/

MAX_MUX = 4
MUX_BUFFER_SIZE = 32

_HELP = [
    "% h    print this help\n\r",
    "% x    exit emulator\n\r",
    "% s    save disk data back to file (if -snapshot)\n\r",
    "% t    toggle console timestamps\n\r",
    "% b    send break (magic sysrq)\n\r",
    "% c    switch between console and monitor\n\r",
    "% %  sends %\n\r",
]


def help_text(escape_char: int) -> bytes:
    """QEMU's mux help, with % replaced by the escape key's name."""
    if 1 <= escape_char <= 26:
        name = f"C-{chr(escape_char - 1 + ord('a'))}"
        head = "\n\r"
    else:
        name = "Escape-Char"
        head = f"\n\rEscape-Char set to Ascii: 0x{escape_char:02x}\n\r\n\r"
    return (head + "".join(line.replace("%", name) for line in _HELP)).encode()


@dataclass(kw_only=True)
class MuxConfig(BackendConfig):
    TYPE: ClassVar[str] = "mux"
    chardev: str


class MuxChardev(Chardev[MuxConfig]):
    TYPE = "mux"
    is_mux = True

    def open(self) -> bool:
        base_id = self.config.chardev
        base = self.host.find(base_id)
        if base is None:
            raise ChardevError(f"mux: base chardev {base_id} not found")
        self.escape_char = 0x01
        self.slots: list[Frontend | None] = [None] * MAX_MUX
        self.bufs = [bytearray() for _ in range(MAX_MUX)]
        self.focus = -1
        self._escape = False
        self.timestamps = False
        self._ts_start: float | None = None
        self._line_start = False
        #: input read from the base but not yet processed: after a focus change (Ctrl-A c)
        #: the rest of a chunk waits here until the new focus can take it
        self._held = bytearray()
        self._processing = False  # a callback re-entering _process_held leaves it alone
        self.base_fe = CharBackend(base)  # raises "Device 'x' is in use"
        self.base_fe.set_handlers(self._base_can_read, self._base_read, self._base_event,
                                  self._base_changed, set_open=True)
        return True  # QEMU: open once the machine is initialised

    @property
    def base(self) -> Chardev | None:
        return self.base_fe.chardev

    # -- frontends ---------------------------------------------------------------------

    def attach_frontend(self, fe: Frontend) -> int:
        for i, slot in enumerate(self.slots):
            if slot is None:
                self.slots[i] = fe
                self.bufs[i].clear()
                return i
        # QEMU words a full mux like a busy chardev
        raise ChardevError(f"Device '{self.label}' is in use")

    def detach_frontend(self, fe: Frontend) -> None:
        if self.be is fe:
            self.be = None
        for i, slot in enumerate(self.slots):
            if slot is fe:
                self.slots[i] = None
                self.bufs[i].clear()
                if self.focus == i:
                    self.focus = -1
                    rest = [j for j, s in enumerate(self.slots) if s is not None]
                    if rest:
                        self._set_focus(rest[0])

    def frontends(self) -> list[Frontend]:
        return [s for s in self.slots if s is not None]

    def frontend_open(self) -> bool:
        return any(s.fe_open for s in self.slots if s is not None)

    def focused(self) -> Frontend | None:
        return self.slots[self.focus] if self.focus >= 0 else None

    def _set_focus(self, index: int) -> None:
        if index == self.focus:
            return
        old = self.focused()
        if old is not None:
            old.deliver_event(ChardevEvent.MUX_OUT)
        self.focus = index
        new = self.focused()
        if new is not None:
            self.be = new
            new.deliver_event(ChardevEvent.MUX_IN)

    def chr_take_focus(self, fe: Frontend) -> None:
        for i, slot in enumerate(self.slots):
            if slot is fe:
                self._set_focus(i)
        self.chr_update_read_handler()  # input may have waited for a focused frontend

    def chr_be_event(self, event: ChardevEvent) -> None:
        fe = self.focused()
        if fe is not None:
            fe.deliver_event(event)

    # -- output ------------------------------------------------------------------------

    def _stamp(self) -> bytes:
        now = time.monotonic()
        if self._ts_start is None:  # QEMU counts from the first stamp after a toggle
            self._ts_start = now
        ms = int((now - self._ts_start) * 1000)
        secs, ms = divmod(ms, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        return f"[{hours % 100:02d}:{mins:02d}:{secs:02d}.{ms:03d}] ".encode()

    def chr_write(self, data: memoryview) -> int:
        if not self.timestamps:
            res = self.base_fe.write(bytes(data))
            if res < 0:
                raise BlockingIOError
            return res
        out = bytearray()
        for b in bytes(data):
            if self._line_start:
                out += self._stamp()
                self._line_start = False
            out.append(b)
            if b == 0x0A:
                self._line_start = True
        self.base_fe.write_all(bytes(out))
        return len(data)

    def chr_arm_watch(self) -> None:
        if self.base_fe.add_watch(self.fire_watches) is None:
            self.ioloop.call_soon(self.fire_watches)

    def chr_ioctl(self, cmd: int, arg: Any) -> Any:
        return self.base_fe.ioctl(cmd, arg)

    def chr_set_echo(self, echo: bool) -> None:
        self.base_fe.set_echo(echo)

    # -- input -------------------------------------------------------------------------

    def _capacity(self) -> int:
        """Bytes the focused frontend can take now: its free buffer plus, while that buffer
        is empty, what it can read directly."""
        fe = self.focused()
        if fe is None:
            return 0  # nobody to type to yet: leave the input where it is
        buf = self.bufs[self.focus]
        room = MUX_BUFFER_SIZE - len(buf)
        direct = fe.can_receive() if not buf else 0
        return room + direct

    def _base_can_read(self) -> int:
        if self._held:
            self._process_held()
            if self._held:
                return 0
        return self._capacity()

    def _deliver(self, data: bytes) -> None:
        fe = self.focused()
        if fe is None or not data:
            return
        buf = self.bufs[self.focus]
        if not buf:
            n = min(len(data), fe.can_receive())
            if n and fe.deliver(data[:n]):
                data = data[n:]
        room = MUX_BUFFER_SIZE - len(buf)
        if len(data) > room:  # only a frontend whose can_read shrank by itself gets here
            log.warning("%s: input overrun, %d bytes dropped", self.label, len(data) - room)
            data = data[:room]
        buf += data

    def _base_read(self, data: bytes) -> None:
        self._held += data
        self._process_held()
        self.ioloop.notify()

    def _process_held(self) -> None:
        """Run held input through the escape machine, as far as the focus can take data.

        Commands are always executed; a data byte the focused frontend has no room for
        stops processing, and it and everything after it wait (nothing is dropped).
        """
        if self._processing:
            return
        self._processing = True
        try:
            self._process_held_once()
        finally:
            self._processing = False

    def _process_held_once(self) -> None:
        self._drain_focused()
        held = self._held
        esc = self.escape_char
        cap = self._capacity()
        pending = bytearray()
        i, n = 0, len(held)
        while i < n:
            b = held[i]
            if self._escape:
                if b == esc:  # a doubled escape is one escape character of data
                    if len(pending) >= cap:
                        break
                    self._escape = False
                    pending.append(b)
                    i += 1
                    continue
                self._escape = False
                i += 1
                self._deliver(bytes(pending))
                pending.clear()
                self._command(b)
                if self.closed:
                    return
                cap = self._capacity()
            elif b == esc:
                self._escape = True
                i += 1
            else:
                if len(pending) >= cap:
                    break
                pending.append(b)
                i += 1
        self._deliver(bytes(pending))
        del held[:i]

    def _command(self, b: int) -> None:
        c = chr(b)
        if c in "h?":
            self.base_fe.write_all(help_text(self.escape_char))
        elif c == "x":
            self.base_fe.write_all(b"QEMU: Terminated\n\r")
            self.host.request_exit(0)
        elif c == "s":
            log.info("%s: no disks to commit", self.label)
        elif c == "b":
            self.chr_be_event(ChardevEvent.BREAK)
        elif c == "c":
            attached = [i for i, s in enumerate(self.slots) if s is not None]
            if attached:
                later = [i for i in attached if i > self.focus]
                self._set_focus(later[0] if later else attached[0])
        elif c == "t":
            self.timestamps = not self.timestamps
            self._ts_start = None
            self._line_start = False

    def _drain_focused(self) -> None:
        """Hand the focused frontend what its buffer holds, as far as it can read."""
        fe = self.focused()
        if fe is None:
            return
        buf = self.bufs[self.focus]
        while buf:
            n = min(len(buf), fe.can_receive())
            if n <= 0:
                break
            chunk = bytes(buf[:n])
            del buf[:n]
            if not fe.deliver(chunk):  # no read handler: the bytes wait
                buf[:0] = chunk
                break

    def chr_accept_input(self) -> None:
        self._drain_focused()
        if self._held:
            self._process_held()

    def chr_update_read_handler(self) -> None:
        base = self.base
        if base is not None and not base.closed:
            base.chr_update_read_handler()

    def _base_event(self, event: ChardevEvent) -> None:
        for fe in self.frontends():
            fe.deliver_event(event)

    def _base_changed(self) -> int:
        self.base_fe.set_handlers(self._base_can_read, self._base_read, self._base_event,
                                  self._base_changed, set_open=True)
        if self.has_watches:
            self.chr_arm_watch()
        return 0

    def chr_close(self) -> None:
        base_fe = getattr(self, "base_fe", None)  # absent when open() failed before it
        if base_fe is not None and base_fe.chardev is not None:
            base_fe.deinit()

    def info(self) -> dict[str, Any]:
        return {"label": self.label, "filename": self.filename,
                "frontend-open": self.frontend_open()}


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> MuxConfig:
    if opts.get("chardev") is None:
        raise ChardevError("chardev: mux: no chardev given")
    return MuxConfig(chardev=opts["chardev"], **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> MuxConfig:
    return MuxConfig(chardev=d.take("chardev", "string", True), **common)


def _to_opts(c: MuxConfig) -> list[tuple[str, Any]]:
    return [("chardev", c.chardev)]


OPTIONS = BackendOptions(config=MuxConfig, chardev=MuxChardev, keys={"chardev": STR},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts)
