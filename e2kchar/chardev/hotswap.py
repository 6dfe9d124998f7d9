"""Hotswap: QMP ``chardev-change``, replacing the backend under a running frontend.

The whole algorithm is here; the registry only calls ``change()`` on its I/O thread, so no
frontend callback runs while it works. ``old`` is the registered chardev, ``new`` the one
built from the new config.

Refusals (nothing changes): an unknown id; a mux config ("Mux device hotswap not supported
yet"). A mux id swaps the mux's *base* instead, so every frontend of the mux keeps its slot
and focus (QEMU refuses that too; we need not).

Unattached (no frontend): ``new`` is opened before ``old`` is dropped, so a failed open
leaves ``old`` in place. If both want one exclusive host resource (the same listening port
or path, a tty, stdio; ``Chardev.exclusive_resource``) ``old`` lets go of it if it can
(``chr_release_exclusive``: a server closes its listener and keeps its client, and takes
it back if ``new`` fails); otherwise ``old`` is destroyed first and reopened
(``reopen=True``: nothing truncated) if ``new`` fails.

Attached (a frontend):
1. A frontend without a be_change handler refuses ("Chardev user does not support chardev
   hotswap").
2. An ``old`` holding the resource ``new`` needs lets go of it for the swap
   (``chr_release_exclusive``: a server closes its listener, keeping its client).
3. ``new`` opens (a failure re-takes the resource and is the error). If ``old`` was open and
   ``new`` is not, the frontend gets CLOSED now.
4. The frontend moves: detached from ``old``, attached to ``new`` (it gets a new tag). Under
   both write locks, what ``old`` accepted but has not delivered (coalesced output a stalled
   peer never took) is put in front of ``new``'s output, ``old`` refuses further output
   (``retire_output``), and the handle is pointed at ``new`` (``switch_chardev``). A writer
   on the CPU thread therefore lands on exactly one of them.
5. ``be_change()`` runs: the device re-installs its handlers (``set_handlers`` replays OPENED
   if ``new`` is open), re-pushes line settings and re-arms a pending watch.
6. Veto (be_change < 0, or it raised): everything of step 4 is undone in reverse, output
   ``new`` took meanwhile goes back behind ``old``'s, a CLOSED of step 3 is answered with
   OPENED, ``new`` is finalized, the resource re-taken: "Chardev 'ID' change failed".
7. Success: the open logfile (same path: never truncated) and output taps move to ``new``;
   ``old`` is finalized without a frontend (its CLOSED reaches nobody) and ``new`` is
   registered under the id.

Late writers: a ``CharBackend.write`` that read the handle before step 4 and wrote to
``old`` after it gets -EPIPE (``Chardev.closing``); CharBackend then re-reads its chardev and
sends the rest to ``new`` (frontend.py, ``_do_write``), so no byte is lost or doubled.

The output hot path (base.OutputSink, no lock on the writer's side) is ordered by step 4
too. Its bytes sit in the frontend's own sink buffer, which is never replaced, and only
the sink's drainer takes bytes out of it, under the drainer's write lock. With both locks
held, ``switch_chardev`` makes ``old`` clear ``sink.fast`` and collect everything put so
far into its output (accepted there: logfile, taps), then makes ``new`` the drainer; only
then does ``retire_output`` hand ``old``'s undelivered output to the front of ``new``. A
writer that saw ``fast`` before the swap and puts after the collect leaves its byte in the
sink, where ``new`` (started by ``bind_sink``) takes it after everything ``old`` held, and
a writer that sees ``fast`` cleared goes the locked way above. Each byte is thus taken
once, by ``old`` before the swap or by ``new`` after it, in the order it was put. A veto
does the same in reverse: ``new`` collects the sink behind its own output, which then goes
behind ``old``'s.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .base import Chardev
from .configbase import BackendConfig
from .frontend import CharBackend
from .types import ChardevError, ChardevEvent

log = logging.getLogger(__name__)


class SwapHost(Protocol):
    """What the swap needs of the registry."""

    def find(self, label: str) -> Chardev | None: ...

    def backend_class(self, type_name: str) -> type[Chardev]: ...

    def open_chardev(self, label: str | None, config: BackendConfig, reopen: bool = False,
                     log_from: Chardev | None = None) -> Chardev: ...

    def register_chardev(self, label: str, chr_: Chardev) -> None: ...

    def unregister_chardev(self, label: str) -> None: ...


def change(host: SwapHost, id: str, config: BackendConfig) -> dict[str, Any]:
    """chardev-change on the I/O thread; returns what chardev-change returns."""
    old = host.find(id)
    if old is None:
        raise ChardevError(f"Chardev '{id}' does not exist")
    if "mux" in (config.type, old.config.type):
        # a mux config exists, so backends/mux.py is loaded (no file to read here)
        from .backends.mux import MuxConfig

        if isinstance(config, MuxConfig):
            raise ChardevError("Mux device hotswap not supported yet")
        if isinstance(old.config, MuxConfig):
            return change(host, old.config.chardev, config)
    fe = old.be
    if fe is None:
        return _swap_unattached(host, id, old, config)
    if not isinstance(fe, CharBackend) or not fe.has_be_change:
        raise ChardevError("Chardev user does not support chardev hotswap")
    return _swap_attached(host, id, old, fe, config)


def _swap_attached(host: SwapHost, id: str, old: Chardev, fe: CharBackend,
                   config: BackendConfig) -> dict[str, Any]:
    new_cls = host.backend_class(config.type)
    key = type(old).exclusive_resource(old.config)
    released = key is not None and key == new_cls.exclusive_resource(config) \
        and old.chr_release_exclusive()
    try:
        new = host.open_chardev(id, config, log_from=old)
    except BaseException:
        if released:
            old.chr_reacquire_exclusive()
        raise
    closed_sent = False
    if old.be_open and not new.be_open:
        old.be_event(ChardevEvent.CLOSED)
        closed_sent = True
    new.taps = list(old.taps)  # observers see the output on both sides of the swap
    old.detach_frontend(fe)
    try:
        fe.tag = new.attach_frontend(fe)
    except ChardevError:
        fe.tag = old.attach_frontend(fe)
        _discard(new, old)
        if released:
            old.chr_reacquire_exclusive()
        raise
    with old.write_lock, new.write_lock:
        # the order is the exactness argument (see the module docstring, "Late writers")
        fe.switch_chardev(new)  # old collects the sink, new drains it from now on
        new.adopt_output(old.retire_output(), front=True)
    fe.fe_open = False
    if fe.call_be_change() < 0:
        new.detach_frontend(fe)
        with old.write_lock, new.write_lock:
            fe.switch_chardev(old)  # new collects the sink (behind what it holds)
            old.resume_output()
            old.adopt_output(new.retire_output(flush=False), front=False)
        fe.tag = old.attach_frontend(fe)
        fe.fe_open = False
        if closed_sent:
            old.be_event(ChardevEvent.OPENED)
        _discard(new, old)
        if released:
            old.chr_reacquire_exclusive()
        raise ChardevError(f"Chardev '{id}' change failed")
    _hand_over(old, new)
    _replace(host, id, old, new)
    return new.query_extra()


def _swap_unattached(host: SwapHost, id: str, old: Chardev,
                     config: BackendConfig) -> dict[str, Any]:
    """Never lose the old chardev before the new one is known to open."""
    key = type(old).exclusive_resource(old.config)
    released = False
    if key is not None and key == host.backend_class(config.type).exclusive_resource(config):
        # a server lets go of its port or path but stays live (its client too) and takes
        # it back if the open fails; what cannot let go alone is closed first
        released = old.chr_release_exclusive()
        if not released:
            return _swap_closing_old(host, id, old, config)
    try:
        new = host.open_chardev(id, config, log_from=old)
    except BaseException:
        if released:
            old.chr_reacquire_exclusive()
        raise
    _hand_over(old, new)
    with old.write_lock, new.write_lock:
        new.adopt_output(old.retire_output(), front=True)
    _replace(host, id, old, new)
    return new.query_extra()


def _swap_closing_old(host: SwapHost, id: str, old: Chardev,
                      config: BackendConfig) -> dict[str, Any]:
    """old holds what new needs and cannot let go of it alone (a tty, stdio): close it,
    open new, and bring old back from its config if that fails."""
    old_config, old_taps = old.config, old.taps
    with old.write_lock:
        left = old.retire_output()
    host.unregister_chardev(id)
    old.finalize()
    try:
        new = host.open_chardev(id, config)
    except ChardevError:
        try:
            restored = host.open_chardev(id, old_config, reopen=True)
            restored.taps = list(old_taps)
            with restored.write_lock:
                restored.adopt_output(left, front=True)
            host.register_chardev(id, restored)
        except ChardevError:
            log.exception("could not restore chardev %s after a failed change; "
                          "%d bytes of its output undelivered", id, len(left))
        raise
    new.taps = list(old_taps)
    with new.write_lock:
        new.adopt_output(left, front=True)
    host.register_chardev(id, new)
    return new.query_extra()


def _replace(host: SwapHost, id: str, old: Chardev, new: Chardev) -> None:
    """The swap succeeded: old goes (finalized under its id), new takes the id."""
    host.unregister_chardev(id)
    old.label = id
    old.finalize()
    host.register_chardev(id, new)


def _hand_over(old: Chardev, new: Chardev) -> None:
    """What outlives a swap: the open logfile (never truncated) and output taps."""
    if new.logfile is not None and new.logfile is old.logfile:
        old.logfile = None
    with old.write_lock:
        if not new.taps:
            new.taps = list(old.taps)
        old.taps = []


def _discard(new: Chardev, old: Chardev) -> None:
    """Drop a new chardev that will not be used, keeping a logfile it shares with old."""
    if new.logfile is not None and new.logfile is old.logfile:
        new.logfile = None
    new.finalize()
