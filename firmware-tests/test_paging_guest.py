"""A paging guest on the machine (firmware-tests/drivers/machine_paging.c): Sv39 in S-mode
with a virtual stvec, page faults with stval (load, store, AMO, fetch, a fetch crossing into
an unmapped page), rdtime from S, and a stream through a virtual mapping of COM1 that stays
exactly-once while the host pauses the CPU in the middle of it (each pause may stop an MMIO
access that the run loop then retires under paging)."""

from __future__ import annotations

import threading
import time

import pytest

LINES = 2000


def _expected() -> str:
    return "".join(f"line {i:04d}\n" for i in range(LINES))


@pytest.mark.parametrize("tlb", ["virtual", "cpu"])
def test_paging_guest_faults_stval_and_virtual_stvec(registry, machine, build_driver, tmp_path,
                                                       tlb):
    out = tmp_path / "com1.out"
    com1 = registry.new("com1", f"file,path={out}")
    m = machine(serial=[None, None, com1], tlb=tlb)
    m.load(build_driver("machine_paging"))
    res = m.run(timeout=30)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    m.close()                        # detach the frontends
    registry.remove("com1")          # flush and close the file
    assert out.read_text() == _expected()


def test_retire_under_paging_keeps_the_stream_exactly_once(registry, machine, build_driver,
                                                            tmp_path):
    out = tmp_path / "com1.out"
    com1 = registry.new("com1", f"file,path={out}")
    m = machine(serial=[None, None, com1])
    m.load(build_driver("machine_paging"))
    result = []
    runner = threading.Thread(target=lambda: result.append(m.run(timeout=60)))
    runner.start()
    try:
        for _ in range(40):
            if not runner.is_alive():
                break
            assert m.pause(5)
            m.resume()
            time.sleep(0.005)
    finally:
        runner.join(60)
    assert result and (result[0].reason, result[0].exit_code) == ("exit", 0), result
    m.close()                        # detach the frontends
    registry.remove("com1")          # flush and close the file
    assert out.read_text() == _expected()
    assert m.stats["retired"] > 0            # some pauses did stop a virtual COM1 access
    assert m.stats["retire_failures"] == 0
