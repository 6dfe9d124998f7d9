"""QEMU option syntax for character devices (-chardev, legacy -serial, QAPI dicts).

The driver is e2kchar.chardev.spec and each backend's own syntax sits in its module under
e2kchar.chardev.backends; this is the management layer's name for them (the CLI, QMP and
HMP parse through it).
"""

from __future__ import annotations

from .chardev.spec import (
    ID_RE,
    KEYS,
    ChardevSpec,
    check_id,
    from_qapi,
    parse_chardev,
    parse_legacy,
    parse_spec,
    split_opts,
    to_chardev_string,
    to_qapi,
)

__all__ = [
    "ChardevSpec",
    "ID_RE",
    "KEYS",
    "parse_chardev",
    "parse_legacy",
    "parse_spec",
    "from_qapi",
    "to_qapi",
    "to_chardev_string",
    "check_id",
    "split_opts",
]
