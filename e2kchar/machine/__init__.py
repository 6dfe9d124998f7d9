"""The E2K machine harness: a unicorn RV64 CPU with the E2K machine's devices and map."""

from .elf import ElfError
from .machine import Machine, MachineError, RunResult

__all__ = ["Machine", "MachineError", "RunResult", "ElfError"]
