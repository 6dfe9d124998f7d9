"""`e2kchar run`: boot a firmware on the E2K machine with QEMU-style options."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: e2kchar run [FIRMWARE.elf] [options]")
        return 0 if argv else 2
    if argv[0] != "run":
        print(f"e2kchar: unknown command '{argv[0]}' (try: e2kchar run --help)", file=sys.stderr)
        return 2
    print("e2kchar: no firmware yet: the machine harness has not landed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
