"""labgrid and pytest-embedded drive e2kchar consoles over RFC 2217, as their users run them:
the examples under examples/labgrid and examples/pytest-embedded, run by each tool's own
pytest from PyPI. Each tool gets its own venv under ~/.cache/e2kchar (labgrid brings a fork
of pyserial that overlaps pyserial's files; neither tool belongs in the test environment).
labgrid's venv installs this checkout with its [labgrid] extra, as a user would."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fw_support import end_process, poll_until

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "e2kchar"
E2KCHAR = [sys.executable, "-m", "e2kchar", "run"]
LABGRID = ["-e", f"{REPO}[labgrid]", "labgrid==26.0.1"]
PYTEST_EMBEDDED = ["pytest-embedded==2.9.3", "pytest-embedded-serial==2.9.3"]

pytestmark = pytest.mark.timeout(900)  # a fresh machine installs each tool once (~1 min)


def tool_venv(name: str, requirements: list[str]) -> Path:
    """bin/ of a venv with `requirements`, made once per checkout, Python and requirement
    list (older ones of the same checkout are removed)."""
    stamp = json.dumps([sys.version, str(REPO), requirements,
                        (REPO / "pyproject.toml").read_text()])
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    root = CACHE / f"venv-{name}-{key}"
    if (root / "ready").is_file():
        return root / "bin"
    for old in CACHE.glob(f"venv-{name}-*"):
        ready = old / "ready"
        if old != root and ready.is_file() and json.loads(ready.read_text())[1] == str(REPO):
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    done = subprocess.run([root / "bin" / "python", "-m", "pip", "install", "-q",
                           *requirements], capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    (root / "ready").write_text(stamp)
    return root / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def started(args: list[str | Path], log: Path, **kw) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, **kw)
    try:
        yield proc
    finally:
        end_process(proc)


@contextmanager
def wait_then(pred, what: str) -> Iterator[None]:
    """poll_until as a step of a `with` chain (the exporter gives up on a coordinator that
    is not listening yet)."""
    poll_until(pred, 30, what)
    yield


@contextmanager
def demo_console(tmp_path: Path) -> Iterator[int]:
    """The bundled demo ROM, channel A on an rfc2217 server that holds the guest until the
    first client opens the port; yields the port."""
    log = tmp_path / "machine.log"
    with started([*E2KCHAR, "-chardev", "rfc2217,id=con,host=127.0.0.1,port=0",
                  "-serial", "chardev:con", "--timeout", "300"], log):
        m = poll_until(lambda: re.search(rb"disconnected:rfc2217:127\.0\.0\.1:(\d+),server",
                                       log.read_bytes()), 30, "the rfc2217 server")
        yield int(m.group(1))


def run_pytest(bin_dir: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None,
               ) -> str:
    proc = subprocess.run([bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider",
                           "-q", *args], cwd=cwd, capture_output=True, timeout=300,
                          env={**os.environ, **(env or {})})
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    return out


def test_labgrid_driver_powers_the_machine_and_is_its_console():
    """labgrid's pytest plugin with examples/labgrid/env.yaml: `imports: [e2kchar.labgrid]`
    registers E2kcharMachine and E2kcharDriver; on() (paused start, QMP cont), expect and
    sendline over RFC 2217, cycle() and off() (QMP quit)."""
    bin_dir = tool_venv("labgrid", LABGRID)
    out = run_pytest(bin_dir, ["--lg-env", "env.yaml", "test_console.py"],
                     EXAMPLES / "labgrid")
    assert re.search(r"\b2 passed\b", out), out


def test_labgrid_exporter_shares_a_console_as_network_serial_port(tmp_path):
    """The README's recipe: a running machine's rfc2217 console exported with
    labgrid-exporter (examples/labgrid/exporter.yaml) through a coordinator; a client
    acquires the place and labgrid's own SerialDriver drives the shell."""
    bin_dir = tool_venv("labgrid", LABGRID)
    coordinator = f"127.0.0.1:{free_port()}"
    client = [bin_dir / "labgrid-client", "-x", coordinator, "-p", "e2k"]

    def labgrid_client(*args: str) -> str:
        proc = subprocess.run([*client, *args], capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout.decode(errors="replace")

    def listening() -> bool:
        host, _, tcp = coordinator.partition(":")
        try:
            socket.create_connection((host, int(tcp)), timeout=1).close()
        except OSError:
            return False
        return True

    with demo_console(tmp_path) as port, \
            started([bin_dir / "labgrid-coordinator", "-l", coordinator],
                    tmp_path / "coordinator.log", cwd=tmp_path), \
            wait_then(listening, "the coordinator"), \
            started([bin_dir / "labgrid-exporter", "-c", coordinator, "--hostname",
                     "127.0.0.1", "-n", "e2khost", EXAMPLES / "labgrid" / "exporter.yaml"],
                    tmp_path / "exporter.log", env={**os.environ,
                                                    "E2K_CONSOLE_PORT": str(port)}):
        def exported() -> bool:
            proc = subprocess.run([*client[:3], "resources"], capture_output=True, timeout=60)
            return b"e2khost/e2k/NetworkSerialPort" in proc.stdout
        poll_until(exported, 60, "the exported console")
        labgrid_client("create")
        labgrid_client("add-match", "e2khost/e2k/NetworkSerialPort")
        labgrid_client("acquire")
        shown = labgrid_client("show")
        assert f"'port': {port}" in shown and "'host': '127.0.0.1'" in shown, shown
        out = run_pytest(bin_dir, ["--lg-env", "remote-env.yaml", "test_remote_console.py"],
                         EXAMPLES / "labgrid", env={"LG_COORDINATOR": coordinator})
        assert re.search(r"\b1 passed\b", out), out
        labgrid_client("release")


def test_pytest_embedded_serial_service_over_rfc2217(tmp_path):
    """pytest-embedded's `serial` service with --port rfc2217://...: dut.expect/dut.write
    on the demo ROM's shell (examples/pytest-embedded)."""
    bin_dir = tool_venv("pytest-embedded", PYTEST_EMBEDDED)
    with demo_console(tmp_path) as port:
        out = run_pytest(bin_dir, ["--embedded-services", "serial",
                                   "--port", f"rfc2217://127.0.0.1:{port}", "test_console.py"],
                         EXAMPLES / "pytest-embedded")
    assert re.search(r"\b1 passed\b", out), out
