"""stdio: the process's stdin/stdout, with the terminal in raw mode while attached.

The terminal's settings and fd flags are restored on close and at interpreter exit.
``signal=off`` clears ISIG so Ctrl-C reaches the guest instead of killing the emulator.
"""

from __future__ import annotations

import atexit
import os
import stat
import sys
import termios
from dataclasses import dataclass
from typing import Any, ClassVar

from ..configbase import BackendConfig
from ..qemuopts import BOOL, BackendOptions, Opts, QapiReader, Split, opt_bool
from ..types import ChardevError
from .fd import FdChardev


@dataclass(kw_only=True)
class StdioConfig(BackendConfig):
    TYPE: ClassVar[str] = "stdio"
    signal: bool | None = None


class StdioChardev(FdChardev[StdioConfig]):
    TYPE = "stdio"
    _claimed = False  # this chardev holds the host's stdio claim

    @classmethod
    def exclusive_resource(cls, config: object) -> object | None:
        return ("stdio",)

    def open(self) -> bool:
        if not self.host.claim_stdio():
            raise ChardevError("cannot use stdio by multiple character devices")
        self._claimed = True
        self._saved_attrs: list[Any] | None = None  # termios.tcgetattr()
        self._saved_flags: bool | None = None  # the input fd was blocking
        self._tty_fd = -1
        self._signal = self.config.signal is not False
        self._echo = False
        in_fd = self._dup_input()
        try:
            out_fd = self._dup_output()
        except OSError:  # out of fds: the input's duplicate must not leak
            if in_fd >= 0:
                os.close(in_fd)
            raise
        owned = [fd for fd in (in_fd, out_fd) if fd >= 0]
        self.set_fds(in_fd, out_fd, owned)
        if in_fd >= 0 and os.isatty(in_fd):
            self._tty_fd = in_fd
            try:
                self._saved_attrs = termios.tcgetattr(in_fd)
            except termios.error:
                self._saved_attrs = None
        self._atexit = self._restore_terminal
        atexit.register(self._atexit)
        self.chr_set_echo(False)
        return True

    def _dup_input(self) -> int:
        try:
            fd = os.dup(0)
        except OSError:
            return -1
        try:
            self._saved_flags = os.get_blocking(fd)
        except OSError:
            pass
        return fd

    def _dup_output(self) -> int:
        try:
            st = os.fstat(1)
        except OSError:
            return -1
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            # a private open file description: non-blocking mode must not leak to stdout
            try:
                return os.open(f"/proc/self/fd/{1}", os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
            except OSError:
                pass
        fd = os.dup(1)
        return fd

    def set_fds(self, in_fd: int, out_fd: int, owned: list[int]) -> None:
        self.in_fd, self.out_fd, self._owned = in_fd, out_fd, owned
        for fd in (in_fd, out_fd):
            if fd < 0:
                continue
            try:
                if fd == in_fd or stat.S_ISCHR(os.fstat(fd).st_mode) \
                        or stat.S_ISFIFO(os.fstat(fd).st_mode):
                    os.set_blocking(fd, False)
            except OSError:
                pass

    def chr_set_echo(self, echo: bool) -> None:
        self._echo = echo
        if self._tty_fd < 0 or self._saved_attrs is None:
            return
        attrs: list[Any] = [list(a) if isinstance(a, list) else a for a in self._saved_attrs]
        iflag, oflag, cflag, lflag = 0, 1, 2, 3
        if not echo:
            attrs[iflag] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                              | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
            attrs[oflag] |= termios.OPOST
            attrs[lflag] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
            attrs[cflag] &= ~(termios.CSIZE | termios.PARENB)
            attrs[cflag] |= termios.CS8
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
        if not self._signal:
            attrs[lflag] &= ~termios.ISIG
        try:
            termios.tcsetattr(self._tty_fd, termios.TCSANOW, attrs)
        except termios.error:
            pass

    def _restore_terminal(self) -> None:
        if self._tty_fd >= 0 and self._saved_attrs is not None:
            try:
                termios.tcsetattr(self._tty_fd, termios.TCSANOW, self._saved_attrs)
            except (termios.error, OSError):
                pass
        if self._saved_flags is not None and self.in_fd >= 0:
            try:
                os.set_blocking(self.in_fd, self._saved_flags)
            except OSError:
                pass

    def chr_close(self) -> None:
        if not self._claimed:  # the open that failed never got stdio
            super().chr_close()
            return
        self._restore_terminal()
        try:
            atexit.unregister(self._atexit)
        except AttributeError:
            pass
        try:
            sys.stdout.flush()
        except Exception:
            pass
        super().chr_close()
        self._tty_fd = -1
        self._claimed = False
        self.host.release_stdio()


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> StdioConfig:
    signal = opt_bool(opts, "signal")
    return StdioConfig(signal=True if signal is None else signal, **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> StdioConfig:
    signal = d.take("signal", "boolean")
    return StdioConfig(signal=True if signal is None else signal, **common)


def _to_opts(c: StdioConfig) -> list[tuple[str, Any]]:
    return [("signal", c.signal)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    if text != "stdio":
        return None
    # mon:stdio: Ctrl-C goes to the guest, the monitor is one Ctrl-A c away
    return {"backend": "stdio", "signal": "off"} if mon else {"backend": "stdio"}


OPTIONS = BackendOptions(config=StdioConfig, chardev=StdioChardev, keys={"signal": BOOL},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
