"""labgrid drives an e2kchar machine through E2kcharDriver: power (QMP) and console (RFC 2217).

    pytest --lg-env env.yaml test_console.py
"""

import pytest


@pytest.fixture
def machine(target):
    power = target.get_driver("PowerProtocol")
    target.activate(power)
    power.on()
    yield power
    power.off()


def test_shell_through_the_console(target, machine):
    console = target.get_driver("ConsoleProtocol")
    assert console is machine  # one driver is both
    console.expect("E2K boot ROM", timeout=30)
    console.expect("e2k> ", timeout=30)
    console.sendline("echo hello labgrid")
    index, before, match, after = console.expect(["hello labgrid", "unknown command"])
    assert index == 0
    console.expect("e2k> ")
    assert machine.monitor_command("query-status")["status"] == "running"


def test_power_cycle_boots_again(target, machine):
    console = target.get_driver("ConsoleProtocol")
    console.expect("e2k> ", timeout=30)
    machine.cycle()
    console.expect("E2K boot ROM", timeout=30)
    console.expect("e2k> ", timeout=30)
    machine.off()
    with pytest.raises(Exception, match="not running"):
        machine.monitor_command("query-status")
    machine.on()
    console.expect("e2k> ", timeout=30)
