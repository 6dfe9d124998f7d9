"""Guest-facing device models (installed as e2kchar.devices).

Every model offers read(offset, size) / write(offset, size, value), an IrqLine output,
reset(), state() / load_state(); see docs/interfaces.md ("Device interface"), the register
references in docs/devices/ and, for plugging them into another emulator, docs/embedding.md.
"""

from .am85c30 import Am85C30
from .clock import Clock, HostClock, Timer, VirtualClock
from .irq import IrqLine
from .lms import LmsConsole
from .memory import BytearrayMemory, DmaMemory, GuestMemory, GuestMemoryError
from .ns16550a import Ns16550a
from .virtio_console import VirtioConsole
from .virtio_mmio import VirtioMmio

__all__ = ["IrqLine", "GuestMemory", "DmaMemory", "GuestMemoryError", "BytearrayMemory"]
__all__ += ["VirtioMmio", "VirtioConsole"]
__all__ += ["Ns16550a", "Am85C30", "LmsConsole", "Clock", "HostClock", "VirtualClock", "Timer"]
