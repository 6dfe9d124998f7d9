"""No MMIO access is ever duplicated or lost (docs/embedding.md: a stop repeats one), even while
the host kicks the CPU: the guest makes a known number of accesses to a counting device
while other threads pause/resume the machine and raise interrupts."""

from __future__ import annotations

import threading
import time

import pytest

COUNT_BASE = 0x1_3000_0000
COUNT_IRQ = 20
ITERATIONS = 50_000


class CountingDevice:
    """+0 reads 0, 1, 2...; +4 takes each value back; +0xC acks the irq; +8/+0x10/+0x14
    take the guest's report (gaps, irqs handled, done)."""

    def __init__(self) -> None:
        self.irq = None
        self.lock = threading.Lock()
        self.next = 0
        self.reads = 0
        self.writes = 0
        self.out_of_order = 0
        self.acks = 0
        self.report: dict[int, int] = {}

    def read(self, offset: int, size: int) -> int:
        with self.lock:
            if offset == 0:
                self.reads += 1
                self.next += 1
                return self.next - 1
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        with self.lock:
            if offset == 4:
                if value != self.writes:
                    self.out_of_order += 1
                self.writes += 1
                return
            if offset == 0xC:
                self.acks += 1
        if offset == 0xC:
            self.irq.set(False)
        else:
            self.report[offset] = value


def run_counting(machine, build_driver, *, pause: bool, irqs: bool, spin: int = 0,
                 traps: int = 0, tlb: str = "virtual", rdtime: int = 0):
    m = machine(tlb=tlb)
    dev = CountingDevice()
    dev.irq = m.map_device("counter", COUNT_BASE, 0x1000, dev, irq=COUNT_IRQ)
    m.load(build_driver("machine_mmio_count", defines={"ITERATIONS": ITERATIONS,
                                                       "SPIN": spin, "TRAPS": traps,
                                                       "RDTIME": rdtime}))
    done = threading.Event()
    raised = [0]
    pauses = [0]

    def irqer():
        while not done.is_set():
            time.sleep(0.0003)
            dev.irq.set(True)
            raised[0] += 1

    def pauser():
        while not done.is_set():
            time.sleep(0.001)
            if m.pause(timeout=5):
                pauses[0] += 1
            m.resume()

    threads = []
    if irqs:
        threads.append(threading.Thread(target=irqer))
    if pause:
        threads.append(threading.Thread(target=pauser))
    for t in threads:
        t.start()
    try:
        res = m.run(timeout=60)
    finally:
        done.set()
        for t in threads:
            t.join()
    return m, dev, res, raised[0], pauses[0]


@pytest.mark.parametrize("pause,irqs,spin,traps,tlb,rdtime", [
    (False, False, 0, 0, "virtual", 0), (True, False, 0, 0, "virtual", 0),
    (False, True, 0, 0, "virtual", 0), (True, True, 0, 0, "virtual", 0),
    (True, True, 1_000_000, 0, "virtual", 0), (True, True, 0, 1, "virtual", 0),
    (True, True, 0, 1, "cpu", 0), (True, True, 0, 0, "virtual", 1), (True, True, 0, 0, "cpu", 1)])
def test_every_access_exactly_once(machine, build_driver, pause, irqs, spin, traps, tlb,
                                   rdtime):
    """spin: compute phases without MMIO between the bursts, so that kicks are taken both
    by MMIO callbacks and by stopping a computing CPU. traps: an ecall the harness delivers
    before every access, so that kicks land right after delivered traps. rdtime: an rdtime
    (emulated in a hook) before every access, time never going backwards."""
    m, dev, res, raised, pauses = run_counting(machine, build_driver, pause=pause, irqs=irqs,
                                               spin=spin, traps=traps, tlb=tlb, rdtime=rdtime)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert dev.reads == ITERATIONS
    assert dev.writes == ITERATIONS
    assert dev.out_of_order == 0
    # the guest saw no gaps, and every external-interrupt entry had a source to claim
    assert dev.report == {8: 0, 0x10: dev.acks, 0x14: 1, 0x18: dev.acks}
    assert m.stats["retire_failures"] == 0
    if irqs:
        assert dev.acks > 0
    if pause:
        assert pauses > 0
    if pause or irqs:
        # the host really did stop the CPU in the middle of MMIO-heavy code
        assert m.stats["retired"] > 0
    if spin:
        assert m.stats["kicker_stops"] > 0   # ... and in the middle of computing
    if traps:
        assert m.stats["traps"] >= ITERATIONS
    if rdtime:
        assert m.stats["rdtimes"] == ITERATIONS
        assert m.stats["emu_starts"] > ITERATIONS  # each one ends its emu_start


def test_split_64bit_accesses_exactly_once(machine, build_driver):
    """ld/sd to the CLINT arrive as two 32-bit halves; a kick between or inside the halves
    must neither repeat nor lose one (and mtime never goes backwards in the guest)."""
    rounds = 20_000
    m = machine()
    m.load(build_driver("machine_mtime64", defines={"ROUNDS": rounds}))
    done = threading.Event()

    def pauser():
        while not done.is_set():
            time.sleep(0.0005)
            m.pause(timeout=5)
            m.resume()

    t = threading.Thread(target=pauser)
    t.start()
    try:
        res = m.run(timeout=60)
    finally:
        done.set()
        t.join()
    assert (res.reason, res.exit_code) == ("exit", 0), res
    st = m.stats
    assert st["retired"] > 0 and st["retire_failures"] == 0
    assert st["mmio_reads"] == 4 * rounds          # ld mtime + ld mtimecmp, two halves each
    assert st["mmio_writes"] == 2 * rounds + 1     # sd mtimecmp halves + the exit write
