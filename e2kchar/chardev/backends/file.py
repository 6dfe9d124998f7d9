"""file: output to a file (truncated unless append=on), optional input file."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Any, ClassVar

from ..configbase import BackendConfig
from ..qemuopts import BOOL, STR, BackendOptions, Opts, QapiReader, Split, opt_bool
from ..types import ChardevError
from .fd import FdChardev


def open_or_fail(path: str, flags: int, mode: int = 0o666) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as exc:
        why = exc.strerror
        if exc.errno == errno.ENXIO and flags & os.O_NONBLOCK:
            why = f"{why} (a FIFO with no reader)"
        raise ChardevError(f"Could not open '{path}': {why}") from None
    except ValueError as exc:  # an embedded NUL
        raise ChardevError(f"Could not open '{path}': {exc}") from None


def open_input(path: str) -> int:
    """Open an input file without blocking: a FIFO with no writer yet is opened O_RDWR (as
    the pipe backend does), so the open returns at once and input starts when a writer
    comes; anything else O_RDONLY."""
    fd = open_or_fail(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        fifo = False
    if fifo:
        os.close(fd)
        fd = open_or_fail(path, os.O_RDWR | os.O_NONBLOCK)
    return fd


@dataclass(kw_only=True)
class FileConfig(BackendConfig):
    TYPE: ClassVar[str] = "file"
    out: str
    in_: str | None = None
    append: bool | None = None


class FileChardev(FdChardev[FileConfig]):
    TYPE = "file"

    def open(self) -> bool:
        cfg = self.config
        append = bool(cfg.append) or self.reopen
        # Open without O_TRUNC and truncate only once everything opened, and remove a file
        # we created if the input cannot be opened: a failed add must not touch the disk.
        # O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of blocking the
        # I/O loop until someone opens it.
        flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND if append else 0)
        created = False
        try:
            out_fd = os.open(cfg.out, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o666)
            created = True
        except (OSError, ValueError):
            out_fd = open_or_fail(cfg.out, flags | os.O_CREAT)
        in_fd = -1
        if cfg.in_ is not None:
            try:
                in_fd = open_input(cfg.in_)
            except ChardevError:
                os.close(out_fd)
                if created:
                    try:
                        os.unlink(cfg.out)
                    except OSError:
                        pass
                raise
        if not append and not created:
            # (a file this open created is empty already: as QEMU's O_TRUNC, which the
            # kernel skips for a new file, it is not truncated; on ext4 a truncation to 0
            # makes close() write back all that was written: 0.3-1.5 s per GiB at exit)
            try:
                os.ftruncate(out_fd, 0)
            except OSError:
                pass  # a fifo or a device: nothing to truncate
        self.set_fds(in_fd, out_fd, [fd for fd in (in_fd, out_fd) if fd >= 0])
        return True


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> FileConfig:
    if opts.get("path") is None:
        raise ChardevError("chardev: file: no filename given")
    return FileConfig(out=opts["path"], in_=opts.get("input-path"),
                      append=opt_bool(opts, "append"), **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> FileConfig:
    return FileConfig(out=d.take("out", "string", True), in_=d.take("in", "string"),
                      append=d.take("append", "boolean"), **common)


def _to_opts(c: FileConfig) -> list[tuple[str, Any]]:
    return [("path", c.out), ("input-path", c.in_), ("append", c.append)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "file", "path": text[5:]} if text.startswith("file:") else None


OPTIONS = BackendOptions(config=FileConfig, chardev=FileChardev, keys={"path": STR, "input-path": STR, "append": BOOL},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
