#!/usr/bin/env python3
"""Build the riscv64 Linux kernel the Linux firmware-tests boot (never committed: GPL, 2 MB).

Debian's `linux-source-6.1` with `gcc-riscv64-linux-gnu`: `make tinyconfig`, the project's
fragment firmware-tests/linux/e2k.config merged over it, and an embedded initramfs whose
/init is firmware-tests/linux/init.c built against the kernel's own tools/include/nolibc.
The Image is cached outside the checkout, in ~/.cache/e2kchar/linux/KEY/Image (or
$E2KCHAR_LINUX_CACHE/KEY), KEY covering the source package version, the fragment, the init
source, the initramfs list, the compiler version and this recipe; CI runs in a fresh clone,
so a cold build (4-8 min on 2 cores) happens once per machine.

    tools/build_linux.py            # build (or find cached) and print the Image path

Missing apt packages are installed when running as root with apt-get; otherwise
`LinuxBuildError` says exactly what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "firmware-tests" / "linux"
FRAGMENT = LINUX / "e2k.config"
INIT_SRC = LINUX / "init.c"
INITRAMFS_LIST = LINUX / "initramfs.list"
SOURCE_PKG = "linux-source-6.1"
SOURCE_TAR = Path("/usr/src/linux-source-6.1.tar.xz")
CROSS = "riscv64-linux-gnu-"
APT_PACKAGES = (SOURCE_PKG, "gcc-riscv64-linux-gnu", "flex", "bison", "bc", "cpio", "make")
#: bump when the recipe below changes in a way that changes the Image
RECIPE = "1"
INIT_CFLAGS = ("-Os", "-static", "-nostdlib", "-ffreestanding", "-fno-asynchronous-unwind-tables",
               "-fno-stack-protector", "-march=rv64imac_zicsr", "-mabi=lp64", "-Wall")

log = logging.getLogger("build_linux")


class LinuxBuildError(RuntimeError):
    """The kernel cannot be built here (the message says what is missing)."""


def cache_root() -> Path:
    env = os.environ.get("E2KCHAR_LINUX_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "e2kchar" / "linux"


def _pkg_version(pkg: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", pkg],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    words = out.stdout.split()
    if out.returncode != 0 or "installed" not in words[:3] or len(words) < 4:
        return None
    return words[3]


def _missing() -> list[str]:
    missing = [p for p in APT_PACKAGES if _pkg_version(p) is None]
    if not SOURCE_TAR.exists() and SOURCE_PKG not in missing:
        missing.append(SOURCE_PKG)
    return missing


def ensure_packages() -> None:
    """Install the apt packages the build needs (as root, quietly); raise if impossible."""
    missing = _missing()
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise LinuxBuildError(
            "cannot build the test kernel: missing Debian packages " + " ".join(missing)
            + " (run as root: apt-get install -y " + " ".join(APT_PACKAGES) + ")")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = [apt, "install", "-y", "-q", "--no-install-recommends", *missing]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        subprocess.run([apt, "update", "-q"], capture_output=True, env=env, check=False)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    still = _missing()
    if res.returncode != 0 or still:
        raise LinuxBuildError(f"cannot build the test kernel: apt-get install {' '.join(missing)}"
                              f" failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def _compiler_version() -> str:
    gcc = shutil.which(CROSS + "gcc")
    if gcc is None:
        raise LinuxBuildError(f"cannot build the test kernel: no {CROSS}gcc "
                              "(apt package gcc-riscv64-linux-gnu)")
    return subprocess.run([gcc, "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]


def cache_key() -> str:
    """What the Image depends on, hashed."""
    h = hashlib.sha256()
    for part in (RECIPE, _pkg_version(SOURCE_PKG) or "?", _compiler_version()):
        h.update(part.encode() + b"\0")
    for f in (FRAGMENT, INIT_SRC, INITRAMFS_LIST):
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path | None = None, quiet: bool = True) -> None:
    log.info("+ %s", " ".join(cmd))
    res = subprocess.run(cmd, cwd=cwd, capture_output=quiet, text=True, check=False)
    if res.returncode != 0:
        tail = ((res.stdout or "")[-3000:] + (res.stderr or "")[-3000:]) if quiet else ""
        raise LinuxBuildError(f"kernel build step failed ({res.returncode}): "
                              f"{' '.join(cmd)}\n{tail}")


def _source(root: Path) -> Path:
    """The unpacked kernel tree (shared by every KEY of one source package version)."""
    version = _pkg_version(SOURCE_PKG) or "unknown"
    base = root / f"src-{version}"
    tree = base / "linux-source-6.1"
    done = base / ".unpacked"
    if not done.exists():
        log.info("unpacking %s (about a minute)", SOURCE_TAR)
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        with tarfile.open(SOURCE_TAR) as tar:
            tar.extractall(base, filter="tar")
        done.touch()
    return tree


def _build_init(tree: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    init = out / "init"
    _run([CROSS + "gcc", *INIT_CFLAGS, "-include", str(tree / "tools/include/nolibc/nolibc.h"),
          "-o", str(init), str(INIT_SRC), "-lgcc"])
    _run([CROSS + "strip", str(init)])
    return init


def build(jobs: int | None = None, quiet: bool = True) -> Path:
    """The cached Image for the current sources, building it if needed."""
    ensure_packages()
    root = cache_root()
    key = cache_key()
    image = root / key / "Image"
    if image.exists():
        return image
    with _locked(root / ".lock"):
        if image.exists():
            return image
        tree = _source(root)
        out = root / f"build-{_pkg_version(SOURCE_PKG)}"   # kept: a rebuild is a relink
        out.mkdir(parents=True, exist_ok=True)
        init = _build_init(tree, out / "e2k-initramfs")   # (out/init is the kernel's)
        listing = out / "e2k-initramfs" / "initramfs.list"
        listing.write_text(INITRAMFS_LIST.read_text().replace("@INIT@", str(init)))
        frag = out / "e2k.config"
        frag.write_text(FRAGMENT.read_text() + f'CONFIG_INITRAMFS_SOURCE="{listing}"\n')
        make = ["make", "-C", str(tree), f"O={out}", "ARCH=riscv", f"CROSS_COMPILE={CROSS}"]
        _run([*make, "tinyconfig"], quiet=quiet)
        _run(["sh", str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(out),
              str(out / ".config"), str(frag)], cwd=tree, quiet=quiet)
        _run([*make, "olddefconfig"], quiet=quiet)
        _check_config(out / ".config", frag)
        _run([*make, f"-j{jobs or os.cpu_count() or 2}", "Image"], quiet=quiet)
        image.parent.mkdir(parents=True, exist_ok=True)
        tmp = image.with_suffix(".tmp")
        shutil.copyfile(out / "arch/riscv/boot/Image", tmp)
        (image.parent / "config").write_text((out / ".config").read_text())
        tmp.rename(image)
    return image


def _check_config(config: Path, fragment: Path) -> None:
    """Every option of the fragment took (a dependency missing would silently drop it)."""
    have = config.read_text()
    wrong = []
    for line in fragment.read_text().splitlines():
        line = line.strip()
        if not line.startswith("CONFIG_") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        lines = have.splitlines()
        if value == "n":
            ok = f"{name}=y" not in lines and f"{name}=m" not in lines
        else:
            ok = f"{name}={value}" in lines
        if not ok:
            wrong.append(line)
    if wrong:
        raise LinuxBuildError("kernel config options did not take: " + ", ".join(wrong))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(build(quiet=False))
    except LinuxBuildError as exc:
        print(f"build_linux: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
