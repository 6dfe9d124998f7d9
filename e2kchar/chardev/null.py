"""Old import path of e2kchar.chardev.backends.null (the same module object, so patching works)."""

import sys

from .backends import null

sys.modules[__name__] = null
