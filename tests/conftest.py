"""Shared fixtures for the unit tests."""

from __future__ import annotations

import os

import pytest

from e2kchar import ChardevRegistry


@pytest.fixture
def reg():
    registry = ChardevRegistry()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def fifos(tmp_path):
    """A pipe chardev's base path with its .in/.out fifos, and our write and read ends."""
    base = tmp_path / "p"
    os.mkfifo(f"{base}.in")
    os.mkfifo(f"{base}.out")
    # keep our own ends open for the test's lifetime
    wr = os.open(f"{base}.in", os.O_RDWR)
    rd = os.open(f"{base}.out", os.O_RDWR | os.O_NONBLOCK)
    yield str(base), wr, rd
    os.close(wr)
    os.close(rd)


class Recorder:
    """A frontend that records what it receives, with a controllable can_read."""

    def __init__(self, fe, room: int = 1 << 20, be_change=None) -> None:
        import threading

        self.fe = fe
        self.room = room
        self.data = bytearray()
        self.events = []
        self.reads = []  # size of each read() call
        self.lock = threading.Lock()
        self.be_change_calls = 0
        #: reads larger than can_read allowed or than 4096 bytes (an assertion inside a
        #: read handler is only logged by the backend, so the fixture checks this list)
        self.violations: list[tuple[int, int]] = []
        self._be_change = be_change
        fe.set_handlers(self.can_read, self.read, self.event, self.be_change)

    def can_read(self) -> int:
        return self.room

    def read(self, data: bytes) -> None:
        with self.lock:
            if len(data) > min(self.room, 4096):
                self.violations.append((len(data), self.room))
            assert len(data) <= self.room, "backend delivered more than can_read allowed"
            self.room -= len(data)
            self.data += data
            self.reads.append(len(data))

    def event(self, ev) -> None:
        self.events.append(ev)

    def be_change(self) -> int:
        self.be_change_calls += 1
        if self._be_change is not None:
            return self._be_change()
        self.fe.set_handlers(self.can_read, self.read, self.event, self.be_change)
        return 0

    def give(self, n: int) -> None:
        with self.lock:
            self.room += n
        self.fe.accept_input()


@pytest.fixture
def recorder():
    """The Recorder class; at teardown no recorder may have been given more than its
    can_read allowed, or more than 4096 bytes in one read."""
    made: list[Recorder] = []

    class Tracked(Recorder):
        def __init__(self, *args, **kwargs) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    yield Tracked
    bad = [r.violations for r in made if r.violations]
    assert not bad, f"reads beyond can_read or 4096 bytes (size, room): {bad}"
