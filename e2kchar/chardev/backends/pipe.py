"""pipe: PATH.in (host -> guest) and PATH.out (guest -> host), else PATH both ways.

Both ends are opened O_RDWR, so a FIFO never blocks the open and never reads EOF when its
writer goes away; e2kchar, like QEMU, does not create the FIFOs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

from ..configbase import BackendConfig
from ..qemuopts import STR, BackendOptions, Opts, QapiReader, Split
from ..types import ChardevError
from .fd import FdChardev
from .file import open_or_fail


@dataclass(kw_only=True)
class PipeConfig(BackendConfig):
    TYPE: ClassVar[str] = "pipe"
    device: str


class PipeChardev(FdChardev[PipeConfig]):
    TYPE = "pipe"

    def open(self) -> bool:
        path = self.config.device
        flags = os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            in_fd = os.open(path + ".in", flags)
        except (OSError, ValueError):
            in_fd = -1
        out_fd = -1
        if in_fd >= 0:
            try:
                out_fd = os.open(path + ".out", flags)
            except OSError:
                os.close(in_fd)
                in_fd = -1
        if in_fd < 0:
            fd = open_or_fail(path, os.O_RDWR | os.O_NONBLOCK)
            self.set_fds(fd, fd, [fd])
        else:
            self.set_fds(in_fd, out_fd, [in_fd, out_fd])
        return True


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> PipeConfig:
    if opts.get("path") is None:
        raise ChardevError("chardev: pipe: no device path given")
    return PipeConfig(device=opts["path"], **common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> PipeConfig:
    return PipeConfig(device=d.take("device", "string", True), **common)


def _to_opts(c: PipeConfig) -> list[tuple[str, Any]]:
    return [("path", c.device)]


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "pipe", "path": text[5:]} if text.startswith("pipe:") else None


OPTIONS = BackendOptions(config=PipeConfig, chardev=PipeChardev, keys={"path": STR},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
