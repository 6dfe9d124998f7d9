"""A PLIC-layout interrupt controller: priorities, pending, per-context enables, threshold,
claim/complete. Context 0 is M-mode hart 0, context 1 S-mode hart 0 (docs/interfaces.md)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PRIORITY_BASE = 0x0
PENDING_BASE = 0x1000
ENABLE_BASE = 0x2000
ENABLE_STRIDE = 0x80
CONTEXT_BASE = 0x20_0000
CONTEXT_STRIDE = 0x1000
MAX_PRIORITY = 7


class Plic:
    """Level-triggered sources 1..num_sources-1; on_output(context, level) on every edge.

    A source that is claimed is not pending again until the guest completes it (gateway
    semantics), so a level source raises at most one claim per completion."""

    def __init__(self, num_sources: int = 64, num_contexts: int = 2,
                 on_output: Callable[[int, bool], object] | None = None) -> None:
        self.num_sources = num_sources
        self.num_contexts = num_contexts
        self.on_output = on_output
        self._lock = threading.RLock()
        self._words = (num_sources + 31) // 32
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.priority = [0] * self.num_sources
            self.level = [False] * self.num_sources
            self.pending = [False] * self.num_sources
            self.claimed = [False] * self.num_sources
            self.enable = [[0] * self._words for _ in range(self.num_contexts)]
            self.threshold = [0] * self.num_contexts
            self.output = [False] * self.num_contexts
            self._update()

    # -- inputs ------------------------------------------------------------------------

    def set_irq(self, source: int, level: bool) -> None:
        """A device's IrqLine changed (any thread)."""
        if not 0 < source < self.num_sources:
            log.warning("PLIC: irq on nonexistent source %d ignored", source)
            return
        with self._lock:
            self.level[source] = bool(level)
            if level and not self.claimed[source]:
                self.pending[source] = True
            elif not level:
                # a level source that dropped before being claimed is no longer pending
                self.pending[source] = False
            self._update()

    # -- the guest's side --------------------------------------------------------------

    def enabled(self, ctx: int, src: int) -> bool:
        """Has context `ctx` enabled source `src`?"""
        return bool(self.enable[ctx][src // 32] >> (src % 32) & 1)

    def _best(self, ctx: int) -> int:
        best, best_prio = 0, self.threshold[ctx]
        for src in range(1, self.num_sources):
            if (self.pending[src] and self.priority[src] > best_prio
                    and self.enabled(ctx, src)):
                best, best_prio = src, self.priority[src]
        return best

    def _update(self) -> None:
        changes = []
        for ctx in range(self.num_contexts):
            out = self._best(ctx) != 0
            if out != self.output[ctx]:
                self.output[ctx] = out
                changes.append((ctx, out))
        cb = self.on_output
        if cb is not None:
            for ctx, out in changes:
                cb(ctx, out)

    def read(self, offset: int, size: int) -> int:
        if size != 4 or offset & 3:
            log.debug("PLIC: %d-byte read at %#x reads 0", size, offset)
            return 0
        with self._lock:
            if offset < PENDING_BASE:
                src = offset // 4
                return self.priority[src] if src < self.num_sources else 0
            if offset < ENABLE_BASE:
                word = (offset - PENDING_BASE) // 4
                if word >= self._words:
                    return 0
                return sum(1 << i for i in range(32)
                           if word * 32 + i < self.num_sources and self.pending[word * 32 + i])
            if offset < CONTEXT_BASE:
                ctx, word = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
                word //= 4
                if ctx < self.num_contexts and word < self._words:
                    return self.enable[ctx][word]
                return 0
            ctx, reg = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
            if ctx >= self.num_contexts:
                return 0
            if reg == 0:
                return self.threshold[ctx]
            if reg == 4:
                return self._claim(ctx)
            return 0

    def _claim(self, ctx: int) -> int:
        src = self._best(ctx) if self.output[ctx] else 0
        if src == 0:
            # spec: claim with nothing pending above threshold returns 0
            return 0
        self.pending[src] = False
        self.claimed[src] = True
        self._update()
        return src

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 3:
            log.debug("PLIC: %d-byte write at %#x ignored", size, offset)
            return
        value &= 0xFFFFFFFF
        with self._lock:
            if offset < PENDING_BASE:
                src = offset // 4
                if 0 < src < self.num_sources:
                    self.priority[src] = min(value, MAX_PRIORITY)
            elif offset < ENABLE_BASE:
                return  # pending bits are read-only
            elif offset < CONTEXT_BASE:
                ctx, word = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
                word //= 4
                if ctx < self.num_contexts and word < self._words:
                    if word == 0:
                        value &= ~1  # source 0 does not exist
                    if (word + 1) * 32 > self.num_sources:
                        value &= (1 << (self.num_sources - word * 32)) - 1
                    self.enable[ctx][word] = value
            else:
                ctx, reg = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
                if ctx >= self.num_contexts:
                    return
                if reg == 0:
                    self.threshold[ctx] = min(value, MAX_PRIORITY)
                elif reg == 4:
                    self._complete(ctx, value)
                    return
                else:
                    return
            self._update()

    def _complete(self, ctx: int, src: int) -> None:
        if not 0 < src < self.num_sources or not self.claimed[src]:
            log.debug("PLIC: completion of unclaimed source %d ignored", src)
            return
        if not self.enabled(ctx, src):
            return  # spec: completion for a source not enabled for the context is ignored
        self.claimed[src] = False
        if self.level[src]:
            self.pending[src] = True
        self._update()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return dict(priority=list(self.priority), level=list(self.level),
                        pending=list(self.pending), claimed=list(self.claimed),
                        enable=[list(e) for e in self.enable], threshold=list(self.threshold))

    def load_state(self, st: dict[str, Any]) -> None:
        with self._lock:
            self.priority = list(st["priority"])
            self.level = list(st["level"])
            self.pending = list(st["pending"])
            self.claimed = list(st["claimed"])
            self.enable = [list(e) for e in st["enable"]]
            self.threshold = list(st["threshold"])
            self._update()
