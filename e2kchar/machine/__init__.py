"""The E2K machine harness: a unicorn RV64 CPU with the E2K machine's devices and map.

    from e2kchar.machine import Machine
    with Machine(registry=reg, serial=[chr_a, chr_b, chr_com1], lms=None) as m:
        m.load("driver.elf")            # ELF PT_LOAD segments, or a raw image at RAM base
        res = m.run(timeout=10.0)       # RunResult(reason, exit_code, pc, cause, tval, message)

run() executes the guest on the calling thread; stop(), pause()/resume() and reset() may
be called from any thread. Devices are reached only through their read/write/IrqLine
interface; the map, boot_info and interrupt numbers are those of docs/interfaces.md.
How the machine is put together is in the docstring of machine.py.
"""

from .elf import ElfError
from .errors import MachineError
from .machine import Machine
from .result import RunResult

__all__ = ["Machine", "MachineError", "RunResult", "ElfError"]
