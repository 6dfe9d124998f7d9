"""Old import path of e2kchar.chardev.backends.serial (the same module object, so patching works)."""

import sys

from .backends import serial

sys.modules[__name__] = serial
