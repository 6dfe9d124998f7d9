"""Rate-limited logging per cause: a peer, a file system or a guest that fails the same way
a million times gets one line per cause and interval, never one per byte or per accept
(docs/architecture.md, "Robustness").

A cause names what failed, never an object's ``id()``: ids of dead objects are reused, so
a chardev created after another one died could inherit its silence. Key by something
stable and meaningful, owner first: ``(chardev label, message class, ...)``, ``("qmp",
address, "refuse")``; an owner that goes away calls ``forget_owner`` so that a new one of
the same name starts with a fresh budget.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

#: at most one line per cause in this many seconds
INTERVAL = 10.0

_lock = threading.Lock()
#: cause -> (time of the last line, lines suppressed since)
_seen: dict[object, tuple[float, int]] = {}


def log_limited(logger: logging.Logger, level: int, cause: object, msg: str, *args: Any,
                exc_info: Any = None, interval: float = INTERVAL) -> bool:
    """Log msg unless ``cause`` (a hashable key, see the module docstring) was logged less
    than ``interval`` seconds ago; the next line that gets through says how many were
    suppressed. True if logged."""
    now = time.monotonic()
    with _lock:
        last = _seen.get(cause)
        if last is not None and now - last[0] < interval:
            _seen[cause] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        if len(_seen) > 4096:  # causes are few; never let the table itself grow unbounded
            _seen.clear()
        _seen[cause] = (now, 0)
    if suppressed:
        msg += " (%d similar messages suppressed)"
        args = (*args, suppressed)
    logger.log(level, msg, *args, exc_info=exc_info)
    return True


def forget(cause: object) -> None:
    """The cause is over (the backend works again): its next failure is logged at once."""
    with _lock:
        _seen.pop(cause, None)


def forget_owner(owner: object) -> None:
    """Every cause whose key is a tuple starting with ``owner`` is over (a chardev closed)."""
    with _lock:
        for cause in [c for c in _seen if isinstance(c, tuple) and c and c[0] == owner]:
            del _seen[cause]
