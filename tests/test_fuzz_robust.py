"""A few seconds of hypothesis fuzz over CLI options, QMP commands and virtio rings
(tests/fuzz_robust.py has the targets; tools/fuzz_robust.py runs them longer)."""

from __future__ import annotations

import pytest
from fuzz_robust import (
    DESCS,
    HEADS,
    OPTION_TEXT,
    QMP_ARGS,
    TEXT,
    check_argv,
    check_option,
    check_qmp,
    check_virtqueue,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2kchar import ChardevRegistry
from e2kchar.monitor.commands import Monitor

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@FAST
@given(OPTION_TEXT)
def test_fuzz_option_text(text):
    check_option(text)


@FAST
@given(st.lists(st.sampled_from(["-m", "-serial", "-chardev", "--timeout", "-device", "-qmp",
                                 "-mon", "-append", "-S"]) | TEXT, max_size=6))
def test_fuzz_argv(argv):
    check_argv(argv)


@pytest.fixture(scope="module")
def monitor():
    with ChardevRegistry() as reg:
        mon = Monitor(reg)
        yield mon


@FAST
@given(data=st.data())
def test_fuzz_qmp_commands(monitor, data):
    names = sorted(monitor.commands) + ["nosuch"]
    name = data.draw(st.sampled_from([n for n in names if n not in ("quit", "stop")]))
    args = data.draw(QMP_ARGS | st.fixed_dictionaries({}, optional={
        k: st.just(v) for k, v in [("id", "fz"), ("device", "fz")]}))
    check_qmp(monitor, name, args)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(DESCS, HEADS)
def test_fuzz_virtqueue(descs, heads):
    assert check_virtqueue(descs, heads) < 2.0
