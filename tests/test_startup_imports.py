"""A plain `e2kchar run` imports only what its options need (start-up time, docs/architecture.md).

Each run is a fresh interpreter (a subprocess) that boots the bundled ROM through
cli.main as the `e2kchar` command runs it (no argv: sys.argv), types `exit 7` at its
prompt, and reports sys.modules afterwards. A backend,
the monitor or a library that the options do not ask for must not be among them: that is
what keeps start-up to the first guest byte short, and it came back once already (the
-chardev option table imported every backend).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import json, sys
from e2kchar import cli
report = sys.argv[1]
sys.argv = ["e2kchar", "run", *sys.argv[2:]]
status = cli.main()
modules = sorted(sys.modules)
import ssl  # hidden from asyncio only: the process can still import it
ssl.create_default_context()
with open(report, "w") as f:
    json.dump({"status": status, "modules": modules}, f)
"""

#: never needed by a run whose consoles are stdio, null and a file, without a monitor
NOT_ON_THE_PLAIN_PATH = [
    "e2kchar.chardev.backends.socket", "e2kchar.chardev.backends.udp",
    "e2kchar.chardev.backends.pty", "e2kchar.chardev.backends.serial",
    "e2kchar.chardev.backends.rfc2217", "e2kchar.chardev.backends.hub",
    "e2kchar.chardev.backends.mux", "e2kchar.chardev.backends.ringbuf",
    "e2kchar.chardev.backends.testdev",
    "e2kchar.chardev.websocket", "e2kchar.chardev.telnet", "e2kchar.chardev.config",
    "e2kchar.monitor", "e2kchar.monitor.qmp", "e2kchar.monitor.hmp",
    "e2kchar.monitor.commands", "e2kchar.capture",
    "serial",  # pyserial: host ttys and RFC 2217 only
    "email",  # the websocket handshake's date header
    "ssl", "_ssl",  # e2kchar has no TLS; asyncio imports ssl unless hidden (cli.py)
    # the binary layouts' declarations: start-up uses their struct forms (tools/gen_packed.py)
    "construct", "e2kchar.devices.layouts", "e2kchar.machine.headers",
    "datetime",  # logtimestamp=on stamps lines with it
    "base64",  # the monitor's ringbuf-read/-write format=base64
]


def _run(tmp_path: Path, *args: str) -> tuple[str, set[str]]:
    report = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(report), *args, "--timeout", "60"],
                          input=b"exit 7\n", capture_output=True, timeout=120)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")
    result = json.loads(report.read_text())
    assert result["status"] == 7, out + proc.stderr.decode(errors="replace")
    return out, set(result["modules"])


@pytest.mark.timeout(150)
def test_plain_run_loads_no_backend_or_monitor_it_does_not_use(tmp_path: Path) -> None:
    out_file = tmp_path / "b.out"
    out, modules = _run(tmp_path, "-serial", "stdio", "-serial", "null",
                        "-serial", f"file:{out_file}")
    assert "halting, exit code 7" in out, out
    loaded = sorted(m for m in NOT_ON_THE_PLAIN_PATH if m in modules)
    assert loaded == [], f"the plain run path imported {loaded}"
    # the ones it does use are there: the check above is not vacuous
    for used in ("e2kchar.chardev.backends.stdio", "e2kchar.chardev.backends.null",
                 "e2kchar.chardev.backends.file", "e2kchar.machine", "unicorn", "asyncio",
                 "e2kchar.machine.headers_packed", "e2kchar.devices.layouts_packed"):
        assert used in modules, used


@pytest.mark.timeout(150)
def test_options_that_need_more_load_it(tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    out, modules = _run(tmp_path, "-chardev", "stdio,id=con,mux=on", "-serial", "chardev:con",
                        "-serial", "null", "-serial", "null",
                        "-qmp", f"unix:{sock},server=on,wait=off")
    assert "halting, exit code 7" in out, out
    for needed in ("e2kchar.chardev.backends.mux", "e2kchar.chardev.backends.socket",
                   "e2kchar.monitor.qmp"):
        assert needed in modules, needed
    assert "e2kchar.chardev.backends.serial" not in modules
