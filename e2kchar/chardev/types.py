"""Events, ioctls and line parameters shared by frontends and backends."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import E2kcharError


class ChardevError(E2kcharError):
    """Every chardev-layer failure; the message is worded as QEMU words it."""


class ChardevEvent(enum.IntEnum):
    """Backend events; the numeric values follow QEMU's enum order."""

    BREAK = 0
    OPENED = 1
    MUX_IN = 2
    MUX_OUT = 3
    CLOSED = 4


class ChardevIoctl(enum.IntEnum):
    """Frontend ioctls (QEMU's CHR_IOCTL_SERIAL_* numbers)."""

    SET_PARAMS = 1
    SET_BREAK = 2
    SET_TIOCM = 13
    GET_TIOCM = 14


class Tiocm(enum.IntFlag):
    """Modem-line bits used by SET_TIOCM / GET_TIOCM (QEMU's CHR_TIOCM_*)."""

    DTR = 0x002
    RTS = 0x004
    CTS = 0x020
    CAR = 0x040
    RI = 0x080
    DSR = 0x100


TIOCM_ALL = int(Tiocm.DTR | Tiocm.RTS | Tiocm.CTS | Tiocm.CAR | Tiocm.RI | Tiocm.DSR)


@dataclass(frozen=True)
class SerialParams:
    """Line parameters a UART frontend pushes with SET_PARAMS."""

    speed: int = 115200
    parity: str = "N"  # 'N', 'E' or 'O'
    data_bits: int = 8
    stop_bits: int = 1

    def __post_init__(self) -> None:
        if self.parity not in ("N", "E", "O"):
            raise ChardevError(f"invalid parity '{self.parity}'")
        if self.data_bits not in (5, 6, 7, 8):
            raise ChardevError(f"invalid data bits {self.data_bits}")
        if self.stop_bits not in (1, 2):
            raise ChardevError(f"invalid stop bits {self.stop_bits}")
        if self.speed <= 0:
            raise ChardevError(f"invalid speed {self.speed}")


#: Maximum bytes a backend hands to a frontend per read callback (CHR_READ_BUF_LEN).
READ_BUF_LEN = 4096
