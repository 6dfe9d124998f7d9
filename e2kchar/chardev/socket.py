"""Old import path of e2kchar.chardev.backends.socket (the same module object, so patching works)."""

import sys

from .backends import socket

sys.modules[__name__] = socket
