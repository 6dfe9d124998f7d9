"""The house rules that code can check: no import circles, no upward imports between layers
(errors < chardev < devices < machine < management, see docs/architecture.md), and no private
attribute of another object reached from outside it (tools/check_layers.py does the work)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools" / "check_layers.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_layers", mod)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_circles_and_no_upward_imports():
    cl = _checker()
    known = cl.modules()
    g = cl.graph(known)
    assert "e2kchar.chardev.registry" in known and "e2kchar.devices.ns16550a" in known
    assert cl.circles(g) == []
    assert cl.upward(g, known) == []


def test_no_private_attribute_of_another_object_is_reached():
    assert _checker().private_accesses(_checker().modules()) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    cl = _checker()
    g = {"e2kchar.chardev.a": {"e2kchar.chardev.b": 1}, "e2kchar.chardev.b": {"e2kchar.chardev.a": 2},
         "e2kchar.devices.x": {}}
    assert cl.circles(g) == [["e2kchar.chardev.a", "e2kchar.chardev.b"]]
    known = {n: cl.Module(n, ROOT / "x.py") for n in ("e2kchar.chardev.a", "e2kchar.devices.x")}
    up = cl.upward({"e2kchar.chardev.a": {"e2kchar.devices.x": 7}, "e2kchar.devices.x": {}}, known)
    assert len(up) == 1 and "e2kchar.chardev.a imports e2kchar.devices.x" in up[0]
