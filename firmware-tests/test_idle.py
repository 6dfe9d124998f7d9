"""The idle back-off (e2kchar/machine/idle.py, docs/idle.md): a guest busy-polling COM1's
LSR with interrupts off sleeps, input and timer deadlines wake it at once, and guests
that only look like pollers (a delay loop between writes, computing between status reads)
are never put to sleep.

"At once" is tested without timing: the idle sleep's limit is set to an hour, so only a
wake-up can explain a reply within the test's timeout. CPU cost and echo latency are
measured by tools/bench_idle.py, not here.
"""

from __future__ import annotations

import pytest
from fw_support import BackgroundRun, ConsoleSet, wait_until

from e2kchar.machine import idle

HOUR = 3600.0


@pytest.fixture
def consoles(registry, tmp_path):
    with ConsoleSet(registry, tmp_path) as made:
        yield made


def _poller(machine, build_driver, consoles, **defines):
    con = consoles("ringbuf", "com1")
    m = machine(serial=[None, None, con.chr], clock="host")
    m.idle.sleep_max = HOUR
    m.load(build_driver("machine_poll", defines={"MODE": 0, **defines}))
    return m, con


def _quit(con, run) -> None:
    con.feed(b"q")
    res = run.result()
    assert (res.reason, res.exit_code) == ("exit", 0), res


def test_a_polling_guest_sleeps_and_input_wakes_it(registry, machine, build_driver,
                                                     consoles):
    m, con = _poller(machine, build_driver, consoles)
    run = BackgroundRun(m, 60)
    try:
        wait_until(registry, lambda: con.data() == b">", 10, "the prompt")
        wait_until(registry, lambda: m.stats["idle_sleeps"] >= 1, 10, "an idle sleep")
        # asleep, not polling: hardly a read while nothing happens
        reads = m.stats["mmio_reads"]
        registry.run_until(lambda: False, 0.3)
        assert m.stats["mmio_reads"] - reads < 50, m.stats
        for i, text in enumerate((b"a", b"bc", b"xyz")):
            sleeps = m.stats["idle_sleeps"]
            con.feed(text)
            want = b">" + (b"a", b"abc", b"abcxyz")[i]
            wait_until(registry, lambda want=want: con.data() == want, 10, f"the echo {want!r}")
            # ... and it goes back to sleep
            wait_until(registry, lambda s=sleeps: m.stats["idle_sleeps"] > s, 10,
                       "the next idle sleep")
        _quit(con, run)
    finally:
        m.stop()


def test_a_timer_deadline_wakes_a_polling_guest(registry, machine, build_driver, consoles):
    # the timer is due 2 s after start; the guest is idle long before
    m, con = _poller(machine, build_driver, consoles, TIMER=20_000_000)
    run = BackgroundRun(m, 60)
    try:
        wait_until(registry, lambda: m.stats["idle_sleeps"] >= 1, 10, "an idle sleep")
        assert con.data() == b">"
        wait_until(registry, lambda: con.data() == b">T", 20, "the timer interrupt")
        assert 2.0 <= m.guest_time()
        _quit(con, run)
    finally:
        m.stop()


def test_host_stop_ends_an_idle_sleep(registry, machine, build_driver, consoles):
    m, con = _poller(machine, build_driver, consoles)
    run = BackgroundRun(m, 60)
    wait_until(registry, lambda: m.stats["idle_sleeps"] >= 1, 10, "an idle sleep")
    m.stop()
    res = run.result(10)
    assert res.reason == "stopped", res


def test_a_delay_loop_between_writes_is_never_slowed(machine, build_driver, consoles):
    """Runs of fewer than QUIET_READS fruitless reads, a device write between them, are
    never idle however long the guest keeps it up."""
    reads = idle.QUIET_READS // 2
    con = consoles("ringbuf", "com1")
    m = machine(serial=[None, None, con.chr])
    m.idle.sleep_max = HOUR
    m.load(build_driver("machine_poll", defines={"MODE": 1, "ROUNDS": 400, "READS": reads}))
    res = m.run(timeout=60)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["idle_sleeps"] == 0, m.stats
    assert m.stats["mmio_reads"] >= 400 * reads


def test_computing_between_status_reads_is_never_slowed(machine, build_driver, consoles):
    """About 80k instructions between two LSR reads (no write at all): far sparser than
    READS_PER_CPU_S on any host, so never idle."""
    con = consoles("ringbuf", "com1")
    m = machine(serial=[None, None, con.chr])
    m.idle.sleep_max = HOUR
    m.load(build_driver("machine_poll", defines={"MODE": 2, "ROUNDS": 300, "WORK": 10_000}))
    res = m.run(timeout=60)
    assert (res.reason, res.exit_code) == ("exit", 0), res
    assert m.stats["idle_sleeps"] == 0, m.stats


def test_back_off_can_be_turned_off(registry, machine, build_driver, consoles):
    m, con = _poller(machine, build_driver, consoles)
    m.idle.enabled = False
    run = BackgroundRun(m, 60)
    try:
        wait_until(registry, lambda: con.data() == b">", 10, "the prompt")
        registry.run_until(lambda: False, 0.2)
        assert m.stats["idle_sleeps"] == 0
        _quit(con, run)
    finally:
        m.stop()
