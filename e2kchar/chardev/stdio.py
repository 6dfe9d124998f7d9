"""Old import path of e2kchar.chardev.backends.stdio (the same module object, so patching works)."""

import sys

from .backends import stdio

sys.modules[__name__] = stdio
