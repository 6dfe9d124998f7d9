"""One error root: an embedding emulator catches every e2kchar failure with one clause."""

from __future__ import annotations

import pytest
from e2kchar.devices import GuestMemoryError
from e2kchar.devices.virtqueue import VirtqueueError

from e2kchar import ChardevError, ChardevRegistry, E2kcharError
from e2kchar.cli import CliError
from e2kchar.machine.elf import ElfError
from e2kchar.machine.fdt import FdtError
from e2kchar.machine.machine import MachineError
from e2kchar.monitor.commands import QmpError
from e2kchar.monitor.hmp import HmpError
from e2kchar.testing import ConsoleTimeout, FailingStringFound


@pytest.mark.parametrize(
    "cls",
    [ChardevError, CliError, GuestMemoryError, VirtqueueError, ElfError, FdtError, MachineError,
     QmpError, HmpError, ConsoleTimeout, FailingStringFound],
)
def test_every_error_class_is_under_the_root(cls: type) -> None:
    assert issubclass(cls, E2kcharError)


def test_historical_second_bases_are_kept() -> None:
    assert issubclass(ElfError, ValueError) and issubclass(FdtError, ValueError)
    assert issubclass(ConsoleTimeout, AssertionError)


def test_a_chardev_failure_is_caught_by_the_root() -> None:
    with ChardevRegistry() as reg, pytest.raises(E2kcharError, match="Chardev 'nope' not found"):
        reg.remove("nope")
