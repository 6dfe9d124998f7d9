"""Old import path of e2kchar.chardev.backends.file (the same module object, so patching works)."""

import sys

from .backends import file

sys.modules[__name__] = file
