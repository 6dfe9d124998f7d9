"""Fixtures for guest-level tests: build a driver, make a machine (closed after the test)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fw_support import load_tool

from e2kchar import ChardevRegistry
from e2kchar.machine import Machine

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def build_driver() -> Callable[..., Path]:
    """build_driver(name, map="e2k", defines=None, ...) -> Path of the ELF (cached by zig)."""
    mod = load_tool("build_firmware.py")

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
