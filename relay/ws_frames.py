"""WebSocket framing (RFC 6455 section 5), sans-I/O, for both of the relay's sockets.

Why our own frame codec: the handshakes are done elsewhere (relay.edge answers Twilio's
upgrade, websocket-client performs OpenAI's), but the libraries' frame readers do
per-byte Python work on every frame: gevent-websocket 0.10.1 unmasks byte by byte
(``Header.mask_payload``, 28 us for a 393-byte Twilio ``media`` frame) and validates
UTF-8 with a Python state machine (33 us, twice per text frame), and it drops the close
code (``ws.close(1008)`` reaches the peer as 1005). websocket-client 1.9.2 takes several
locks and a list join per frame. Here unmasking is one big-integer XOR and
``bytes.decode`` is the UTF-8 validator (docs/stack-notes.md#gevent-websocket).

``FrameDecoder.feed(data)`` returns the complete messages in ``data`` (possibly none,
possibly many); the ``encode_*`` functions return bytes ready for ``sendall``. Masking
keys are passed in: the codec has no randomness, clock or socket of its own.

Pure: standard library and ``relay.errors`` only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from relay.errors import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    FrameError,
)

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
_NO_STATUS = 1005  # RFC 6455 7.1.5: a close frame without a code


def _unmask_int(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated, as one big-integer XOR (no byte loop).

    The fallback: 1.9 us for a 310-byte Twilio frame, against 28 us for gevent-websocket's
    byte loop, but int.from_bytes/to_bytes still cost about 60 instructions a byte.
    """
    n = len(payload)
    if n == 0:
        return b""
    keys = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


_unmask: Callable[[bytes, bytes], bytes]
try:
    # websockets (a well-kept library with wheels for every platform) ships the masking
    # loop in C: 0.27 us and about 1,100 instructions for the same 310-byte frame.
    from websockets.speedups import apply_mask as _unmask
except ImportError:  # pragma: no cover - no C extension on this platform
    _unmask = _unmask_int


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 must never be sent; 1000-2999 outside the
    # registered set are reserved; 3000-4999 are for libraries and applications.
    if 1000 <= code <= 1014:
        return code not in (1004, 1005, 1006)
    return 3000 <= code <= 4999


class FrameDecoder:
    """Turns received bytes into messages.

    ``feed`` returns the data messages it completed: ``str`` for text (validated UTF-8),
    ``bytes`` for binary. Control frames go to ``controls`` as ``(opcode, payload)``:
    ping and pong with their ``bytes``, close with ``(code, reason)``; the caller drains
    that list. ``expect_masked`` is True on the server side (a client must mask every
    frame, 5.1) and False on the client side (a server must not). A message longer than
    ``max_message_bytes`` raises FrameError(1009) as soon as its header says so, before
    it is buffered.

    The common frame (final, text, under 64 KiB, masked as expected) takes a short path:
    it is every Twilio and OpenAI message the relay handles while a call is up.
    """

    __slots__ = ("_buf", "_mask_bit", "_max", "_frag_opcode", "_frag_parts", "_frag_len", "controls")

    def __init__(self, *, expect_masked: bool, max_message_bytes: int) -> None:
        self._buf = b""
        self._mask_bit = 0x80 if expect_masked else 0
        self._max = max_message_bytes
        self._frag_opcode = 0
        self._frag_parts: list[bytes] = []
        self._frag_len = 0
        self.controls: list[tuple[int, object]] = []

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[str | bytes]:
        """Add ``data``; return every data message it completes, in order."""
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        mask_bit = self._mask_bit
        unmask = _unmask
        out: list[str | bytes] = []
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if buf[pos] == 0x81 and b1 & 0x80 == mask_bit and length != 127 and not self._frag_opcode:
                if length == 126:
                    if n - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    head = pos + 4
                else:
                    head = pos + 2
                if length > self._max:
                    raise FrameError(f"message larger than {self._max} bytes", close_code=CLOSE_MESSAGE_TOO_BIG)
                if mask_bit:
                    end = head + 4 + length
                    if end > n:
                        break
                    text = unmask(buf[head + 4 : end], buf[head : head + 4])
                else:
                    end = head + length
                    if end > n:
                        break
                    text = buf[head:end]
                pos = end
                try:
                    out.append(text.decode())
                except UnicodeDecodeError:
                    raise FrameError("text message is not valid UTF-8", CLOSE_INVALID_PAYLOAD) from None
                continue
            end = self._frame(buf, pos, n, out)
            if end < 0:
                break
            pos = end
        self._buf = buf[pos:] if pos < n else b""
        return out

    def _frame(self, buf: bytes, pos: int, n: int, out: list[str | bytes]) -> int:
        """Any other frame at ``pos``: its end, or -1 if it is not all here yet."""
        b0 = buf[pos]
        b1 = buf[pos + 1]
        if b0 & 0x70:
            raise FrameError("reserved bits set but no extension was negotiated")
        if b1 & 0x80 != self._mask_bit:
            raise FrameError("client frame not masked" if self._mask_bit else "server frame masked")
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        length = b1 & 0x7F
        head = pos + 2
        if length == 126:
            if n - head < 2:
                return -1
            length = (buf[head] << 8) | buf[head + 1]
            head += 2
        elif length == 127:
            if n - head < 8:
                return -1
            length = struct.unpack_from("!Q", buf, head)[0]
            head += 8
        if opcode >= 0x8:
            if opcode not in _CONTROL_OPCODES:
                raise FrameError(f"unknown control opcode {opcode:#x}")
            if not fin or length > 125:
                raise FrameError("control frames must be final and at most 125 bytes")
        elif length + self._frag_len > self._max:
            raise FrameError(f"message larger than {self._max} bytes", close_code=CLOSE_MESSAGE_TOO_BIG)
        end = head + (4 if self._mask_bit else 0) + length
        if end > n:
            return -1
        payload = _unmask(buf[head + 4 : end], buf[head : head + 4]) if self._mask_bit else buf[head:end]
        self._message(opcode, fin, payload, out)
        return end

    def _message(self, opcode: int, fin: bool, payload: bytes, out: list[str | bytes]) -> None:
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if self._frag_opcode:
                raise FrameError("new data frame inside a fragmented message")
            if not fin:
                self._frag_opcode = opcode
                self._frag_parts = [payload]
                self._frag_len = len(payload)
                return
            out.append(_decode_text(payload) if opcode == OP_TEXT else payload)
        elif opcode == OP_CONTINUATION:
            if not self._frag_opcode:
                raise FrameError("continuation frame without a message to continue")
            self._frag_parts.append(payload)
            self._frag_len += len(payload)
            if not fin:
                return
            whole = b"".join(self._frag_parts)
            opcode = self._frag_opcode
            self._frag_opcode, self._frag_parts, self._frag_len = 0, [], 0
            out.append(_decode_text(whole) if opcode == OP_TEXT else whole)
        elif opcode == OP_CLOSE:
            self.controls.append((OP_CLOSE, _parse_close(payload)))
        elif opcode == OP_PING or opcode == OP_PONG:
            self.controls.append((opcode, payload))
        else:
            raise FrameError(f"unknown opcode {opcode:#x}")


def _decode_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("text message is not valid UTF-8", CLOSE_INVALID_PAYLOAD) from None


def _parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return (_NO_STATUS, "")
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not _valid_close_code(code):
        raise FrameError(f"invalid close code {code}", CLOSE_PROTOCOL_ERROR)
    return (code, _decode_text(payload[2:]))


_HEADER_SHORT = struct.Struct("!BB").pack
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """One final frame. Pass a fresh 4-byte ``mask_key`` on the client side (5.3)."""
    n = len(payload)
    first = 0x80 | opcode
    if mask_key is None:
        if n < 126:
            return _HEADER_SHORT(first, n) + payload
        if n < 0x10000:
            return _HEADER_16(first, 126, n) + payload
        return _HEADER_64(first, 127, n) + payload
    if n < 126:
        header = _HEADER_SHORT(first, 0x80 | n)
    elif n < 0x10000:
        header = _HEADER_16(first, 0xFE, n)
    else:
        header = _HEADER_64(first, 0xFF, n)
    return b"".join((header, mask_key, _unmask(payload, mask_key)))


def encode_text(text: str, mask_key: bytes | None = None) -> bytes:
    """A text frame carrying ``text``."""
    return encode_frame(OP_TEXT, text.encode("utf-8"), mask_key)


def encode_close(code: int, reason: str = "", mask_key: bytes | None = None) -> bytes:
    """A close frame with ``code`` (never dropped, unlike gevent-websocket 0.10.1)."""
    if not _valid_close_code(code):
        raise ValueError(f"{code} is not a close code an endpoint may send")
    # A control frame carries at most 125 bytes: 2 for the code, 123 for the reason,
    # cut on a character boundary so the reason stays valid UTF-8.
    reason_bytes = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    body = code.to_bytes(2, "big") + reason_bytes
    return encode_frame(OP_CLOSE, body, mask_key)
