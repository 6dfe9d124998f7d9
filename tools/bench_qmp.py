"""Benchmark the QMP server: round trips with the real qemu.qmp client, and framing speed.

Usage: python tools/bench_qmp.py [--seconds N]
Prints requests per second for query-version (one client, and four in parallel),
ringbuf-write of 4 KiB, and the JSON stream splitter's MB/s. Numbers are for
comparison between changes on one machine, not thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

from qemu.qmp import QMPClient

from e2kchar import ChardevRegistry
from e2kchar.monitor import JsonStreamSplitter, QmpServer


async def _loop(addr: str, seconds: float, cmd: str, args: dict | None) -> int:
    qmp = QMPClient("bench")
    await qmp.connect(addr)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await qmp.execute(cmd, args)
        n += 1
    await qmp.disconnect()
    return n


async def _parallel(addr: str, seconds: float, clients: int) -> int:
    counts = await asyncio.gather(*(_loop(addr, seconds, "query-version", None)
                                    for _ in range(clients)))
    return sum(counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    opts = ap.parse_args()
    secs = opts.seconds
    with tempfile.TemporaryDirectory(prefix="qb") as d, ChardevRegistry() as reg:
        reg.new("rb", "ringbuf,size=65536")
        srv = QmpServer(reg)
        addr = srv.listen(f"unix:{os.path.join(d, 'q.sock')},server=on,wait=off")
        try:
            n = asyncio.run(_loop(addr, secs, "query-version", None))
            print(f"query-version, 1 client:  {n / secs:8.0f} req/s")
            n = asyncio.run(_parallel(addr, secs, 4))
            print(f"query-version, 4 clients: {n / secs:8.0f} req/s total")
            n = asyncio.run(_loop(addr, secs, "ringbuf-write",
                                  {"device": "rb", "data": "x" * 4096}))
            print(f"ringbuf-write 4 KiB:      {n / secs:8.0f} req/s "
                  f"({n * 4096 / secs / 1e6:.1f} MB/s)")
        finally:
            srv.close()
    msg = json.dumps({"execute": "ringbuf-write",
                      "arguments": {"device": "rb", "data": "y" * 1000}}).encode()
    stream = msg * 2000
    sp = JsonStreamSplitter()
    t0 = time.perf_counter()
    count = 0
    for i in range(0, len(stream), 4096):
        count += len(sp.feed(stream[i:i + 4096]))
    dt = time.perf_counter() - t0
    print(f"splitter: {len(stream) / dt / 1e6:.1f} MB/s ({count} messages)")


if __name__ == "__main__":
    main()
