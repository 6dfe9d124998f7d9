"""Guest-level tests of the machine harness: boot, output through real backends, boot
contract, traps, timer and host interrupts, run control, and hostile guests."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from e2kchar.machine import Machine, MachineError
from e2kchar.machine import layout as L

HELLO = b"hello from the e2k machine\n"
COUNT_BASE = 0x1_3000_0000


# ----------------------------------------------------------------------------------------
# hello_16550 through different backends, byte-exact


def test_hello_ringbuf(registry, machine, build_driver):
    com1 = registry.new("com1", "ringbuf,size=4096")
    m = machine(serial=[None, None, com1])
    m.load(build_driver("hello_16550"))
    res = m.run(timeout=10)
    assert (res.reason, res.exit_code) == ("exit", 0)
    assert registry.ringbuf_read("com1", 4096) == HELLO.decode()


def test_hello_file(registry, machine, build_driver, tmp_path):
    out = tmp_path / "com1.log"
    com1 = registry.new("com1", f"file,path={out}")
    m = machine(serial=[None, None, com1])
    m.load(build_driver("hello_16550"))
    res = m.run(timeout=10)
    assert (res.reason, res.exit_code) == ("exit", 0)
    m.close()                        # detach the frontends
    registry.remove("com1")          # flush and close the file
    assert out.read_bytes() == HELLO


def test_hello_socket(registry, machine, build_driver):
    com1 = registry.new("com1", "socket,host=127.0.0.1,port=0,server=on,wait=off")
    port = int(com1.addr.port)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert registry.run_until(lambda: "<->" in com1.filename, timeout=5)
        m = machine(serial=[None, None, com1])
        m.load(build_driver("hello_16550"))
        res = m.run(timeout=10)
        assert (res.reason, res.exit_code) == ("exit", 0)
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < len(HELLO) and time.monotonic() < deadline:
            got += client.recv(4096)
    assert got == HELLO


def test_owned_registry_and_null_com1(build_driver):
    with Machine() as m:          # creates and owns its registry; COM1 unconnected
        m.load(build_driver("hello_16550"))
        res = m.run(timeout=10)
        assert (res.reason, res.exit_code) == ("exit", 0)
        assert m.stats["mmio_writes"] >= len(HELLO)


# ----------------------------------------------------------------------------------------
# boot contract: a0/a1/a2, boot_info, DTB, PCI, virtio slots


def test_boot_contract_seen_by_the_guest(registry, machine, build_driver):
    com1 = registry.new("com1", "ringbuf,size=4096")
    m = machine(serial=[None, None, com1], ram_size=64 << 20, append="console=ttyS0 quiet")
    m.load(build_driver("machine_bootinfo"))
    res = m.run(timeout=10)
    out = registry.ringbuf_read("com1", 4096)
    assert (res.reason, res.exit_code) == ("exit", 0), out
    lines = out.splitlines()
    assert lines[0] == "cmdline=console=ttyS0 quiet"
    assert lines[1] == ("pci 00:02.2 id=0x0000000080191fff class=0x0000000000070002 "
                        "bar1=0x0000000040000000 size=0x0000000000001000")
    slots = lines[2].split()[1:]
    assert len(slots) == 8 and all(int(s, 16) == 0 for s in slots[1:])
    assert int(slots[0], 16) == 3         # slot 0 is the virtio-console, ports or not


# ----------------------------------------------------------------------------------------
# traps


def test_guest_exceptions_reach_the_guest_handler(machine, build_driver):
    m = machine()
    m.load(build_driver("machine_traps"))
    res = m.run(timeout=10)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["traps"] == 9


@pytest.mark.parametrize("tlb", ["virtual", "cpu"])
def test_trap_delivery_across_modes_vectors_and_delegation(machine, build_driver, tlb):
    # mstatus MPP/MPIE/MIE, vectored mtvec for software/timer/external interrupts (MEIP
    # injected when only MEIE is on), S-mode delegation through medeleg with sstatus
    # SPP/SPIE/SIE, rdtime obeying mcounteren.TM, ecalls from S and U (exit 0 = all passed).
    # The interrupts stop the CPU right after delivered traps: with the CPU TLB, unicorn
    # loses the stopped access's pc unless emu_start ended at the trap.
    m = machine(tlb=tlb)
    m.load(build_driver("machine_trap_modes"))
    res = m.run(timeout=10)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["retire_failures"] == 0


def test_interrupt_without_handler_is_reported(machine, tmp_path):
    # csrsi mstatus, 8; li a2, 8; csrs mie, a2; msip = 1 (lui/slli/sw); j .
    img = tmp_path / "msip.bin"
    img.write_bytes(bytes.fromhex("73600430" "2146" "73204630" "0546" "b7160011" "9206"
                                  "90c2" "01a0"))
    m = machine(ram_size=8 << 20)
    m.load(img)
    res = m.run(timeout=10)
    assert (res.reason, res.cause, res.pc) == ("trap", 1 << 63 | 3, L.RAM_BASE + 0x14)
    assert "machine software interrupt" in res.message and "no trap handler" in res.message


def test_trap_without_handler_is_reported(machine, build_driver):
    m = machine()
    elf = build_driver("machine_notrap")
    m.load(elf)
    res = m.run(timeout=10)
    assert res.reason == "trap" and res.exit_code != 0
    assert res.cause == 2 and res.tval == 0xC0001073
    assert L.RAM_BASE <= res.pc < L.RAM_BASE + 0x1000
    assert m.memory.read(res.pc, 4) == (0xC0001073).to_bytes(4, "little")
    assert "no trap handler" in res.message and f"{res.pc:#x}" in res.message


def test_trap_storm_is_reported(machine, build_driver):
    m = machine()
    m.load(build_driver("machine_notrap", defines={"STORM": 1}))
    res = m.run(timeout=20)
    assert res.reason == "trap" and res.cause == 2
    assert "trap storm" in res.message


# ----------------------------------------------------------------------------------------
# timer and host interrupts


@pytest.mark.parametrize("compute", [0, 1])
def test_timer_interrupts(machine, build_driver, compute):
    m = machine()
    m.load(build_driver("machine_timer", defines={"COMPUTE": compute, "TICKS": 20}))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["traps"] == 20
    assert m.guest_time() >= 20 * 0.001


def test_timer_that_expired_while_masked_is_delivered_once_unmasked(machine, build_driver):
    m = machine()
    m.load(build_driver("machine_timer", defines={"COMPUTE": 1, "TICKS": 3,
                                                  "LATE_ENABLE": 1}))
    res = m.run(timeout=20)
    assert (res.reason, res.exit_code) == ("exit", 0), res


def test_wfi_costs_no_cpu(machine, build_driver):
    # 20 ticks 50 ms apart: the guest sleeps in wfi for about a second
    m = machine()
    m.load(build_driver("machine_timer", defines={"TICKS": 20, "PERIOD": 500000}))
    cpu0 = time.thread_time()
    res = m.run(timeout=20)
    cpu = time.thread_time() - cpu0
    assert (res.reason, res.exit_code) == ("exit", 0)
    assert m.stats["wfi_sleeps"] >= 20
    assert cpu < 0.5 * m.guest_time()   # not a busy wait (it would be ~1.0)


def test_wfi_with_a_masked_raised_timer_sleeps_once(machine, tmp_path):
    # mtimecmp = 0 (MTIP raised) with MTIE off, then `wfi; j .-4`: the guest cannot unmask
    # anything while asleep, so the machine must not keep waking it to look
    img = tmp_path / "idle.bin"
    img.write_bytes(b"".join(w.to_bytes(4, "little") for w in (
        0x110016B7, 0x00469693, 0x00100713, 0x00E71713, 0x00E686B3,   # a3 = mtimecmp
        0x0006B023, 0x10500073, 0xFFDFF06F)))                         # sd zero; wfi; j
    m = machine(ram_size=8 << 20)
    m.load(img)
    res = m.run(timeout=0.5)
    assert res.reason == "timeout" and m.clint.mtimecmp == 0
    assert m.stats["wfi_sleeps"] == 1 and m.stats["emu_starts"] <= 3, m.stats


class AckDevice:
    """A device the IRQ tests map: +0xC acks (lowers the line), +0x14 'ready'."""

    def __init__(self) -> None:
        self.irq = None
        self.acks = 0
        self.ready = threading.Event()

    def read(self, offset: int, size: int) -> int:
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0xC:
            self.acks += 1
            self.irq.set(False)
        elif offset == 0x14:
            self.ready.set()


def test_host_interrupts_reach_a_computing_guest(machine, build_driver):
    m = machine()
    dev = AckDevice()
    dev.irq = m.map_device("ack", COUNT_BASE, 0x1000, dev, irq=20)
    m.load(build_driver("machine_irq_compute", defines={"NIRQ": 10}))
    handled = []

    def host():
        assert dev.ready.wait(10)
        for _ in range(10):
            n = dev.acks
            dev.irq.set(True)   # from this (non-CPU) thread, while the guest computes
            deadline = time.monotonic() + 5
            while dev.acks == n and time.monotonic() < deadline:
                time.sleep(0.0002)
            handled.append(dev.acks > n)

    t = threading.Thread(target=host)
    t.start()
    res = m.run(timeout=30)
    t.join()
    assert (res.reason, res.exit_code) == ("exit", 0)
    assert handled == [True] * 10
    assert dev.acks == 10


# ----------------------------------------------------------------------------------------
# run control


def test_run_timeout_and_continue(machine, build_driver):
    m = machine()
    m.load(build_driver("machine_spin"))
    res = m.run(timeout=0.3)
    assert res.reason == "timeout" and res.exit_code == 124
    assert "timed out" in res.message
    res = m.run(timeout=0.2)               # continues where it left off
    assert res.reason == "timeout"


def test_stop_pause_resume_from_other_threads(machine, build_driver):
    m = machine()
    m.load(build_driver("machine_spin"))
    results = []
    t = threading.Thread(target=lambda: results.append(m.run(timeout=30)))
    t.start()
    time.sleep(0.1)
    assert m.pause(timeout=5)
    assert m.paused
    g1 = m.guest_time()
    time.sleep(0.1)
    assert m.guest_time() == pytest.approx(g1, abs=1e-3)   # virtual clock stands still
    m.resume()
    time.sleep(0.05)
    m.stop()
    t.join(10)
    assert not t.is_alive()
    assert results[0].reason == "stopped"


def test_guest_reset_request_and_system_reset(registry, machine, build_driver):
    com1 = registry.new("com1", "ringbuf,size=4096")
    m = machine(serial=[None, None, com1])
    m.load(build_driver("machine_reset"))
    res = m.run(timeout=10)
    assert res.reason == "reset"
    assert registry.ringbuf_read("com1", 100) == "boot\n"
    m.reset()                                # the images are reloaded, the guest starts over
    res = m.run(timeout=10)
    assert res.reason == "reset"
    assert registry.ringbuf_read("com1", 100) == "boot\n"


def test_reset_while_running(registry, machine, build_driver):
    m = machine()
    m.load(build_driver("machine_spin"))
    results = []
    t = threading.Thread(target=lambda: results.append(m.run(timeout=1.0)))
    t.start()
    time.sleep(0.4)
    m.reset()
    t.join(10)
    assert results[0].reason == "timeout"
    assert m.guest_time() < 0.9    # guest time restarted at the reset (about 0.6 s ago)


# ----------------------------------------------------------------------------------------
# bad input


def test_hostile_guest_does_not_break_the_machine(registry, machine, build_driver):
    com1 = registry.new("com1", "ringbuf,size=65536")
    am_a = registry.new("ama", "ringbuf,size=65536")
    m = machine(serial=[am_a, None, com1])
    m.load(build_driver("machine_garbage"))
    res = m.run(timeout=20)
    # interrupts stay off in the guest, so garbage in any register ends in a clean exit
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["mmio_reads"] + m.stats["mmio_writes"] >= 20000
    assert m.stats["retire_failures"] == 0


def test_bad_images(machine, build_driver, tmp_path):
    m = machine()
    elf = build_driver("hello_16550").read_bytes()
    other_isa = bytearray(elf)
    other_isa[18:20] = (62).to_bytes(2, "little")       # EM_X86_64
    p = tmp_path / "x86.elf"
    p.write_bytes(other_isa)
    with pytest.raises(MachineError, match="RISC-V"):
        m.load(p)
    with pytest.raises(MachineError, match="could not load"):
        m.load(tmp_path / "nope.elf")
    with pytest.raises(MachineError, match="serial"):
        machine(serial=[None] * 4)


# ----------------------------------------------------------------------------------------
# raw images: faults with no handler are reported, never hang


@pytest.mark.parametrize("insn,cause,pc,tval", [
    (0x00100073, 3, L.RAM_BASE, L.RAM_BASE),      # ebreak
    (0x9002, 3, L.RAM_BASE, L.RAM_BASE),          # c.ebreak
    (0x00000067, 1, 0, 0),                        # jr zero: fetch from unmapped 0
    (0x0000B283, 5, L.RAM_BASE, 0),               # ld t0, 0(zero): unmapped load
    (0x02503423, 7, L.RAM_BASE, 0x28),            # sd t0, 40(zero): store outside RAM
    (0xC0001073, 2, L.RAM_BASE, 0xC0001073),      # unimp
])
def test_raw_image_faults_without_handler(machine, tmp_path, insn, cause, pc, tval):
    img = tmp_path / "raw.bin"
    img.write_bytes(insn.to_bytes(4, "little"))
    m = machine(ram_size=8 << 20)
    assert m.load(img) == L.RAM_BASE
    res = m.run(timeout=10)
    assert (res.reason, res.cause, res.pc, res.tval) == ("trap", cause, pc, tval)
    assert "no trap handler" in res.message


def test_jump_into_a_device_window_is_an_instruction_access_fault(machine, tmp_path):
    # lui t0, 0x11000; slli t0, t0, 4; jr t0  -> pc = the exit device
    img = tmp_path / "jump.bin"
    img.write_bytes(b"".join(w.to_bytes(4, "little")
                             for w in (0x110002B7, 0x00429293, 0x00028067)))
    m = machine(ram_size=8 << 20)
    m.load(img)
    res = m.run(timeout=10)
    assert (res.reason, res.cause, res.pc, res.tval) == ("trap", 1, L.EXIT_BASE, L.EXIT_BASE)


def test_raw_image_spinning_forever_times_out(machine, tmp_path):
    img = tmp_path / "loop.bin"
    img.write_bytes((0x0000006F).to_bytes(4, "little"))   # j .
    m = machine(ram_size=8 << 20)
    m.load(img)
    res = m.run(timeout=0.3)
    assert (res.reason, res.exit_code, res.pc) == ("timeout", 124, L.RAM_BASE)


def test_virtio_ports(registry, machine):
    m = machine()
    a = registry.new("vc0", "ringbuf,size=64")
    b = registry.new("vc1", "ringbuf,size=64")
    assert m.add_virtio_port(a) == 0
    assert m.add_virtio_port(b, name="org.e2k.port", console=False) == 1
    with pytest.raises(MachineError, match="already in use"):
        m.add_virtio_port(None, name="org.e2k.port", console=False)
    m.close()
    registry.remove("vc0")      # the machine let go of its chardevs
    registry.remove("vc1")


@pytest.mark.parametrize("bit", [1, 5])
def test_wfi_returns_with_a_software_set_interrupt_pending(machine, build_driver, bit):
    # SSIP/STIP pending and enabled in mie (set by M-mode code, as OpenSBI does for Linux):
    # wfi must not sleep until the next timer deadline (there is none: the run would time
    # out), and the loop must not count a sleep
    m = machine()
    m.load(build_driver("machine_wfi_swint", defines={"BIT": bit}))
    res = m.run(timeout=5)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["wfi_sleeps"] == 0
