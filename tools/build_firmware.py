#!/usr/bin/env python3
"""Build guest drivers (C + startup asm + linker script) for the RV64 stand-in CPU.

Uses the pinned PyPI toolchain (`ziglang`, run as `python -m ziglang cc`), so a fresh
machine needs nothing from apt. Importable: tests call `build(name)`.

    tools/build_firmware.py hello_16550            # -> firmware-tests/build/e2k/hello_16550.elf
    tools/build_firmware.py --map virt hello_16550 # QEMU riscv `virt` map (benchmarks)
    tools/build_firmware.py --bundled              # rebuild the bundled demo firmware
    tools/build_firmware.py --check-bundled        # CI: the committed binary matches a rebuild
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FW = ROOT / "firmware-tests"
COMMON = FW / "common"
DRIVERS = FW / "drivers"
BUILD = FW / "build"
BUNDLED_SRC = "e2k_demo"
BUNDLED_OUT = ROOT / "e2kchar" / "machine" / "firmware" / "e2k-demo.elf"

CFLAGS = [
    "-target", "riscv64-freestanding-none",
    "-mcpu=generic_rv64+m+a+c+zicsr",
    "-O2", "-ffreestanding", "-nostdlib", "-mcmodel=medany", "-fno-pic",
    "-fno-builtin", "-fno-stack-protector", "-Wall", "-Werror=implicit-function-declaration",
]


class BuildError(RuntimeError):
    pass


def _compiler() -> list[str]:
    return [sys.executable, "-m", "ziglang", "cc"]


def build(name: str, *, map: str = "e2k", out_dir: Path | None = None,
          defines: dict[str, str | int] | None = None, debug: bool = True,
          out: Path | None = None) -> Path:
    """Compile firmware-tests/drivers/NAME.c with the common startup code; return the ELF."""
    src = DRIVERS / f"{name}.c"
    if not src.exists():
        raise BuildError(f"no such driver source: {src}")
    if map not in ("e2k", "virt"):
        raise BuildError(f"unknown map '{map}' (e2k or virt)")
    suffix = ""
    if defines:
        digest = hashlib.sha1(repr(sorted(defines.items())).encode()).hexdigest()[:8]
        suffix = f"-{digest}"
    if out is None:
        out = (out_dir or BUILD / map) / f"{name}{suffix}.elf"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = _compiler() + CFLAGS + ["-g" if debug else "-g0", "-I", str(COMMON), "-T",
                                  str(COMMON / "link.ld")]
    if map == "virt":
        cmd.append("-DMAP_VIRT")
    for key, value in (defines or {}).items():
        cmd.append(f"-D{key}={value}")
    # build into a temp name and rename, so parallel test workers never see half a file
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_out = Path(tmp) / out.name
        cmd += [str(COMMON / "start.S"), str(COMMON / "libc.c"), str(src), "-o", str(tmp_out)]
        env = dict(os.environ)
        env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(BUILD / ".zig-cache"))
        env.setdefault("ZIG_LOCAL_CACHE_DIR", str(BUILD / ".zig-cache"))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise BuildError(f"building {name} failed:\n{' '.join(cmd)}\n{proc.stderr}")
        os.replace(tmp_out, out)
    return out


def build_bundled(out: Path = BUNDLED_OUT) -> Path:
    """The bundled demo firmware: no debug info, so the build is byte-reproducible."""
    return build(BUNDLED_SRC, debug=False, out=out)


def check_bundled() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build_bundled(Path(tmp) / "e2k-demo.elf")
        return BUNDLED_OUT.exists() and fresh.read_bytes() == BUNDLED_OUT.read_bytes()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="driver names (firmware-tests/drivers/NAME.c)")
    ap.add_argument("--map", default="e2k", choices=("e2k", "virt"))
    ap.add_argument("--out-dir", type=Path)
    ap.add_argument("-D", dest="defines", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--bundled", action="store_true", help="rebuild the bundled firmware")
    ap.add_argument("--check-bundled", action="store_true",
                    help="exit 1 unless the committed bundled firmware matches a rebuild")
    args = ap.parse_args(argv)
    try:
        if args.check_bundled:
            ok = check_bundled()
            print("bundled firmware matches its source" if ok else
                  "bundled firmware differs from a rebuild: run tools/build_firmware.py --bundled")
            return 0 if ok else 1
        if args.bundled:
            print(build_bundled())
        defines = dict(d.split("=", 1) if "=" in d else (d, "1") for d in args.defines)
        for name in args.names:
            print(build(name, map=args.map, out_dir=args.out_dir, defines=defines or None))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not (args.names or args.bundled):
        ap.print_usage()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
