"""Fixtures for guest-level tests: build a driver, make a machine (closed after the test)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2kchar import ChardevRegistry
from e2kchar.machine import Machine

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


def _load_build_module() -> Any:
    """tools/ is not a package: import tools/build_firmware.py by path, once."""
    name = "e2kchar_build_firmware"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "build_firmware.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def build_driver() -> Callable[..., Path]:
    """build_driver(name, map="e2k", defines=None, ...) -> Path of the ELF (cached by zig)."""
    mod = _load_build_module()

    def build(name: str, **kw: Any) -> Path:
        return mod.build(name, **kw)

    return build


@pytest.fixture
def registry() -> Iterator[ChardevRegistry]:
    with ChardevRegistry() as reg:
        yield reg


@pytest.fixture
def machine(registry: ChardevRegistry) -> Iterator[Callable[..., Machine]]:
    """machine(**Machine kwargs) -> Machine on the test's registry; all closed at teardown.

    Pass registry=None explicitly to get a machine that owns its own registry.
    """
    made: list[Machine] = []

    def make(**kw: Any) -> Machine:
        kw.setdefault("registry", registry)
        m = Machine(**kw)
        made.append(m)
        return m

    yield make
    for m in made:
        try:
            m.close()
        except Exception:  # teardown must close every machine
            log.exception("closing a machine failed")
