"""Old import path of e2kchar.chardev.backends.mux (the same module object, so patching works)."""

import sys

from .backends import mux

sys.modules[__name__] = mux
