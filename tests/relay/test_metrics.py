"""GET /metrics: Prometheus text behind the diagnostic token, counting calls across gunicorn's workers."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scripts.fakes.openai import StandinModel
from tests.conftest import DIAGNOSTIC_TOKEN
from tests.hardening.support import GoodCall
from tests.helpers import get, wait_until

AUTH = {"Authorization": f"Bearer {DIAGNOSTIC_TOKEN}"}


def scrape(base: str) -> dict[str, float]:
    """Every sample of /metrics as ``name{label="value",...}`` -> value."""
    status, headers, body = get(base + "/metrics", AUTH)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_metrics_need_the_diagnostic_token(relay: Any) -> None:
    assert get(relay.http_url + "/metrics")[0] == 401
    assert get(relay.http_url + "/metrics", {"Authorization": "Bearer nope"})[0] == 401


def test_metrics_are_off_without_a_diagnostic_token(make_relay: Any, standin: StandinModel) -> None:
    relay = make_relay(standin.url, DIAGNOSTIC_TOKEN="")
    assert get(relay.http_url + "/metrics", AUTH)[0] == 404


def test_a_call_is_counted_with_its_end_reason_first_audio_and_barge_ins(relay: Any, standin: StandinModel) -> None:
    before = scrape(relay.http_url)
    call = GoodCall(relay.ws_url).begin()
    assert call.first_audio.wait(5)
    assert scrape(relay.http_url)["liveline_calls_active"] == before.get("liveline_calls_active", 0) + 1
    call.stream_for(5)
    assert call.hang_up().code == 1000
    assert wait_until(lambda: not relay.app.registry.calls, 3)
    after = scrape(relay.http_url)
    ended = 'liveline_calls_total{end_reason="caller_hangup"}'
    assert after[ended] == before.get(ended, 0) + 1
    assert after["liveline_first_audio_seconds_count"] == before.get("liveline_first_audio_seconds_count", 0) + 1
    assert after["liveline_calls_active"] == before.get("liveline_calls_active", 0)


def test_an_upstream_failure_is_counted_by_its_stage(make_relay: Any) -> None:
    relay = make_relay("ws://127.0.0.1:9/v1/realtime")  # nothing listens on the discard port: tcp fails
    before = scrape(relay.http_url)
    call = GoodCall(relay.ws_url).begin()
    assert call.closed.wait(5) and call.close is not None and call.close.code == 1011
    call.abort()
    assert wait_until(lambda: not relay.app.registry.calls, 3)
    key = 'liveline_upstream_failures_total{stage="tcp"}'
    assert scrape(relay.http_url)[key] == before.get(key, 0) + 1


def test_every_worker_reports_the_whole_instance(gunicorn_relay: Any, standin: StandinModel, tmp_path: Path) -> None:
    relay = gunicorn_relay(standin.url, RELAY_WORKERS="2")
    assert wait_until(lambda: relay.log().count("relay.configured") >= 2, 10), "both workers loaded"
    calls = [GoodCall(relay.ws_url).begin() for _ in range(8)]
    for call in calls:
        assert call.first_audio.wait(5)
    live = [scrape(relay.http_url)["liveline_calls_active"] for _ in range(6)]
    assert live == [8.0] * 6, f"each worker must report the instance's 8 live calls, got {live}"
    for call in calls:
        call.stream_for(3)
        assert call.hang_up().code == 1000
    pids = set(re.findall(r"call\.accepted conn=(\d+)-", relay.log()))
    assert len(pids) == 2, f"the calls should have spread over both workers: {pids}"

    def ended() -> list[float]:
        return [scrape(relay.http_url).get('liveline_calls_total{end_reason="caller_hangup"}', 0) for _ in range(6)]

    assert wait_until(lambda: ended() == [8.0] * 6, 5), ended()
    assert scrape(relay.http_url)["liveline_calls_active"] == 0


def test_the_metrics_directory_goes_when_the_relay_stops(gunicorn_relay: Any, standin: StandinModel) -> None:
    def directories() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("liveline-metrics-*"))

    before = directories()
    relay = gunicorn_relay(standin.url)
    (made,) = directories() - before
    assert made.is_dir()
    relay.process.terminate()
    relay.process.wait(10)
    assert not made.exists(), "a stopped relay leaves its metrics files behind"
