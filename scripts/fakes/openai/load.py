"""The stand-in's load mode, for ``make bench``: tagged audio both ways, measured.

No VAD and no replies: once asked for a response, every session streams tagged 20 ms
frames at exactly 50 a second (one ticker greenlet for all sessions, each on its slot of
the 20 ms period, as independent calls are), and every appended frame's tag is read back,
so latency and loss are measured through the relay both ways (scripts/bench/stats.py).
The server answers ``GET /stats`` with what was measured and ``POST /reset`` starts over.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent
from msgspec.json import decode as fast_loads

from scripts.bench import stats as bench_stats
from scripts.fakes.websocket_server import ConnectionClosed

if TYPE_CHECKING:
    from scripts.fakes.openai.session import Session

# The relay's append, as it writes it: the hot path reads the tag off the audio's start.
_APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'


class LoadStats:
    """What load mode measured: model->caller frames sent, caller->model frames received."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything measured so far."""
        self.down_sent_ns: list[int] = []  # send time of every frame streamed to a caller
        self.up: list[tuple[int, int, int, int]] = []  # (call, seq, sent_ns, received_ns)
        self.first_delta_ns: list[int] = []  # response.create received -> first delta sent

    def report(self, start_ns: int, end_ns: int) -> dict[str, Any]:
        """Counts and latencies for frames sent inside [start_ns, end_ns]."""
        up = [(call, seq, (received - sent) / 1e6) for call, seq, sent, received in self.up
              if start_ns <= sent <= end_ns]
        return {
            "down_sent": sum(1 for sent in self.down_sent_ns if start_ns <= sent <= end_ns),
            "up_latencies_ms": [latency for _call, _seq, latency in up],
            "up_received": len({(call, seq) for call, seq, _latency in up}),
            "first_delta_ms": [ns / 1e6 for ns in self.first_delta_ns],
        }


class LoadStreamer:
    """Reads every load session's appends; streams tagged frames to each at 50 a second."""

    def __init__(self) -> None:
        self.stats = LoadStats()
        self._slots: list[list[Session]] = [[] for _ in range(bench_stats.SLOTS)]
        self._ticker: gevent.Greenlet | None = None
        self._seq: dict[int, int] = {}
        self._started_ns: dict[int, int] = {}

    def run(self, session: Session) -> None:
        """One load session: ``session.created``, then read until the relay hangs up."""
        session.send({"type": "session.created", "session": session.session_body({})})
        stats, now_ns, read_tag = self.stats, time.monotonic_ns, bench_stats.read_tag
        start, end = len(_APPEND_PREFIX), len(_APPEND_PREFIX) + 32
        try:
            for batch in session.conn.batches():
                received = now_ns()
                for message in batch:
                    # The relay's own wire format: the tag is the audio's first 32 characters.
                    # Anything else is parsed properly.
                    if type(message) is str and message.startswith(_APPEND_PREFIX):
                        tag = read_tag(message[start:end])
                        if tag is not None:
                            stats.up.append((tag[0], tag[1], tag[2], received))
                            continue
                    event = fast_loads(message)
                    kind = event.get("type")
                    if kind == "session.update":
                        session.record.events.append(event)
                        session.on_session_update(event)
                    elif kind == "response.create":
                        session.record.events.append(event)
                        self.stream_to(session)
        finally:
            self._seq.pop(session.record.number, None)

    def stream_to(self, session: Session) -> None:
        """Stream tagged frames to ``session`` at 50 a second until it closes.

        The first frame goes at once (the model's own time to its first delta is then nil,
        so a benchmark's first-audio figure is the relay's); the rest follow on the
        session's slot of the shared 20 ms schedule.
        """
        number = session.record.number
        if number in self._seq:
            return  # already streaming (another response.create): one frame per 20 ms is all
        self._seq[number] = 0
        self._started_ns[number] = time.monotonic_ns()
        self._slots[number % bench_stats.SLOTS].append(session)
        self._send_frame(session, time.monotonic_ns())
        if self._ticker is None or self._ticker.dead:
            self._ticker = gevent.spawn(self._tick)

    def _send_frame(self, session: Session, now_ns: int) -> bool:
        number = session.record.number
        seq = self._seq.get(number)
        if seq is None:
            return False
        self._seq[number] = seq + 1
        frame = bench_stats.tagged_frame(number, seq, now_ns)
        text = ('{"type":"response.output_audio.delta","event_id":"e","response_id":"resp_load",'
                f'"item_id":"item_load_{number}","output_index":0,"content_index":0,"delta":"{frame}"}}')
        try:
            session.conn.send_text(text)
        except ConnectionClosed:
            self._seq.pop(number, None)
            return False
        self.stats.down_sent_ns.append(now_ns)
        if seq == 0:
            self.stats.first_delta_ns.append(now_ns - self._started_ns.pop(number))
        return True

    def _tick(self) -> None:
        # One greenlet paces every session on an absolute schedule. Sessions are spread
        # over SLOTS slots of the 20 ms period, as independent calls are: each still gets
        # a frame every 20 ms, but the relay is not handed every call's frame at once.
        slot = 0
        next_tick = time.monotonic()
        while any(self._slots):
            now_ns = time.monotonic_ns()
            sessions = self._slots[slot]
            for session in list(sessions):
                if not self._send_frame(session, now_ns):
                    sessions.remove(session)
            slot = (slot + 1) % bench_stats.SLOTS
            next_tick += bench_stats.FRAME_S / bench_stats.SLOTS
            gevent.sleep(max(next_tick - time.monotonic(), 0))
