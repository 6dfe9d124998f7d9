"""pytest plugin (auto-loaded): the `e2k_boot` fixture starts guests and cleans them up.

    def test_banner(e2k_boot):
        vm = e2k_boot()                      # the bundled demo, channel A in memory
        vm.console("serial0").wait_for_line("E2K boot ROM")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import RunningMachine, boot


@pytest.fixture
def e2k_boot() -> Iterator[Callable[..., RunningMachine]]:
    """boot(firmware=None, **kw) -> RunningMachine; every machine is closed after the test."""
    started: list[RunningMachine] = []

    def start(*args: Any, **kw: Any) -> RunningMachine:
        vm = boot(*args, **kw)
        started.append(vm)
        return vm

    yield start
    for vm in started:
        vm.close()
