"""testdev: a guest writes "[N]q" to end the emulation with status (N << 1) | 1."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig
from ..qemuopts import BackendOptions, Opts, QapiReader, Split

_PACKET = re.compile(rb"\s*(\d*)\s*([^\s\d])")


@dataclass(kw_only=True)
class TestdevConfig(BackendConfig):
    TYPE: ClassVar[str] = "testdev"


class TestdevChardev(Chardev[TestdevConfig]):
    TYPE = "testdev"

    def open(self) -> bool:
        self._buf = bytearray()
        return True

    def chr_write(self, data: memoryview) -> int:
        self._buf += data
        while True:
            m = _PACKET.match(self._buf)
            if m is None:
                # only whitespace/digits so far: wait for the command byte, but keep the
                # buffer bounded (QEMU spins forever on 32 such bytes; we drop the oldest)
                if len(self._buf) > 32:
                    del self._buf[:-32]
                break
            number, cmd = m.group(1), m.group(2)
            del self._buf[: m.end()]
            if cmd == b"q":
                n = int(number) if number else 0
                self.host.request_exit(((n << 1) | 1) & 0xFF)
        return len(data)


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> TestdevConfig:
    return TestdevConfig(**common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> TestdevConfig:
    return TestdevConfig(**common)


def _to_opts(c: TestdevConfig) -> list[tuple[str, Any]]:
    return []


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "testdev"} if text == "testdev" else None


OPTIONS = BackendOptions(config=TestdevConfig, chardev=TestdevChardev, keys={},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
