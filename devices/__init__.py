"""Guest-facing device models (installed as e2kchar.devices).

Every model offers read(offset, size) / write(offset, size, value), an IrqLine output,
reset(), state() / load_state(); see ARCHITECTURE.md section 5.
"""

from .irq import IrqLine
from .memory import BytearrayMemory, GuestMemory, GuestMemoryError
from .virtio_console import VirtioConsole
from .virtio_mmio import VirtioMmio

__all__ = ["IrqLine", "GuestMemory", "GuestMemoryError", "BytearrayMemory"]
__all__ += ["VirtioMmio", "VirtioConsole"]
