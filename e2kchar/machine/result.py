"""What run() returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunResult:
    """Why run() returned. exit_code: the guest's code for "exit", 124 for "timeout",
    1 for "trap" (the report is in pc/cause/tval/message), 0 otherwise."""

    reason: str
    exit_code: int = 0
    pc: int = 0
    cause: int | None = None
    tval: int | None = None
    message: str = ""
