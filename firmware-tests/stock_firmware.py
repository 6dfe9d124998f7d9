"""Fetch Debian's prebuilt RISC-V firmware at test time (nothing third-party is committed).

`apt-get download` into a cache folder, then `dpkg-deb -x`. When apt cannot reach Debian's
packages the caller gets a FetchError with the reason, and the tests fail with it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).resolve().parent / "build" / "debian"

PACKAGES = {
    "opensbi": ["usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf",
                "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin",
                "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.elf"],
    "u-boot-qemu": ["usr/lib/u-boot/qemu-riscv64/u-boot.bin",
                    "usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin"],
}


class FetchError(RuntimeError):
    pass


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def fetch(package: str) -> Path:
    """Unpacked root of a Debian package (downloaded once per checkout)."""
    root = CACHE / package
    if root.exists() and all((root / p).exists() for p in PACKAGES.get(package, [])):
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError("apt-get and dpkg-deb are needed to fetch Debian's firmware packages")
    debs = sorted(CACHE.glob(f"{package}_*.deb"))
    if not debs:
        proc = _run(["apt-get", "download", package], CACHE)
        if proc.returncode != 0:
            # a fresh machine may have no package lists yet
            update = _run(["apt-get", "update"], CACHE)
            proc = _run(["apt-get", "download", package], CACHE)
            if proc.returncode != 0:
                raise FetchError(
                    f"cannot download Debian package '{package}': {proc.stderr.strip()} "
                    f"(apt-get update said: {update.stderr.strip()[-300:]})")
        debs = sorted(CACHE.glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {package} produced no .deb")
    tmp = CACHE / f".{package}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)], CACHE)
    if proc.returncode != 0:
        raise FetchError(f"dpkg-deb -x {debs[-1].name} failed: {proc.stderr.strip()}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def path(package: str, relative: str) -> Path:
    p = fetch(package) / relative
    if not p.exists():
        raise FetchError(f"{relative} is not in Debian package '{package}'")
    return p


def dtc() -> list[str]:
    """Debian's device-tree compiler as a command (with its libyaml beside it, so a machine
    without that library can run it too)."""
    exe = path("device-tree-compiler", "usr/bin/dtc")
    libs = sorted({str(p.parent) for p in fetch("libyaml-0-2").rglob("libyaml*.so*")})
    env_path = ":".join(libs)
    return ["env", f"LD_LIBRARY_PATH={env_path}", str(exe)] if libs else [str(exe)]


def uboot_mmode() -> Path:
    return path("u-boot-qemu", "usr/lib/u-boot/qemu-riscv64/u-boot.bin")


def uboot_smode() -> Path:
    return path("u-boot-qemu", "usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin")


def opensbi_fw_jump() -> Path:
    return path("opensbi", "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf")
