"""Old import path of e2kchar.chardev.backends.ringbuf (the same module object, so patching works)."""

import sys

from .backends import ringbuf

sys.modules[__name__] = ringbuf
