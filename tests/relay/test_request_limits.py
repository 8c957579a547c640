"""Reading a request head within its limits, and the cap on connections waiting for one: pure."""

from __future__ import annotations

import io

import pytest

from relay.request_limits import HeadIncomplete, HeadTooLarge, PendingHeads, RequestLimits, read_head

SMALL = RequestLimits(max_header_bytes=200, max_header_lines=5)


def head_of(data: bytes, limits: RequestLimits = SMALL) -> tuple[list[bytes] | None, bytes]:
    """What read_head returns for ``data``, and what it left unread."""
    stream = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    lines = read_head(stream.readline, limits)
    return lines, stream.read()


def test_the_head_and_nothing_after_it() -> None:
    data = b"GET /twilio/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x81\x85frame"
    lines, rest = head_of(data)
    assert lines == [b"GET /twilio/realtime HTTP/1.1\r\n", b"Host: x\r\n", b"Upgrade: websocket\r\n", b"\r\n"]
    assert rest == b"\x81\x85frame"  # a frame sent right behind the upgrade stays for the call


def test_a_blank_line_before_the_request_line_is_ignored() -> None:
    assert head_of(b"\r\nGET / HTTP/1.1\r\n\n")[0] == [b"GET / HTTP/1.1\r\n", b"\n"]


def test_a_peer_that_sent_nothing_is_not_a_request() -> None:
    assert head_of(b"") == (None, b"")


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\nHo", b"GET /"])
def test_a_head_cut_short_is_incomplete(data: bytes) -> None:
    with pytest.raises(HeadIncomplete):
        head_of(data)


def test_the_byte_cap_counts_the_whole_head() -> None:
    exactly = b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * (200 - 16 - 3 - 2 - 2) + b"\r\n\r\n"
    assert len(exactly) == 200 and head_of(exactly)[0] is not None
    with pytest.raises(HeadTooLarge):
        head_of(exactly[:-4] + b"a\r\n\r\n")
    with pytest.raises(HeadTooLarge):  # one endless line: never more than the cap is held
        head_of(b"GET /" + b"a" * 10_000_000)


def test_the_line_cap() -> None:
    five = b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % n for n in range(5)) + b"\r\n"
    assert len(head_of(five)[0] or []) == 7
    with pytest.raises(HeadTooLarge):
        head_of(five[:-2] + b"H5: v\r\n\r\n")


class Waiter:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_past_the_cap_the_oldest_waiter_is_let_go() -> None:
    pending = PendingHeads(limit=3)
    waiters = [Waiter(str(n)) for n in range(5)]
    for waiter in waiters[:3]:
        pending.enter(waiter)
    pending.leave(waiters[1])  # got its head
    pending.enter(waiters[3])
    assert not any(w.evicted for w in waiters) and len(pending) == 3
    pending.enter(waiters[4])
    assert [w.name for w in waiters if w.evicted] == ["0"]
    assert len(pending) == 3
    pending.leave(waiters[0])  # an evicted waiter leaving is harmless
    assert len(pending) == 3
