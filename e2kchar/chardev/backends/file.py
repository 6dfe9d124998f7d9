"""file: output to a file (truncated unless append=on), optional input file."""

from __future__ import annotations

import os

from ..config import FileConfig
from ..types import ChardevError
from .fd import FdChardev


def open_or_fail(path: str, flags: int, mode: int = 0o666) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise ChardevError(f"Could not open '{path}': {exc.strerror}") from None
    except ValueError as exc:  # an embedded NUL
        raise ChardevError(f"Could not open '{path}': {exc}") from None


class FileChardev(FdChardev[FileConfig]):
    TYPE = "file"

    def open(self) -> bool:
        cfg = self.config
        append = bool(cfg.append) or self.reopen
        # Open without O_TRUNC and truncate only once everything opened, and remove a file
        # we created if the input cannot be opened: a failed add must not touch the disk.
        flags = os.O_WRONLY | (os.O_APPEND if append else 0)
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
                in_fd = open_or_fail(cfg.in_, os.O_RDONLY)
            except ChardevError:
                os.close(out_fd)
                if created:
                    try:
                        os.unlink(cfg.out)
                    except OSError:
                        pass
                raise
        if not append:
            try:
                os.ftruncate(out_fd, 0)
            except OSError:
                pass  # a fifo or a device: nothing to truncate
        self.set_fds(in_fd, out_fd, [fd for fd in (in_fd, out_fd) if fd >= 0])
        return True
