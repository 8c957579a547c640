"""Helpers shared by several test modules: HTTP, polling, protocol assertions."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import cache
from typing import Any

import gevent
from pydantic import BaseModel, TypeAdapter

QUIET = bytes(range(0xF0, 0x100)) * 10  # near-silent mu-law: does not trip the VAD


class Clock:
    """A hand-driven clock for a CallBridge: monotonic and wall time move together."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET",
        data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error status is an answer, not an exception."""
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body) of a GET."""
    status, _headers, body = get(url, headers)
    return status, json.loads(body)


def wait_until(predicate: Callable[[], object], timeout_s: float = 3.0, interval_s: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` has passed; its last verdict."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        gevent.sleep(interval_s)


def _extra_fields(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            found.append(f"{path}.{name}")
        for name in type(value).model_fields:
            found += _extra_fields(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _extra_fields(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            found += _extra_fields(item, f"{path}.{key}")
    return found


@cache
def _client_events() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeClientEvent

    return TypeAdapter(RealtimeClientEvent)  # building it takes seconds: once per run


def assert_ga_client_event(event: dict[str, Any]) -> None:
    """Valid against openai.types.realtime.RealtimeClientEvent, with no unknown field."""
    model = _client_events().validate_python(event)
    assert _extra_fields(model) == [], f"fields the GA API does not define in {event['type']}"


@cache
def _server_events() -> TypeAdapter[Any]:
    from openai.types.realtime import RealtimeServerEvent

    return TypeAdapter(RealtimeServerEvent)


def assert_ga_server_event(event: dict[str, Any]) -> None:
    """Valid against openai.types.realtime.RealtimeServerEvent, with no unknown field."""
    model = _server_events().validate_python(event)
    extra = _extra_fields(model)
    assert extra == [], f"fields the GA API does not define in {event['type']}: {extra}"
