"""RFC 6455 server side for socket chardevs with websocket=on.

The HTTP upgrade is answered as QEMU answers it; guest output goes out as unmasked binary
frames, client frames must be masked, pings are answered, a close is echoed. The frame
header is declared once, with construct.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from email.utils import formatdate

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Flag,
    If,
    Int16ub,
    Int64ub,
    Pass,
    Struct,
    Switch,
    this,
)

from ..errors import E2kcharError

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST = 8192
MAX_PAYLOAD = 1 << 20

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009

FrameHeader = Struct(
    "head" / BitStruct(
        "fin" / Flag,
        "rsv" / BitsInteger(3),
        "opcode" / BitsInteger(4),
        "masked" / Flag,
        "len7" / BitsInteger(7),
    ),
    "ext_len" / Switch(this.head.len7, {126: Int16ub, 127: Int64ub}, default=Pass),
    "mask" / If(this.head.masked, Bytes(4)),
)


class WebSocketError(E2kcharError):
    """A protocol violation by the client; status is the close code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame (servers send unmasked; a mask is for test clients)."""
    n = len(payload)
    len7, ext = (n, None) if n < 126 else (126, n) if n < 65536 else (127, n)
    header: bytes = FrameHeader.build({
        "head": {"fin": True, "rsv": 0, "opcode": opcode, "masked": mask is not None,
                 "len7": len7},
        "ext_len": ext, "mask": mask,
    })
    if mask is not None:
        payload = apply_mask(payload, mask)
    return header + bytes(payload)


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    reps = (len(data) + 3) // 4
    key = int.from_bytes((mask * reps)[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


def close_payload(status: int, reason: str) -> bytes:
    return struct.pack(">H", status) + reason.encode("utf-8")


class HandshakeError(E2kcharError):
    """The upgrade request is not one we accept; the text goes into the 400 answer."""


def parse_request(data: bytes) -> tuple[dict[str, str], bytes] | None:
    """(headers, rest) once the request head is complete, None while incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_REQUEST:
            raise HandshakeError("request too large")
        return None
    head, rest = data[:end].decode("latin-1"), data[end + 4:]
    lines = head.split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or parts[0] != "GET" or not parts[2].startswith("HTTP/1."):
        raise HandshakeError("not an HTTP GET request")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    if parts[1] != "/":
        raise HandshakeError(f"unexpected path {parts[1]}")
    return headers, rest


def handshake_response(headers: dict[str, str]) -> bytes:
    """The 101 answer QEMU gives (Server: QEMU VNC), or raise HandshakeError."""
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeError("missing Upgrade: websocket")
    if "upgrade" not in headers.get("connection", "").lower():
        raise HandshakeError("missing Connection: Upgrade")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError("unsupported websocket version")
    key = headers.get("sec-websocket-key")
    if not key:
        raise HandshakeError("missing Sec-WebSocket-Key")
    if not key.isascii():
        raise HandshakeError("Cannot parse Sec-WebSocket-Key")
    lines = ["HTTP/1.1 101 Switching Protocols", "Server: QEMU VNC",
             f"Date: {formatdate(usegmt=True)}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept_key(key)}"]
    protocols = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    if "binary" in protocols:
        lines.append("Sec-WebSocket-Protocol: binary")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def bad_request(reason: str) -> bytes:
    # (the reason may quote a client's non-ASCII path: escaped, never an encode error)
    body = f"Websocket handshake failed: {reason}\r\n".encode("ascii", "backslashreplace")
    return (f"HTTP/1.1 400 Bad Request\r\nServer: QEMU VNC\r\nConnection: close\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode("ascii") + body


class FrameDecoder:
    """Incremental decoder of client frames; yields (opcode, payload) per complete frame."""

    def __init__(self, require_mask: bool = True) -> None:
        self.buf = bytearray()
        self.require_mask = require_mask

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._one()
            if frame is None:
                return out
            out.append(frame)

    def _one(self) -> tuple[int, bytes] | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        len7 = buf[1] & 0x7F
        masked = bool(buf[1] & 0x80)
        hlen = 2 + (2 if len7 == 126 else 8 if len7 == 127 else 0) + (4 if masked else 0)
        if len(buf) < hlen:
            return None
        hdr = FrameHeader.parse(bytes(buf[:hlen]))
        head = hdr.head
        length = hdr.ext_len if len7 >= 126 else len7
        if head.rsv:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
        if self.require_mask and not head.masked:
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "client frame is not masked")
        if head.opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {head.opcode}")
        if head.opcode >= OP_CLOSE and (length > 125 or not head.fin):
            raise WebSocketError(CLOSE_PROTOCOL_ERROR, "bad control frame")
        if length > MAX_PAYLOAD:
            raise WebSocketError(CLOSE_TOO_BIG, "frame too large")
        if len(buf) < hlen + length:
            return None
        payload = bytes(buf[hlen:hlen + length])
        del buf[:hlen + length]
        if head.masked:
            payload = apply_mask(payload, hdr.mask)
        return head.opcode, payload


class ServerSession:
    """One connection's server side: the HTTP upgrade, then the client's frames."""

    def __init__(self) -> None:
        self._request: bytearray | None = bytearray()
        self._decoder = FrameDecoder()

    @property
    def upgraded(self) -> bool:
        return self._request is None

    def upgrade(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Request bytes in: None while the request is incomplete, else (the response to
        send, the bytes that followed the request). HandshakeError: answer bad_request()."""
        req = self._request
        assert req is not None
        req += data
        parsed = parse_request(bytes(req))
        if parsed is None:
            return None
        headers, rest = parsed
        response = handshake_response(headers)
        self._request = None
        return response, rest

    def frames(self, data: bytes) -> list[tuple[int, bytes]]:
        """The client's complete frames in data (WebSocketError: close with its status)."""
        return self._decoder.feed(data)
