"""A labgrid client on any host reaches a shared e2kchar console: the exporter publishes it as
a NetworkSerialPort, labgrid's own SerialDriver opens it over RFC 2217.

    LG_COORDINATOR=host:port pytest --lg-env remote-env.yaml test_remote_console.py
"""


def test_shell_through_the_exported_console(target):
    console = target.get_driver("SerialDriver")
    target.activate(console)
    console.sendline("")
    console.expect("e2k> ", timeout=30)
    console.sendline("echo hello from a labgrid place")
    index, _, _, _ = console.expect(["hello from a labgrid place", "unknown command"])
    assert index == 0
    console.expect("e2k> ")
