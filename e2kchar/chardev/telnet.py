"""Telnet / tn3270 support for socket servers: the negotiation QEMU sends and an IAC filter.

QEMU's inbound filter eats the byte after any two-byte command other than BREAK in plain
telnet mode; this filter parses commands by their real length instead (IAC WILL/WONT/DO/DONT
take an option byte, IAC SB ... IAC SE is a subnegotiation, every other command is two
bytes). tn3270 keeps QEMU's documented pass-through of IAC EOR / SB / SE for the frontend.
"""

from __future__ import annotations

from .types import ChardevEvent

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
IP = 244
BREAK = 243
NOP = 241
SE = 240
EOR = 239

OPT_BINARY = 0
OPT_ECHO = 1
OPT_SGA = 3
OPT_TTYPE = 24
OPT_EOR = 25

#: what QEMU sends to a new telnet client (WILL ECHO, WILL SGA, WILL BINARY, DO BINARY)
TELNET_NEGOTIATION = bytes([IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SGA,
                            IAC, WILL, OPT_BINARY, IAC, DO, OPT_BINARY])
#: what QEMU sends to a new tn3270 client (DO/WILL EOR, DO/WILL BINARY, DO TERMINAL-TYPE,
#: SB TERMINAL-TYPE SEND IAC SE)
TN3270_NEGOTIATION = bytes([IAC, DO, OPT_EOR, IAC, WILL, OPT_EOR,
                            IAC, DO, OPT_BINARY, IAC, WILL, OPT_BINARY,
                            IAC, DO, OPT_TTYPE, IAC, SB, OPT_TTYPE, 1, IAC, SE])

_DATA, _IAC, _OPTION, _SUB, _SUB_IAC = range(5)

Item = bytes | ChardevEvent


class TelnetFilter:
    """Incremental inbound filter; state survives across reads (commands split anywhere)."""

    def __init__(self, tn3270: bool = False) -> None:
        self.tn3270 = tn3270
        self.state = _DATA

    def reset(self) -> None:
        self.state = _DATA

    def feed(self, data: bytes) -> list[Item]:
        """Filter raw bytes into data chunks and BREAK events, in arrival order."""
        out: list[Item] = []
        buf = bytearray()
        state = self.state
        for b in data:
            if state == _DATA:
                if b == IAC:
                    state = _IAC
                else:
                    buf.append(b)
            elif state == _IAC:
                state = _DATA
                if b == IAC:
                    buf.append(IAC)
                elif b == BREAK:
                    if buf:
                        out.append(bytes(buf))
                        buf.clear()
                    out.append(ChardevEvent.BREAK)
                elif b in (WILL, WONT, DO, DONT):
                    state = _OPTION
                elif self.tn3270 and b in (EOR, SB, SE):
                    buf += bytes((IAC, b))  # the tn3270 frontend parses records itself
                elif b == SB:
                    state = _SUB
                # any other two-byte command (NOP, IP, AYT, GA, SE, ...) is dropped
            elif state == _OPTION:
                state = _DATA  # the option byte of WILL/WONT/DO/DONT
            elif state == _SUB:
                if b == IAC:
                    state = _SUB_IAC
            else:  # _SUB_IAC
                state = _DATA if b == SE else _SUB
        self.state = state
        if buf:
            out.append(bytes(buf))
        return out
