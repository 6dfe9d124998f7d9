"""Monitors: the QMP server and the human monitor, sharing one command table.

Typical wiring (the CLI does this)::

    qmp = QmpServer(registry, vm)                       # vm: a VmControl, or None
    qmp.listen("unix:/tmp/qmp.sock,server=on,wait=off")
    hmp = HumanMonitor(registry, vm, chardev="compat_monitor0", monitor=qmp.monitor)
    ...
    hmp.close(); qmp.close()                            # before registry.close()
"""

from .commands import COMMANDS, Monitor, Outcome, QmpError, VmControl, check_args
from .hmp import HmpInterpreter, HumanMonitor
from .qmp import JsonStreamSplitter, QmpServer

__all__ = [
    "COMMANDS",
    "HmpInterpreter",
    "HumanMonitor",
    "JsonStreamSplitter",
    "Monitor",
    "Outcome",
    "QmpError",
    "QmpServer",
    "VmControl",
    "check_args",
]
