"""The pytest-facing test API on a real guest: e2k_boot, waits, prompts, failing strings."""

from __future__ import annotations

import threading

import pytest

from e2kchar import ChardevError
from e2kchar.machine import MachineError
from e2kchar.testing import ConsoleTimeout, FailingStringFound, boot


def test_boot_wait_and_type(e2k_boot):
    vm = e2k_boot()
    con = vm.console("serial0")
    banner = con.wait_for_line(r"E2K boot ROM \((?P<what>.*)\)", timeout=10)
    assert banner.named == {"what": "e2kchar demo"}
    assert banner.guest_time is not None and banner.guest_time >= 0
    con.wait_for_prompt("e2k> ", timeout=10)
    con.write_line("echo typed by a test")
    reply = con.wait_for_line(r"^typed by a test$", timeout=10)
    assert reply.guest_time >= banner.guest_time
    con.wait_for_prompt("e2k> ", timeout=10)
    con.write_line("exit 9")
    assert vm.wait(10).exit_code == 9


def test_failing_string_and_timeout(e2k_boot):
    vm = e2k_boot()
    con = vm.console("serial0")
    con.wait_for_prompt("e2k> ", timeout=10)
    with pytest.raises(ConsoleTimeout, match="e2k> "):
        con.wait_for_line("this never appears", timeout=0.3)
    con.fail_on("unknown command")
    con.write_line("frobnicate")
    with pytest.raises(FailingStringFound, match="unknown command: frobnicate"):
        con.wait_for_line("never", timeout=30)


def test_boot_with_a_file_console(e2k_boot, tmp_path):
    out = tmp_path / "console.txt"
    vm = e2k_boot(serial=[f"file:{out}"])
    vm.console("serial0").wait_for_prompt("e2k> ", timeout=10)
    vm.stop()
    assert out.read_bytes().startswith(b"E2K boot ROM (e2kchar demo)")


def test_a_failed_boot_leaves_no_threads(tmp_path):
    before = {t.ident for t in threading.enumerate()}
    for kw, error in ((dict(firmware=tmp_path / "missing.elf"), MachineError),
                      (dict(virtio=[("nope", None, True)]), ChardevError)):
        with pytest.raises(error):
            boot(**kw)
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []


def test_console_waits_on_a_real_guest_share_one_position(e2k_boot):
    vm = e2k_boot()
    con = vm.console("serial0")
    con.fail_on("unknown command")
    con.wait_for_bytes(b"e2k> ", timeout=10)
    with pytest.raises(ConsoleTimeout):  # the banner is behind us now
        con.wait_for_line("E2K boot ROM", timeout=0.2)
    con.write_line("frobnicate")
    with pytest.raises(FailingStringFound, match="frobnicate"):
        con.wait_for_bytes(b"never printed", timeout=30)
    vm.stop()
