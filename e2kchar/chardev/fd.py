"""Old import path of e2kchar.chardev.backends.fd (the same module object, so patching works)."""

import sys

from .backends import fd

sys.modules[__name__] = fd
