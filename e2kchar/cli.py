"""`e2kchar run`: boot a firmware on the E2K machine with QEMU-style options.

Examples:
  e2kchar run                                   bundled demo ROM, channel A on mon:stdio
  e2kchar run fw.elf -serial file:/tmp/a.log    channel A to a file
  e2kchar run -bios u-boot.bin -serial null -serial null -serial unix:/tmp/con,server=on,wait=off
  e2kchar run -chardev socket,id=c0,host=127.0.0.1,port=4444,server=on,wait=off \\
              -serial chardev:c0 -qmp unix:/tmp/qmp.sock,server=on,wait=off
  e2kchar run -chardev ringbuf,id=v0 -device virtconsole,chardev=v0 --capture boot.log
  e2kchar run -chardev file,id=c,path=boot.txt,logfile=boot.log,logtimestamp=on \\
              -serial chardev:c --timeout 30        boot log with host and guest times
  e2kchar run -bios fw_jump.elf -kernel u-boot.bin -serial null -serial null -serial stdio
  e2kchar run -S -qmp tcp:127.0.0.1:4444,server=on,wait=off   wait for QMP 'cont'
  e2kchar run -chardev rfc2217,id=con,host=127.0.0.1,port=7000 -serial chardev:con
              console for pyserial's rfc2217://127.0.0.1:7000 (modem lines, BREAK),
              labgrid's NetworkSerialPort and pytest-embedded's --port rfc2217://...
  e2kchar run -chardev pty,id=p,path=/tmp/e2k-tty -chardev file,id=f,path=con.log \\
              -chardev hub,id=h,chardevs.0=p,chardevs.1=f -serial chardev:h
              one console on a pty at a stable path (picocom /tmp/e2k-tty) and in a file
  e2kchar run fw.elf -serial null -serial null -serial /dev/ttyUSB0
              COM1 on a host serial port (pyserial; a path that is no tty, e.g.
              /dev/null, is taken as QEMU takes it: bytes only, no line settings)
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .chardev.types import ChardevError
from .errors import E2kcharError
from .hostsignals import HostSignal, HostSignals
from .options import parse_chardev, parse_legacy, split_opts

if TYPE_CHECKING:
    from .chardev.registry import ChardevRegistry

log = logging.getLogger("e2kchar")

EXIT_TIMEOUT = 124

_DEVICE_KEYS = {k: "string" for k in ("driver", "chardev", "chardev-a", "chardev-b", "name",
                                      "file", "addr", "id")}

EPILOG = """\
options (QEMU spelling):
  -serial SPEC      binds in order Am85C30 channel A, channel B, COM1 (16550 at port 0x3F8);
                    SPEC is QEMU's legacy syntax: stdio, mon:stdio, null, none, pty,
                    file:PATH, pipe:PATH, tcp:HOST:PORT[,server=on,wait=off],
                    telnet:..., unix:PATH[,server=on,wait=off], udp:[R]:PORT[@[L]:PORT],
                    /dev/ttyS0, chardev:ID. The N-th -serial creates chardev 'serialN'.
                    Default: channel A on mon:stdio (Ctrl-A x quits, Ctrl-A c: monitor).
  -chardev SPEC     backend,id=ID[,key=value...] e.g. ringbuf,id=r0,size=64k
                    or socket,id=s0,host=127.0.0.1,port=0,server=on,wait=off,history=64k
                    or rfc2217,id=r0,host=127.0.0.1,port=7000[,wait=off]  (RFC 2217 server)
                    or hub,id=h,chardevs.0=A,chardevs.1=B  (output to all, input from any)
  -device SPEC      virtconsole,chardev=ID[,name=NAME][,id=DEV]  virtio-console port (slot 0)
                    virtserialport,chardev=ID,name=NAME[,id=DEV] named virtio-serial port
                    (with id=DEV, the guest opening/closing the port is QMP VSERPORT_CHANGE)
                    am85c30,chardev-a=ID[,chardev-b=ID]  ns16550a,chardev=ID  lms,chardev=ID
                    loader,file=FILE,addr=ADDR           raw file into guest memory
  -qmp SPEC         QMP monitor: unix:PATH,server=on,wait=off or tcp:127.0.0.1:PORT,...
  -mon chardev=ID   human monitor on a chardev (usually a mux)
  --capture FILE    every console's output in one file, each line tagged [LABEL]
exit status: the guest's (exit device); 124 when --timeout expires; 2 for a bad option.
"""


class CliError(E2kcharError):
    """A bad option: printed as 'e2kchar: ...' with exit status 2."""


def parse_size(text: str) -> int:
    """-m: a number of MiB, or with a k/M/G suffix."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t) << 20
    except (ValueError, OverflowError):  # "infk", "1e400k": not a size
        raise CliError(f"invalid RAM size '{text}'") from None


def parse_seconds(text: str) -> float:
    """--timeout: a finite, non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds '{text}'") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a number of seconds (finite, 0 or more)")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="e2kchar run", description=__doc__.split("\n\n", 1)[0],
        epilog=(__doc__.split("\n", 2)[2] + "\n" + EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("firmware", nargs="?", help="guest ELF or raw image (default: bundled demo)")
    ap.add_argument("-bios", help="firmware image (raw at the RAM base, or ELF)")
    ap.add_argument("-kernel", help="next stage, loaded at RAM base + 2 MiB")
    ap.add_argument("-initrd", help="initial RAM disk (above the kernel, as QEMU puts it; "
                    "/chosen linux,initrd-start/end)")
    ap.add_argument("-m", default="128M", help="RAM size (default 128M)")
    ap.add_argument("-append", default="", help="kernel command line (boot_info)")
    ap.add_argument("-chardev", action="append", default=[], metavar="SPEC",
                    help="a character device (see below)")
    ap.add_argument("-serial", action="append", default=[], metavar="SPEC",
                    help="the next serial port's backend (see below); as in QEMU, "
                         "tcp::PORT (no host) listens on all addresses, not only loopback")
    ap.add_argument("-device", action="append", default=[], metavar="SPEC",
                    help="bind a frontend to a chardev, or load a file (see below)")
    ap.add_argument("-qmp", action="append", default=[], metavar="SPEC",
                    help="a QMP monitor socket (see below)")
    ap.add_argument("-mon", action="append", default=[], metavar="SPEC",
                    help="a human monitor on a chardev (see below)")
    ap.add_argument("-S", dest="prelaunch", action="store_true",
                    help="do not start the CPU until a monitor says 'cont'")
    ap.add_argument("-nographic", action="store_true", help="accepted for QEMU compatibility")
    ap.add_argument("--timeout", type=parse_seconds, default=None, metavar="SECONDS",
                    help="stop the guest after SECONDS and exit 124")
    ap.add_argument("--capture", metavar="FILE",
                    help="record every console to FILE, one tagged line at a time")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    return ap


def bundled_firmware() -> Path:
    return Path(str(resources.files("e2kchar.machine") / "firmware" / "e2k-demo.elf"))


@dataclass
class _Plan:
    serial: list[Any] = field(default_factory=lambda: [None, None, None])
    lms: Any = None
    #: (chardev, port name, console?, device id) per -device virtconsole/virtserialport
    virtio: list[tuple[Any, str | None, bool, str | None]] = field(default_factory=list)
    loaders: list[tuple[str, int]] = field(default_factory=list)
    monitors: list[str] = field(default_factory=list)


class MachineControl:
    """The QMP/HMP view of a running machine (VmControl)."""

    def __init__(self, machine: Any, on_quit: Any) -> None:
        self.machine = machine
        self._on_quit = on_quit
        self._state = "running"
        self._launch = threading.Lock()
        self._launch_held = False

    def status(self) -> str:
        return self._state

    def hold_launch(self) -> None:
        """-S, before any monitor listens: the status is prelaunch from the start, as on
        QEMU, and a `cont` that comes before prelaunch() releases the launch for it."""
        self._state = "prelaunch"
        self._launch_held = True

    def prelaunch(self) -> None:
        """-S: the CPU waits for `cont` before its first instruction (unless a client
        said `cont` while the machine was still being loaded)."""
        with self._launch:
            if self._launch_held:
                self.machine.pause()

    def stop(self) -> None:
        if self.machine.pause() is False:
            raise RuntimeError("the guest CPU did not pause in time")
        self._state = "paused"

    def cont(self) -> None:
        with self._launch:
            self._launch_held = False
            self.machine.resume()
            self._state = "running"

    def system_reset(self) -> None:
        self.machine.reset()

    def quit(self) -> None:
        self._on_quit()


def _chardev_by_id(reg: ChardevRegistry, ident: str | None, what: str) -> Any:
    if ident is None:
        return None
    chr_ = reg.find(ident)
    if chr_ is None:
        raise CliError(f"{what}: chardev '{ident}' not found")
    return chr_


def _need(opts: dict[str, str], key: str, driver: str) -> None:
    """A serial device without its chardev would be a port wired to nothing, silently."""
    if not opts.get(key):
        raise CliError(f"-device {driver} needs {key}=ID")


def _plan_devices(reg: ChardevRegistry, args: argparse.Namespace, plan: _Plan) -> None:
    for spec in args.device:
        try:
            opts = split_opts(spec, implied="driver", keys=_DEVICE_KEYS)
        except ChardevError as exc:
            raise CliError(f"-device {spec}: {exc}") from None
        driver = opts.get("driver", "")
        if driver in ("virtconsole", "virtserialport", "ns16550a", "lms"):
            _need(opts, "chardev", driver)
        elif driver == "am85c30":
            _need(opts, "chardev-a", driver)
        if driver in ("virtconsole", "virtserialport"):
            chr_ = _chardev_by_id(reg, opts.get("chardev"), f"-device {driver}")
            name = opts.get("name")
            if driver == "virtserialport" and not name:
                raise CliError("-device virtserialport needs name=NAME")
            plan.virtio.append((chr_, name, driver == "virtconsole", opts.get("id")))
        elif driver == "am85c30":
            plan.serial[0] = _chardev_by_id(reg, opts.get("chardev-a"), "-device am85c30")
            plan.serial[1] = _chardev_by_id(reg, opts.get("chardev-b"), "-device am85c30")
        elif driver == "ns16550a":
            plan.serial[2] = _chardev_by_id(reg, opts.get("chardev"), "-device ns16550a")
        elif driver == "lms":
            plan.lms = _chardev_by_id(reg, opts.get("chardev"), "-device lms")
        elif driver == "loader":
            if "file" not in opts or "addr" not in opts:
                raise CliError("-device loader needs file=FILE,addr=ADDR")
            try:
                addr = int(opts["addr"], 0)
            except ValueError:
                raise CliError(f"-device loader: bad address '{opts['addr']}'") from None
            plan.loaders.append((opts["file"], addr))
        else:
            raise CliError(f"-device: unknown device '{driver}' (virtconsole, virtserialport, "
                           "am85c30, ns16550a, lms, loader)")


def _plan(reg: ChardevRegistry, args: argparse.Namespace) -> _Plan:
    plan = _Plan()
    for spec in args.chardev:
        try:
            reg.create(parse_chardev(spec))
        except ChardevError as exc:
            raise CliError(f"-chardev {spec}: {exc}") from None
    serials = list(args.serial) or ["mon:stdio"]
    if len(serials) > 3:
        raise CliError("too many -serial options (channel A, channel B and COM1 exist)")
    for n, spec in enumerate(serials):
        if spec == "none":
            continue
        try:
            if spec.startswith("chardev:"):
                chr_ = reg.new(None, spec)
            else:
                parsed = parse_legacy(spec, f"serial{n}")
                chr_ = reg.create(parsed)
                if parsed.mux:
                    plan.monitors.append(f"serial{n}")
        except ChardevError as exc:
            raise CliError(f"-serial {spec}: {exc}") from None
        plan.serial[n] = chr_
    _plan_devices(reg, args, plan)
    for spec in args.mon:
        try:
            opts = split_opts(spec, keys={"chardev": "string", "mode": "string",
                                          "pretty": "string"})
        except ChardevError as exc:
            raise CliError(f"-mon {spec}: {exc}") from None
        if opts.get("mode", "readline") != "readline":
            raise CliError("-mon: only mode=readline is supported (use -qmp for QMP)")
        _chardev_by_id(reg, opts.get("chardev"), "-mon")
        plan.monitors.append(opts["chardev"])
    _check_sharing(reg, plan)
    return plan


def _check_sharing(reg: ChardevRegistry, plan: _Plan) -> None:
    """One frontend per chardev, as in QEMU; only a mux (mux=on) takes up to four."""
    users: dict[str, int] = {}
    chardevs = [*plan.serial, plan.lms, *(p[0] for p in plan.virtio),
                *(reg.find(label) for label in plan.monitors)]
    for chr_ in chardevs:
        if chr_ is not None and chr_.label is not None:
            users[chr_.label] = users.get(chr_.label, 0) + 1
    for label, n in users.items():
        chr_ = reg.find(label)
        limit = 4 if chr_ is not None and chr_.is_mux else 1
        if n > limit:
            hint = "a mux takes at most 4" if limit > 1 else "only a mux=on chardev is shared"
            raise CliError(f"chardev '{label}' is in use by {n} frontends ({hint})")


def run(args: argparse.Namespace) -> int:
    ram_size = parse_size(args.m)
    firmware = args.firmware or args.bios
    if args.firmware and args.bios:
        raise CliError("give either FIRMWARE or -bios, not both")
    if firmware is None:
        firmware = str(bundled_firmware())
        if not Path(firmware).exists():
            raise CliError("the bundled firmware is missing from this installation")
    for path in [firmware, args.kernel, args.initrd]:
        if path is None:
            continue
        if not Path(path).exists():
            raise CliError(f"cannot read '{path}': no such file")
        if not Path(path).is_file():
            raise CliError(f"cannot read '{path}': not a regular file")
        if not os.access(path, os.R_OK):
            raise CliError(f"cannot read '{path}': permission denied")

    # signals first: before any chardev, socket or pty link exists (as QEMU)
    with HostSignals() as signals:
        try:
            return _run(args, signals, firmware, ram_size)
        except HostSignal as sig:
            print(f"e2kchar: {signal.Signals(sig.signum).name} during start-up",
                  file=sys.stderr)
            return 128 + sig.signum


def _run(args: argparse.Namespace, signals: HostSignals, firmware: str, ram_size: int) -> int:
    from .chardev.registry import ChardevRegistry
    from .machine import Machine, MachineError  # unicorn is imported only when running
    from .machine.layout import KERNEL_OFFSET, RAM_BASE

    reg = ChardevRegistry(coalesce_output=True)
    machine = None
    servers: list[Any] = []
    monitor = None
    capture = None
    started = time.monotonic()
    # SIGALRM handlers can only be set on the main thread (run() may be called elsewhere)
    alarm = (args.timeout is not None and args.timeout > 0
             and threading.current_thread() is threading.main_thread())
    try:
        try:
            if alarm:
                # a wait=on server blocks in _plan until its client comes: --timeout
                # counts from here, as timeout(1) would
                signal.signal(signal.SIGALRM, _wait_expired)
                signal.setitimer(signal.ITIMER_REAL, args.timeout)
            plan = _plan(reg, args)
        except _WaitTimeout:
            print(f"e2kchar: the run timed out after {args.timeout:g} s", file=sys.stderr)
            return EXIT_TIMEOUT
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
        quit_status: list[int] = []

        def quit_now(status: int = 0) -> None:
            quit_status.append(status)
            if machine is not None:
                machine.stop()

        def on_signal(signum: int) -> None:
            # SIGTERM and SIGHUP end the run as QEMU does (a host-signal shutdown,
            # status 0); SIGINT too, with status 130 as before
            if monitor is not None:
                monitor.emit_event("SHUTDOWN", {"guest": False, "reason": "host-signal"})
            quit_now(130 if signum == signal.SIGINT else 0)

        signals.on_signal = on_signal

        reg.on_exit(quit_now)
        vm = MachineControl(None, quit_now)
        machine = Machine(registry=reg, ram_size=ram_size, append=args.append,
                          serial=plan.serial, lms=plan.lms, clock="host")
        vm.machine = machine
        if args.prelaunch:
            if not (args.qmp or plan.monitors):
                raise CliError("-S needs a monitor to say 'cont' (-qmp, -mon or mon:)")
            vm.hold_launch()  # before a monitor can take 'cont' or 'query-status'
        if args.qmp or plan.monitors:
            from .monitor.commands import Monitor

            # one command engine for every -qmp and human monitor: each client sees the
            # events of commands issued through any of them
            monitor = Monitor(reg, vm)
        # the guest console on a mux has the focus; the monitor waits for Ctrl-A c
        _start_monitors(reg, monitor, plan, args, servers)
        port_ids: dict[int, str] = {}
        for chr_, name, console, dev_id in plan.virtio:
            nr = machine.add_virtio_port(chr_, name=name, console=console)
            if dev_id:
                port_ids[nr] = dev_id
        if monitor is not None and port_ids:
            mon = monitor

            def port_open_changed(nr: int, is_open: bool) -> None:
                # QEMU: VSERPORT_CHANGE for ports with a device id, rate-limited per id
                dev_id = port_ids.get(nr)
                if dev_id is not None:
                    mon.emit_throttled("VSERPORT_CHANGE", dev_id, {"id": dev_id, "open": is_open})

            machine.virtio_console.on_guest_open = port_open_changed
        try:
            machine.load(firmware)
            if args.kernel:
                machine.load_raw(args.kernel, RAM_BASE + KERNEL_OFFSET)
            if args.initrd:
                machine.load_initrd(args.initrd, RAM_BASE + KERNEL_OFFSET)
            for path, addr in plan.loaders:
                machine.load_raw(path, addr)
        except (OSError, ValueError, MachineError) as exc:
            raise CliError(str(exc)) from None
        reg.guest_clock = machine.guest_time
        if args.capture:
            from .capture import Capture

            capture = Capture(reg, args.capture, guest_clock=machine.guest_time)
            for label in _console_labels(reg, plan):
                capture.add(label)
        if args.prelaunch:
            vm.prelaunch()
        signals.running()  # from now on a signal stops the machine (any thread)
        deadline = None if args.timeout is None else started + args.timeout
        result = None
        while not quit_status:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            result = machine.run(timeout=left)
            if result.reason != "reset" or quit_status:
                break
            machine.reset()  # the guest asked for a reboot (exit device 0x7777)
            if monitor is not None:
                monitor.emit_event("RESET", {"guest": True, "reason": "guest-reset"})
        if (monitor is not None and result is not None and result.reason == "exit"
                and not quit_status):
            monitor.emit_event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        return _exit_status(result, quit_status, args)
    except (ChardevError, MachineError) as exc:
        raise CliError(str(exc)) from None
    finally:
        if capture is not None:
            capture.close()
        for server in servers:
            try:
                server.close()
            except Exception:
                log.exception("closing a monitor failed")
        if monitor is not None:
            monitor.close()
        if machine is not None and hasattr(machine, "close"):
            machine.close()
        reg.close()


class _WaitTimeout(Exception):
    """--timeout expired while a server waited for its first client."""


def _wait_expired(signum: int, frame: Any) -> None:
    raise _WaitTimeout


def _console_labels(reg: ChardevRegistry, plan: _Plan) -> list[str]:
    labels = []
    for chr_ in [*plan.serial, plan.lms, *(p[0] for p in plan.virtio)]:
        if chr_ is not None and chr_.label is not None and chr_.label not in labels:
            labels.append(chr_.label)
    return labels


def _start_monitors(reg: ChardevRegistry, monitor: Any, plan: _Plan,
                    args: argparse.Namespace, servers: list[Any]) -> None:
    for spec in args.qmp:
        from .monitor.qmp import QmpServer

        server = QmpServer(reg, monitor=monitor)
        try:
            server.listen(spec)
        except ChardevError as exc:
            server.close()
            raise CliError(f"-qmp {spec}: {exc}") from None
        servers.append(server)
    for label in plan.monitors:
        from .monitor.hmp import HumanMonitor

        hmp = HumanMonitor(reg, monitor=monitor)
        servers.append(hmp)
        try:
            hmp.attach(label)
        except ChardevError as exc:
            raise CliError(f"monitor on chardev '{label}': {exc}") from None


def _exit_status(result: Any, quit_status: list[int], args: argparse.Namespace) -> int:
    reason = getattr(result, "reason", "exit")
    if quit_status:
        return quit_status[0]
    if reason == "timeout":
        print(f"e2kchar: the run timed out after {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    if reason == "exit":
        return int(result.exit_code)
    message = getattr(result, "message", "") or reason
    print(f"e2kchar: {message}", file=sys.stderr)
    code = getattr(result, "exit_code", 1)
    return int(code) if code else 1


def _import_asyncio_without_ssl() -> None:
    """Import asyncio with the ssl module hidden from it: for the e2kchar process only.

    asyncio imports ssl whether or not anything uses TLS, which loads and relocates
    libssl and libcrypto: about 29M of the ~580M instructions to the first guest byte.
    e2kchar has no TLS (a tls-creds option is refused), and asyncio is written to run
    without ssl (it then refuses ssl= itself). A later `import ssl` still works; only
    asyncio stays without it. Not done when asyncio is loaded already, nor when main()
    is called with an argv (in a caller's process, whose asyncio may need TLS).
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` -> ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def command() -> NoReturn:
    """The `e2kchar` command (console script, python -m e2kchar): main(), then a quick
    exit."""
    _exit_now(main())


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the e2kchar command itself (console script, python -m e2kchar)
        _import_asyncio_without_ssl()
    return _main(list(sys.argv[1:] if argv is None else argv))


def _exit_now(code: int) -> NoReturn:
    """End the command once run() has closed everything (its chardevs restored the terminal
    and dropped their atexit hooks): the standard streams and log handlers are flushed, and
    the interpreter's teardown (freeing every module: ~40M instructions, ~10 ms after the
    guest powered off) is skipped."""
    try:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    finally:
        os._exit(code)


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: e2kchar run [FIRMWARE] [options]   (e2kchar run --help for details)")
        return 0 if argv else 2
    if argv[0] != "run":
        print(f"e2kchar: unknown command '{argv[0]}' (try: e2kchar run --help)",
              file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv[1:])
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="e2kchar: %(levelname)s: %(message)s")
    _show_notices()
    try:
        return run(args)
    except CliError as exc:
        print(f"e2kchar: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


#: loggers whose INFO lines QEMU prints on stderr whatever the verbosity (a pty's
#: "char device redirected to /dev/pts/N (label ID)", a waiting server's "QEMU waiting for
#: connection on: ...")
NOTICE_LOGGERS = ("e2kchar.chardev.pty.notice", "e2kchar.chardev.socket.notice")


def _show_notices() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in NOTICE_LOGGERS:
        notice = logging.getLogger(name)
        notice.setLevel(logging.INFO)
        notice.addHandler(handler)
        notice.propagate = False  # printed once, also with -v


if __name__ == "__main__":
    sys.exit(main())
