"""ChardevHost: what a backend may ask of the registry that created it.

Backends see their registry only through this protocol, so a backend module never imports
the registry (or anything above the chardev layer) and a test or an embedder can host
backends with a small stand-in object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .base import Chardev
    from .ioloop import IOLoop


class ChardevHost(Protocol):
    """The registry as a backend sees it."""

    #: the I/O thread every backend registers its fds and timers with
    ioloop: IOLoop
    #: whether backends that can buffer output bursts (``Chardev.coalesce_output``) may
    coalesce_output: bool

    def find(self, label: str) -> Chardev | None:
        """The chardev registered under label (a mux looks up its base)."""
        ...

    def request_exit(self, status: int) -> None:
        """End the emulation with status (mux Ctrl-A x, testdev 'q')."""
        ...

    def claim_stdio(self) -> bool:
        """Take the process's stdin/stdout for one chardev; False if another has them."""
        ...

    def release_stdio(self) -> None:
        """Give stdio back (the stdio chardev closed)."""
        ...

    def destroy(self, chardev: Chardev) -> None:
        """Unregister and finalize chardev (``CharBackend.deinit(delete=True)``)."""
        ...
