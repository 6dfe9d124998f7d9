"""A file system entry a chardev created (a unix socket file, a pty's symlink).

It is removed later only if it is still the entry we made: someone may have replaced it
in the meantime, and that file is not ours to delete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["OwnedPath"]


@dataclass(frozen=True)
class OwnedPath:
    path: str
    dev: int
    ino: int

    @classmethod
    def of(cls, path: str) -> OwnedPath:
        """Remember the entry now at path (raises OSError if there is none)."""
        st = os.lstat(path)
        return cls(path, st.st_dev, st.st_ino)

    def remove(self) -> None:
        """Unlink path if it is still the same entry; errors are ignored (it is gone)."""
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == (self.dev, self.ino):
                os.unlink(self.path)
        except OSError:
            pass
