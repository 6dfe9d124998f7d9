"""Old import path of e2kchar.chardev.backends.udp (the same module object, so patching works)."""

import sys

from .backends import udp

sys.modules[__name__] = udp
