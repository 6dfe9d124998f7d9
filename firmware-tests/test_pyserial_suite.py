"""pyserial's own test suite (test/test.py and test/test_advanced.py of pyserial 3.5's sdist,
fetched into a cache outside the checkout) against a guest loopback: `e2kchar run` with the
16550 echo guest built EOT_EXITS=0 MODEM_LOOP=1 (every byte echoed, CTS/DSR mirrored on
RTS/DTR as a loopback plug wires them), reached over a pty and over rfc2217://.

Over rfc2217:// the null-modem line carries the modem lines, so the DataWires tests run. What
is skipped, and why (each id listed here must exist, and nothing else is skipped):
- pty: a pty has no modem lines (TIOCMGET/TIOCMBIS on a pty fail with ENOTTY, so pyserial's
  .rts/.dtr/.cts/.dsr/.ri raise): Test0_DataWires.*.
- rfc2217: limits of pyserial 3.5's own rfc2217:// client, whatever the server does:
  its read() with timeout=0 returns at most one byte (its Timeout(0) counts as expired once
  the first byte is in), so Test4_Nonblocking.test2_Loopback and test2_LoopbackTimeout
  cannot get their 16 and 5 bytes; and it raises NotImplementedError for write_timeout
  (_reconfigure_port), so Test_MoreTimeouts.test_WriteTimeout cannot open its port.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import serial
from fw_support import end_process, poll_until

E2KCHAR = [sys.executable, "-m", "e2kchar", "run"]
SDIST = "pyserial==3.5"
SDIST_FILE = "pyserial-3.5.tar.gz"
SDIST_SHA256 = "3c77e014170dfffbd816e6ffc205e9842efb10be9f58ec16d3e8675b4925cddb"
MODULES = ("test", "test_advanced")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "e2kchar" / "pyserial-3.5"

NO_MODEM_LINES = "a pty has no modem lines (TIOCMGET/TIOCMBIS: ENOTTY)"
ONE_BYTE_READS = "pyserial's rfc2217 client reads at most one byte per read() with timeout=0"
SKIPS = {
    "pty": {
        "Test0_DataWires.test1_RTS": NO_MODEM_LINES,
        "Test0_DataWires.test2_DTR": NO_MODEM_LINES,
        "Test0_DataWires.test3_RI": NO_MODEM_LINES,
    },
    "rfc2217": {
        "Test4_Nonblocking.test2_Loopback": ONE_BYTE_READS,
        "Test4_Nonblocking.test2_LoopbackTimeout": ONE_BYTE_READS,
        "Test_MoreTimeouts.test_WriteTimeout":
            "pyserial's rfc2217 client does not implement write_timeout (NotImplementedError)",
    },
}
#: every test in the two files (a new pyserial would change this on purpose, not by accident)
TOTAL = 25


def pyserial_tests() -> Path:
    """The two test files from pyserial 3.5's sdist on PyPI, fetched once with pip (checked
    against the sdist's sha256) into a cache outside the checkout."""
    if all((CACHE / f"{name}.py").is_file() for name in MODULES):
        return CACHE
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", tmp, SDIST],
                       check=True, capture_output=True, timeout=600)
        sdist = Path(tmp) / SDIST_FILE
        assert hashlib.sha256(sdist.read_bytes()).hexdigest() == SDIST_SHA256
        with tarfile.open(sdist) as tar:
            for name in MODULES:
                member = tar.extractfile(f"pyserial-3.5/test/{name}.py")
                assert member is not None
                part = CACHE / f"{name}.py.part"
                part.write_bytes(member.read())
                part.replace(CACHE / f"{name}.py")
    return CACHE


def load_module(folder: Path, name: str, port: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pyserial_suite_{name}", folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PORT = port  # what their __main__ does with argv[1]
    return module


def iter_cases(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_cases(item)
        else:
            yield item


def short_id(case: unittest.TestCase) -> str:
    return ".".join(case.id().split(".")[-2:])


def run_pyserial_suite(port: str, skips: dict[str, str]) -> unittest.TestResult:
    folder = pyserial_tests()
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for name in MODULES:
        for case in iter_cases(loader.loadTestsFromModule(load_module(folder, name, port))):
            reason = skips.get(short_id(case))
            if reason is not None:
                method = case.id().rsplit(".", 1)[1]
                setattr(case, method, unittest.skip(reason)(getattr(case, method)))
            suite.addTest(case)
    result = unittest.TestResult()
    suite.run(result)
    return result


@pytest.fixture(scope="module")
def echo_elf(build_driver) -> Path:
    return build_driver("ns16550_irq_echo", defines={"EOT_EXITS": 0, "MODEM_LOOP": 1})


@pytest.fixture
def loopback(request, echo_elf, tmp_path) -> Iterator[str]:
    """`e2kchar run` with the echo guest on COM1 behind a pty or an rfc2217 server; yields
    the port name pyserial opens, after the guest's "ready" line has been read."""
    kind = request.param
    err = tmp_path / "stderr.txt"
    if kind == "pty":
        link = tmp_path / "ttyE2K"
        chardev = f"pty,id=con,path={link}"
    else:
        chardev = "rfc2217,id=con,host=127.0.0.1,port=0"
    with err.open("wb") as err_file:
        proc = subprocess.Popen([*E2KCHAR, str(echo_elf), "-chardev", chardev,
                                 "-device", "ns16550a,chardev=con"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err_file)
    try:
        if kind == "pty":
            poll_until(lambda: b"char device redirected to" in err.read_bytes(), 30, "the pty")
            port = str(link)
        else:
            m = poll_until(lambda: re.search(rb"waiting for connection on: "
                                           rb"disconnected:rfc2217:127\.0\.0\.1:(\d+)",
                                           err.read_bytes()), 30, "the rfc2217 server")
            port = f"rfc2217://127.0.0.1:{int(m.group(1))}"
        # the suite's first test wants an empty input buffer after open: read the guest's
        # "ready" line (kept for the first client) and anything else, up to the echo of a
        # marker (sent until one comes back: input before the guest has set up its UART is
        # lost, as on hardware)
        with serial.serial_for_url(port, timeout=0.5) as s:
            for _ in range(60):
                s.write(b"#")
                if s.read_until(b"#").endswith(b"#"):
                    break
            else:
                raise AssertionError(f"no echo from the guest: {err.read_bytes()!r}")
            s.timeout = 0.3
            while s.read(1000):
                pass
        yield port
    finally:
        end_process(proc)
    assert proc.returncode in (0, -15, 143), err.read_bytes()


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyserial 3.5 and its tests
@pytest.mark.parametrize("loopback", ["pty", "rfc2217"], indirect=True)
def test_pyserial_suite_against_a_guest_loopback(loopback, request):
    kind = request.node.callspec.params["loopback"]
    result = run_pyserial_suite(loopback, SKIPS[kind])
    problems = [f"{short_id(case)}: {text}" for case, text in result.failures + result.errors]
    assert problems == [], "\n".join(problems)
    assert result.testsRun == TOTAL
    assert {short_id(case): why for case, why in result.skipped} == SKIPS[kind]
