"""pytest-embedded's serial service on an e2kchar console over RFC 2217 (README.md,
"Consoles for labgrid and pytest-embedded"):

    e2kchar run -chardev rfc2217,id=con,host=127.0.0.1,port=7000 -serial chardev:con &
    pytest --embedded-services serial --port rfc2217://127.0.0.1:7000 test_console.py
"""


def test_shell_through_the_console(dut):
    dut.expect("E2K boot ROM", timeout=30)
    dut.expect("e2k> ", timeout=30)
    dut.write("echo hello pytest-embedded")
    dut.expect("hello pytest-embedded")
    dut.expect("e2k> ")
