"""The WebSocket frame codec (RFC 6455 section 5), pure: bytes in, messages out."""

from __future__ import annotations

import os

import pytest

from relay.errors import FrameError
from relay.ws_frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameDecoder,
    _unmask,
    _unmask_int,
    encode_close,
    encode_frame,
    encode_text,
)

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def server() -> FrameDecoder:
    return FrameDecoder(expect_masked=True, max_message_bytes=1 << 20)


def client() -> FrameDecoder:
    return FrameDecoder(expect_masked=False, max_message_bytes=1 << 20)


def controls(decoder: FrameDecoder, data: bytes) -> list[tuple[int, object]]:
    """Feed ``data`` expecting no data message; return the control frames it held."""
    assert decoder.feed(data) == []
    found, decoder.controls = decoder.controls, []
    return found


def test_rfc6455_examples() -> None:
    # Section 5.7: a single-frame unmasked "Hello", and the same masked.
    assert client().feed(bytes.fromhex("810548656c6c6f")) == ["Hello"]
    assert server().feed(bytes.fromhex("818537fa213d7f9f4d5158")) == ["Hello"]
    assert encode_text("Hello") == bytes.fromhex("810548656c6c6f")
    assert encode_text("Hello", KEY) == bytes.fromhex("818537fa213d7f9f4d5158")
    # A fragmented unmasked text message: "Hel" + "lo".
    assert client().feed(bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")) == ["Hello"]
    # An unmasked ping with "Hello", and its masked pong.
    assert controls(client(), bytes.fromhex("890548656c6c6f")) == [(OP_PING, b"Hello")]
    assert controls(server(), bytes.fromhex("8a8537fa213d7f9f4d5158")) == [(OP_PONG, b"Hello")]


@pytest.mark.parametrize("unmask", [_unmask, _unmask_int], ids=["c", "int"])
def test_unmask_matches_a_bytewise_xor(unmask: object) -> None:
    for size in (0, 1, 3, 4, 5, 125, 126, 393, 4096, 70000):
        data = os.urandom(size)
        key = os.urandom(4)
        assert unmask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))  # type: ignore[operator]


def test_the_c_masking_loop_is_in_use() -> None:
    assert _unmask is not _unmask_int, "websockets.speedups did not import: masking falls back to int XOR"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_every_length_encoding_round_trips(size: int) -> None:
    payload = os.urandom(size)
    assert server().feed(encode_frame(OP_BINARY, payload, os.urandom(4))) == [payload]
    assert client().feed(encode_frame(OP_BINARY, payload)) == [payload]
    text = "é" * (size // 2)
    assert server().feed(encode_text(text, os.urandom(4))) == [text]


def test_frames_split_at_every_byte_boundary() -> None:
    stream = encode_text("first", KEY) + encode_text("second é", KEY) + encode_frame(OP_PING, b"p", KEY)
    for cut in range(len(stream) + 1):
        decoder = server()
        out = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert out == ["first", "second é"]
        assert decoder.controls == [(OP_PING, b"p")]
        assert decoder.buffered == 0


def test_many_frames_in_one_read() -> None:
    stream = b"".join(encode_text(str(i), os.urandom(4)) for i in range(500))
    assert server().feed(stream) == [str(i) for i in range(500)]


def test_control_frames_between_fragments() -> None:
    stream = (bytes([0x01, 0x80 | 2]) + KEY + _unmask(b"ab", KEY)
              + encode_frame(OP_PING, b"!", KEY)
              + bytes([0x80, 0x80 | 1]) + KEY + _unmask(b"c", KEY))
    decoder = server()
    assert decoder.feed(stream) == ["abc"]
    assert decoder.controls == [(OP_PING, b"!")]


def test_close_frames() -> None:
    assert controls(client(), encode_close(1008, "bad token")) == [(OP_CLOSE, (1008, "bad token"))]
    assert controls(client(), bytes([0x88, 0])) == [(OP_CLOSE, (1005, ""))]
    assert controls(server(), encode_close(4000, "", KEY)) == [(OP_CLOSE, (4000, ""))]


def test_close_reason_is_cut_on_a_character_boundary() -> None:
    frame = encode_close(1000, "é" * 100)
    code, reason = controls(client(), frame)[0][1]  # type: ignore[misc]
    assert code == 1000 and len(reason.encode()) <= 123 and set(reason) == {"é"}


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1016, 2000, 5000])
def test_invalid_close_codes(code: int) -> None:
    with pytest.raises(ValueError):
        encode_close(code)
    with pytest.raises(FrameError):
        client().feed(bytes([0x88, 2]) + code.to_bytes(2, "big"))


@pytest.mark.parametrize(
    ("data", "match", "close_code"),
    [
        (bytes([0x81, 0x05]) + b"Hello", "not masked", 1002),
        (bytes([0xC1, 0x80 | 1]) + KEY + b"x", "reserved bits", 1002),
        (bytes([0x83, 0x80]) + KEY, "unknown opcode", 1002),
        (bytes([0x8B, 0x80]) + KEY, "unknown control", 1002),
        (bytes([0x09, 0x80]) + KEY, "control frames must be final", 1002),
        (bytes([0x89, 0x80 | 126]) + (126).to_bytes(2, "big") + KEY + bytes(126), "125 bytes", 1002),
        (bytes([0x80, 0x80 | 1]) + KEY + b"x", "continuation frame without", 1002),
        (bytes([0x81, 0x80 | 1]) + KEY + _unmask(b"\xff", KEY), "not valid UTF-8", 1007),
        (bytes([0x88, 0x80 | 1]) + KEY + b"x", "1-byte payload", 1002),
    ],
)
def test_protocol_violations_carry_their_close_code(data: bytes, match: str, close_code: int) -> None:
    with pytest.raises(FrameError, match=match) as info:
        server().feed(data)
    assert info.value.close_code == close_code


def test_server_frames_must_not_be_masked() -> None:
    with pytest.raises(FrameError, match="server frame masked"):
        client().feed(encode_text("x", KEY))


def test_oversized_message_refused_from_its_header_before_buffering() -> None:
    decoder = FrameDecoder(expect_masked=True, max_message_bytes=1000)
    header = bytes([0x81, 0x80 | 127]) + (10**9).to_bytes(8, "big")
    with pytest.raises(FrameError) as info:
        decoder.feed(header)  # nothing of the gigabyte has arrived yet
    assert info.value.close_code == 1009


def test_oversized_fragmented_message_refused() -> None:
    decoder = FrameDecoder(expect_masked=True, max_message_bytes=10)
    decoder.feed(bytes([0x01, 0x80 | 6]) + KEY + _unmask(b"abcdef", KEY))
    with pytest.raises(FrameError) as info:
        decoder.feed(bytes([0x80, 0x80 | 6]) + KEY + _unmask(b"ghijkl", KEY))
    assert info.value.close_code == 1009


def test_new_message_inside_a_fragmented_one_is_refused() -> None:
    decoder = server()
    decoder.feed(bytes([0x01, 0x80 | 1]) + KEY + _unmask(b"a", KEY))
    with pytest.raises(FrameError, match="inside a fragmented"):
        decoder.feed(encode_text("b", KEY))
