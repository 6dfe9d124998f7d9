"""null: swallows output, never has input, never reports OPENED (as QEMU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..base import Chardev
from ..configbase import BackendConfig
from ..qemuopts import BackendOptions, Opts, QapiReader, Split


@dataclass(kw_only=True)
class NullConfig(BackendConfig):
    TYPE: ClassVar[str] = "null"


class NullChardev(Chardev[NullConfig]):
    TYPE = "null"

    def open(self) -> bool:
        return False


# -- options --------------------------------------------------------------------------


def _from_opts(opts: Opts, common: dict[str, Any]) -> NullConfig:
    return NullConfig(**common)


def _from_qapi(d: QapiReader, common: dict[str, Any], where: str) -> NullConfig:
    return NullConfig(**common)


def _to_opts(c: NullConfig) -> list[tuple[str, Any]]:
    return []


def _legacy(text: str, mon: bool, split: Split) -> Opts | None:
    return {"backend": "null"} if text == "null" else None


OPTIONS = BackendOptions(config=NullConfig, chardev=NullChardev, keys={},
                         from_opts=_from_opts, from_qapi=_from_qapi, to_opts=_to_opts, legacy=_legacy)
