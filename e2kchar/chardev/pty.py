"""Old import path of e2kchar.chardev.backends.pty (the same module object, so patching works)."""

import sys

from .backends import pty

sys.modules[__name__] = pty
