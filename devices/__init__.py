"""Guest-facing device models (installed as e2kchar.devices).

Every model offers read(offset, size) / write(offset, size, value), an IrqLine output,
reset(), state() / load_state(); see ARCHITECTURE.md section 5.
"""

from .irq import IrqLine
from .memory import BytearrayMemory, GuestMemory, GuestMemoryError

__all__ = ["IrqLine", "GuestMemory", "GuestMemoryError", "BytearrayMemory"]
