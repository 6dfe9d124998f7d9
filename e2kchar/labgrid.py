"""labgrid support: the E2kcharMachine resource and the E2kcharDriver (power and console).

Installed with ``pip install 'e2kchar[labgrid]'``. labgrid loads third-party drivers through
the ``imports:`` list of an environment file, so listing ``e2kchar.labgrid`` there registers
both classes with labgrid's target factory::

    imports:
      - e2kchar.labgrid
    targets:
      main:
        resources:
          E2kcharMachine: {firmware: fw.elf}
        drivers:
          E2kcharDriver: {}

The driver implements labgrid's PowerProtocol (``on`` starts ``e2kchar run`` paused with
``-S`` and a QMP socket, opens the console, then sends ``cont``; ``off`` sends ``quit``) and
ConsoleProtocol (``expect``/``sendline``/...) over RFC 2217, the same console a remote
``rfc2217://`` client gets. See README.md, "Consoles for labgrid and pytest-embedded".
This module only talks to the machine through its command line, QMP and the console socket,
so it imports nothing else of e2kchar.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import attr
import serial
from labgrid.driver.common import Driver
from labgrid.driver.consoleexpectmixin import ConsoleExpectMixin
from labgrid.driver.exception import ExecutionError
from labgrid.factory import target_factory
from labgrid.protocol import ConsoleProtocol, PowerProtocol
from labgrid.resource.common import Resource
from labgrid.step import step
from pexpect import TIMEOUT
from qemu.qmp.legacy import QEMUMonitorProtocol

__all__ = ["E2kcharDriver", "E2kcharMachine"]

#: the console chardev's id inside the machine
CONSOLE_ID = "labgrid-console"
#: how the console reaches the guest: -serial (channel A of the Am85C30) or a -device
CONSOLE_DEVICES = ("serial", "ns16550a", "am85c30", "virtconsole", "lms")
#: the read timeout of the RFC 2217 client (pyserial renegotiates on every timeout change,
#: so the driver keeps one and loops)
_POLL = 0.05


def _str_list(inst: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{attribute.name} must be a list of strings")


@target_factory.reg_resource
@attr.s(eq=False)
class E2kcharMachine(Resource):
    """An E2K machine that ``e2kchar run`` boots: which firmware, which console, which
    further options; the RFC 2217 console listens on host:port (port 0: a free one)."""

    firmware = attr.ib(default=None,
                       validator=attr.validators.optional(attr.validators.instance_of(str)))
    args = attr.ib(default=attr.Factory(list), validator=_str_list)
    console = attr.ib(default="serial", validator=attr.validators.in_(CONSOLE_DEVICES))
    host = attr.ib(default="127.0.0.1", validator=attr.validators.instance_of(str))
    port = attr.ib(default=0, validator=attr.validators.instance_of(int))
    #: how to start e2kchar (default: this Python's ``-m e2kchar``)
    command = attr.ib(default=None,
                      validator=attr.validators.optional(attr.validators.instance_of(str)))

    def run_command(self, qmp_path: str) -> list[str]:
        """The ``e2kchar run`` command line: paused, QMP on qmp_path, the RFC 2217 console."""
        cmd = shlex.split(self.command) if self.command else [sys.executable, "-m", "e2kchar"]
        cmd.append("run")
        if self.firmware:
            cmd.append(self.firmware)
        cmd += ["-S", "-qmp", f"unix:{qmp_path},server=on,wait=off",
                "-chardev", f"rfc2217,id={CONSOLE_ID},host={self.host},port={self.port},"
                "wait=off"]
        if self.console == "serial":
            cmd += ["-serial", f"chardev:{CONSOLE_ID}"]
        elif self.console == "am85c30":
            cmd += ["-device", f"am85c30,chardev-a={CONSOLE_ID}"]
        else:
            cmd += ["-device", f"{self.console},chardev={CONSOLE_ID}"]
        extra: list[str] = list(self.args)
        return cmd + extra


@target_factory.reg_driver
@attr.s(eq=False)
class E2kcharDriver(ConsoleExpectMixin, Driver, PowerProtocol, ConsoleProtocol):
    """Powers an E2kcharMachine (QMP: start paused, ``cont``, ``quit``) and is its console
    over RFC 2217 (pyserial's rfc2217:// client)."""

    bindings = {"machine": "E2kcharMachine"}

    txdelay = attr.ib(default=0.0, validator=attr.validators.instance_of(float))
    txchunk = attr.ib(default=1, validator=attr.validators.instance_of(int))
    #: seconds the machine may take to open its QMP socket
    start_timeout = attr.ib(default=30.0, validator=attr.validators.instance_of(float))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.status = 0
        self.console_url: str | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self._serial: Any = None
        self._tmp: str | None = None
        atexit.register(self._kill)

    def on_deactivate(self) -> None:
        self.off()

    # -- PowerProtocol ------------------------------------------------------------------

    @Driver.check_active
    @step()
    def on(self) -> None:
        """Start the machine paused, connect QMP and the console, then ``cont``."""
        if self.status:
            return
        self._tmp = tempfile.mkdtemp(prefix="labgrid-e2kchar-")
        qmp_path = os.path.join(self._tmp, "qmp.sock")
        log_path = os.path.join(self._tmp, "stderr.txt")
        cmd = self.machine.run_command(qmp_path)
        self.logger.debug("starting %s", shlex.join(cmd))
        with open(log_path, "wb") as log:
            self._child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=log)
        try:
            self._wait_for(qmp_path, log_path)
            self._qmp = QEMUMonitorProtocol(qmp_path)
            self._qmp.connect()
            self.console_url = self._console_url()
            self._serial = serial.serial_for_url(self.console_url, timeout=_POLL)
            self.status = 1
            self.monitor_command("cont")
        except BaseException:
            self._kill()
            raise

    @step()
    def off(self) -> None:
        """``quit`` through QMP and wait for the machine to exit."""
        if not self.status:
            return
        self.status = 0
        try:
            if self._qmp is not None:
                self._qmp.cmd("quit")
        except Exception as exc:  # the machine may already be gone; it is ended below
            self.logger.debug("quit: %s", exc)
        self._kill(quitting=True)

    def cycle(self) -> None:
        self.off()
        self.on()

    @step(result=True, args=["command", "arguments"])
    def monitor_command(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """A QMP command on the running machine; its "return" value."""
        if not self.status or self._qmp is None:
            raise ExecutionError("the e2kchar machine is not running")
        return self._qmp.cmd(command, **(arguments or {}))

    def _wait_for(self, qmp_path: str, log_path: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(qmp_path):
            child = self._child
            if child is not None and child.poll() is not None:
                with open(log_path, "rb") as f:
                    err = f.read().decode(errors="replace").strip()
                raise ExecutionError(f"e2kchar run exited with {child.returncode}: {err}")
            if time.monotonic() > deadline:
                raise ExecutionError("e2kchar run did not open its QMP socket in time")
            time.sleep(0.02)

    def _console_url(self) -> str:
        assert self._qmp is not None
        chardevs = self._qmp.cmd("query-chardev")
        assert isinstance(chardevs, list)
        for info in chardevs:
            if info.get("label") == CONSOLE_ID:
                m = re.search(r"rfc2217:(.+):(\d+),server", str(info.get("filename")))
                if m is not None:
                    host = m.group(1).strip("[]")
                    if host in ("0.0.0.0", "::", ""):
                        host = "127.0.0.1"
                    return f"rfc2217://{host}:{m.group(2)}"
        raise ExecutionError(f"no rfc2217 console in query-chardev: {chardevs}")

    def _kill(self, quitting: bool = False) -> None:
        """Close the console and QMP, end the machine (it was told to quit, or gets
        SIGTERM) and remove the temporary folder."""
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # the machine went first
                self.logger.debug("closing the console: %s", exc)
        qmp, self._qmp = self._qmp, None
        if qmp is not None:
            try:
                qmp.close()
            except Exception as exc:  # the socket is gone with the machine
                self.logger.debug("closing QMP: %s", exc)
        child, self._child = self._child, None
        if child is not None:
            if not quitting and child.poll() is None:
                child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        self.status = 0

    # -- ConsoleProtocol (through ConsoleExpectMixin) -------------------------------------

    def _read(self, size: int = 1, timeout: float = 0.0, max_size: int | None = None) -> bytes:
        """At least `size` bytes if they come within `timeout` (more if already there, up
        to max_size); what came by then; pexpect's TIMEOUT if nothing did."""
        port = self._serial
        if not self.status or port is None:
            raise ExecutionError("the e2kchar machine is not running")
        deadline = time.monotonic() + timeout
        data: bytes = b""
        while True:
            want = max(size - len(data), port.in_waiting, 1)
            if max_size:
                want = min(want, max_size - len(data))
            chunk: bytes = port.read(want)
            data += chunk
            if len(data) >= size or (max_size and len(data) >= max_size):
                return data
            if time.monotonic() >= deadline:
                if data:
                    return data
                raise TIMEOUT(f"Timeout of {timeout:.2f} seconds exceeded")

    def _write(self, data: bytes) -> int:
        port = self._serial
        if not self.status or port is None:
            raise ExecutionError("the e2kchar machine is not running")
        n = port.write(data)
        return len(data) if n is None else int(n)

    def __str__(self) -> str:
        return f"E2kcharDriver({self.target.name})"
