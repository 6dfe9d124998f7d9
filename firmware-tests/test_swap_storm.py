"""QMP chardev-change storms while a guest prints, on every console device (16550, Am85C30,
LMS, virtio-console), on the CLI's coalescing registry, so the UARTs' bytes take the output
hot path (OutputSink, docs/architecture.md): the pieces in swap order must be exactly the
stream's prefix (nothing lost, doubled or torn), and the logfile and an output tap must
have seen every byte exactly once, in order."""

from __future__ import annotations

import pytest
from fw_support import BackgroundRun
from qemu.qmp.legacy import QEMUMonitorProtocol
from test_hotswap_stream import expected_stream

from e2kchar import ChardevRegistry
from e2kchar.machine import Machine
from e2kchar.monitor import QmpServer

SWAPS = 40
STREAM_DEV = {"am85c30": 0, "com1": 1, "virtio": 2, "lms": 3}
SINK_OWNER = {"am85c30": lambda m: m.board.devices["am85c30"].a,
              "com1": lambda m: m.board.devices["com1"], "lms": lambda m: m.board.devices["lms"]}


def _size(path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("device", list(STREAM_DEV))
def test_qmp_swap_storm_while_the_guest_prints(device, build_driver, tmp_path):
    paths = [tmp_path / f"part{i}.out" for i in range(SWAPS + 1)]
    log = tmp_path / "all.log"
    tapped = bytearray()
    with ChardevRegistry(coalesce_output=True) as reg:
        reg.add("stream", {"type": "file", "data": {"out": str(paths[0]), "logfile": str(log)}})
        chr_ = reg.find("stream")
        chr_.add_tap(tapped.extend)
        serial = {"am85c30": [chr_, None, None], "com1": [None, None, chr_]}.get(
            device, [None, None, None])
        m = Machine(reg, serial=serial, lms=chr_ if device == "lms" else None)
        if device == "virtio":
            m.add_virtio_port(chr_, console=True)
        m.load(build_driver("hotswap_stream", defines={"STREAM_DEV": STREAM_DEV[device]}))
        srv = QmpServer(reg)
        addr = srv.listen(f"unix:{tmp_path}/qmp.sock,server=on,wait=off")
        run = BackgroundRun(m, 120)
        qmp = QEMUMonitorProtocol(addr)
        try:
            qmp.connect()
            assert reg.run_until(lambda: _size(paths[0]) > 0, 20), "no output"
            if device in SINK_OWNER:  # the UART's bytes really take the hot path
                sink = SINK_OWNER[device](m).sink
                assert sink.fast and sink.drainer is reg.find("stream")
            for i in range(1, SWAPS + 1):
                if i % 8 == 0:  # now and then let a piece grow; otherwise back to back
                    reg.run_until(lambda i=i: _size(paths[i - 1]) > 200, 5)
                res = qmp.cmd("chardev-change", id="stream", backend={
                    "type": "file", "data": {"out": str(paths[i]), "logfile": str(log)}})
                assert res == {}, res
            assert reg.run_until(lambda: _size(paths[SWAPS]) > 1000, 20)
            m.stop()
            assert run.result().reason == "stopped"
            assert reg.find("stream").flush()
        finally:
            qmp.close()
            srv.close()
            if not run.done():
                m.stop()
            m.close()
        pieces = [p.read_bytes() for p in paths]
        data = b"".join(pieces)
        assert data == expected_stream(len(data))
        assert sum(1 for p in pieces if p) > SWAPS // 4, [len(p) for p in pieces]
        assert log.read_bytes() == data  # one logfile across the swaps: every byte once
        assert bytes(tapped) == data
