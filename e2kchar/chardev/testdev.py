"""Old import path of e2kchar.chardev.backends.testdev (the same module object, so patching works)."""

import sys

from .backends import testdev

sys.modules[__name__] = testdev
