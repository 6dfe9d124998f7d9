"""Monitors: the QMP server and the human monitor, sharing one command table.

Typical wiring (the CLI does this)::

    qmp = QmpServer(registry, vm)                       # vm: a VmControl, or None
    qmp.listen("unix:/tmp/qmp.sock,server=on,wait=off")
    hmp = HumanMonitor(registry, vm, chardev="compat_monitor0", monitor=qmp.monitor)
    ...
    hmp.close(); qmp.close()                            # before registry.close()
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .commands import COMMANDS, Monitor, Outcome, QmpError, VmControl, check_args
    from .hmp import HmpInterpreter, HumanMonitor
    from .qmp import JsonStreamSplitter, QmpServer

#: name -> submodule; a name is imported on first use, so `-qmp` alone never loads the
#: human monitor and `-mon` alone never loads the QMP server (start-up time)
_EXPORTS = {
    "COMMANDS": "commands", "Monitor": "commands", "Outcome": "commands",
    "QmpError": "commands", "VmControl": "commands", "check_args": "commands",
    "HmpInterpreter": "hmp", "HumanMonitor": "hmp",
    "JsonStreamSplitter": "qmp", "QmpServer": "qmp",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

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
