"""Old import path of e2kchar.chardev.backends.pipe (the same module object, so patching works)."""

import sys

from .backends import pipe

sys.modules[__name__] = pipe
