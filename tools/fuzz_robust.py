"""The long form of tests/test_fuzz_robust.py: the same hypothesis targets (tests/fuzz_robust.py)
with many more examples, random (not derandomized) seeds.

    .venv/bin/python tools/fuzz_robust.py [--examples N]

Prints each target's example count and time; a failure prints hypothesis' minimal example.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_robust import (  # noqa: E402
    DESCS,
    HEADS,
    OPTION_TEXT,
    QMP_ARGS,
    TEXT,
    check_argv,
    check_option,
    check_qmp,
    check_virtqueue,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from e2kchar import ChardevRegistry  # noqa: E402
from e2kchar.monitor.commands import Monitor  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=5000)
    n = ap.parse_args().examples
    cfg = settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))

    @cfg
    @given(OPTION_TEXT)
    def options(text: str) -> None:
        check_option(text)

    @cfg
    @given(st.lists(st.sampled_from(["-m", "-serial", "-chardev", "--timeout", "-device",
                                     "-qmp", "-mon", "-append", "-S"]) | TEXT, max_size=8))
    def argv(args: list[str]) -> None:
        check_argv(args)

    with ChardevRegistry() as reg:
        mon = Monitor(reg)
        names = [c for c in sorted(mon.commands) if c not in ("quit", "stop")] + ["nosuch"]

        @cfg
        @given(st.sampled_from(names), QMP_ARGS)
        def qmp(name: str, args: object) -> None:
            check_qmp(mon, name, args)

        @settings(cfg, max_examples=max(1, n // 10))
        @given(DESCS, HEADS)
        def virtqueue(descs: list[tuple[int, int, int, int]], heads: list[int]) -> None:
            took = check_virtqueue(descs, heads)
            assert took < 2.0, took

        for target in (options, argv, qmp, virtqueue):
            t0 = time.monotonic()
            target()
            print(f"{target.__name__}: held, {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
